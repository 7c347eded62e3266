use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        ssc.socketTextStrem("localhost", 9998).print()
    };
}
