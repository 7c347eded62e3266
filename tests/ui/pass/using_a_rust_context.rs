use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let ssc = StreamingContext::new(Seconds(1)).unwrap();
    let done: Result<(), dstream::Error> = stream! {
        using ssc
        val events = ssc.socketTextStream("localhost", 9999).map(l => (l.clone(), l.len()))
        events.map { case (visitor, url) => url }.countByValue().print()
        events.filter(_._2 > 3).mapValues(_ * 2).print(5);
    };
    let _ = done;
}
