use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(0))
        ssc.socketTextStream("localhost", 9999).print()
    };
}
