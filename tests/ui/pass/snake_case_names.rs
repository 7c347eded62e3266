use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let ssc = StreamingContext::new(Seconds(1)).unwrap();
    let _ = stream! {
        using ssc
        val words = ssc.socket_text_stream("localhost", 9999).flat_map(_.split(' ').map(str::to_string).collect::<Vec<_>>())
        words.map(w => (w, 1)).reduce_by_key(_ + _).foreach_rdd((rdd, time) => println!("{time}: {}", rdd.count()))
    };
}
