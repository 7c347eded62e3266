use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        lines.window(Seconds(4), Milliseconds(500)).print()
    };
}
