use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        lines.map(l => (l, 1)).reduceByKeyAndWindow(_ + _, _ - _, Seconds(30), Seconds(5)).print()
    };
}
