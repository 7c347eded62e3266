use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        lines.map(l => (l, 1)).mapWithState(StateSpec.function((k: &String, v: Option<i32>, s: &mut State<i32>) => v)).print()
    };
}
