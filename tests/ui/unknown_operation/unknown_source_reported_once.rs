use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val words = ssc.textFilez("/tmp/in").flatMap(_.split(' ').map(str::to_string).collect::<Vec<_>>())
        words.map(w => (w, 1)).reduceByKey(_ + _).print()
        ssc.start()
    };
}
