use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        lines.window(Seconds(4), Seconds(2)).checkpoint(Seconds(3)).print()
    };
}
