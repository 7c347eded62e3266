use dstream::prelude::*;

fn main() {
    let _ = stream! {
        val ssc = StreamingContext(Seconds(1), "/tmp/ckpt")
        val lines = ssc.socketTextStream("localhost", 9999)
        lines.map(l => (l, 1)).updateStateByKey((_t: Time, _k: &String, vs: Vec<i32>, s: Option<i32>) => s, 0).print()
    };
}
