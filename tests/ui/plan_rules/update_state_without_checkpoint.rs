use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        lines.map(l => (l, 1)).updateStateByKey((vs: Vec<i32>, s: Option<i32>) => s).print()
    };
}
