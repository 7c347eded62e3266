use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        lines.map(l => (l, 1)).transform(rdd => rdd.map(_._3)).print()
    };
}
