use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val tweets = ssc.twitterStream(None)
        val lines = ssc.socketTextStream("localhost", 9999)
        lines.saveAsHadoopFiles("out", "txt")
        lines.saveAsObjectFiles("out")
        lines.print()
    };
}
