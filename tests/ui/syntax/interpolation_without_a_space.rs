use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1))
        val lines = ssc.socketTextStream("localhost", 9999)
        lines.map(l => s"line $l").print()
        lines.mapp(l => l).print()
    };
}
