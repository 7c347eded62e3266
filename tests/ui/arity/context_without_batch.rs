use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let _ = stream! {
        val ssc = StreamingContext()
        ssc.socketTextStream("localhost", 9999).print()
    };
}
