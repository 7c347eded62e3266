use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        val pairs = lines.map(l => (l, 1))
        pairs.join(pairs.window(Seconds(4), Seconds(2))).print()
    };
}
