use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        counts.print()
        val lines = ssc.socketTextStream("localhost", 9999)
        val counts = lines.countByValue()
    };
}
