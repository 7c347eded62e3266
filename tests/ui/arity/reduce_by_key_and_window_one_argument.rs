use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let ssc = StreamingContext::new(Seconds(1)).unwrap();
    let lines = ssc.socket_text_stream("localhost", 9999);
    let _ = stream! {
        using ssc, lines
        lines.map(l => (l, 1)).reduceByKeyAndWindow(_ + _).print()
    };
}
