use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let ssc = stream! {
        val ssc = StreamingContext(Seconds(1))
        ssc.checkpoint("/tmp/dstream-ui-pass")
        val tweets = ssc.socketTextStream("localhost", 9999)
        val hashTags = tweets.flatMap(status => status.split(' ').filter(|w| w.starts_with('#')).map(str::to_string).collect::<Vec<_>>())
        val counts = hashTags.map(t => (t, 1)).reduceByKeyAndWindow(_ + _, _ - _, Minutes(1), Seconds(5))
        counts.print()
        hashTags.window(Minutes(1), Seconds(5)).countByValue().print()
    };
    let _: Result<StreamingContext, dstream::Error> = ssc;
}
