use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1), "/tmp/ckpt")
        val words = ssc.socketTextStream("localhost", 9999)
        val pairs = words.map(w => (w, 1))
        pairs.reduceByKey(_ + _, 0).print()
        pairs.groupByKey(-1).print()
        words.repartition(0usize).print()
        pairs.reduceByKeyAndWindow(_ + _, Seconds(2), Seconds(1), 0).print()
        pairs.mapWithState(StateSpec.function((k: &String, v: Option<i32>, s: &mut State<i32>) => v).numPartitions(0)).print()
        pairs.reduceByKey(_ + _, 2).print()
    };
}
