use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        val words = ssc.sparkContext.parallelize(Seq("a"))
        lines.print()
    };
}
