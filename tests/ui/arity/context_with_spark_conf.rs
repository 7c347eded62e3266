use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let conf = ();
    let _ = stream! {
        val ssc = new StreamingContext(conf, Seconds(1))
        ssc.socketTextStream("localhost", 9999).print()
    };
}
