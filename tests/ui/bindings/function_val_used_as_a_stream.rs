use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        val lengths = (l: String) => { l.len() }
        lengths.map(n => n + 1).print()
    };
}
