use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        val add = (a: i32) => { a + 1 }
        lines.map(l => (l, 1)).reduceByKey(add).print()
    };
}
