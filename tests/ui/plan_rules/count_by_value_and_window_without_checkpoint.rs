use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        lines.countByValueAndWindow(Seconds(30), Seconds(5)).print()
    };
}
