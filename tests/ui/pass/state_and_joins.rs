use dstream::prelude::*;
#[allow(unused_imports)]
use dstream::{State, StateSpec};

fn main() {
    let ssc = StreamingContext::new(Seconds(1)).unwrap();
    let history = ssc.socket_text_stream("localhost", 9998).map(|l| (l, 1u32));
    let _ = stream! {
        using ssc, history
        ssc.checkpoint("/tmp/dstream-ui-pass2")
        val visits = ssc.socketTextStream("localhost", 9999).map(v => (v, 1u32))
        val sessions = visits.mapWithState(StateSpec.function((k: &String, v: Option<u32>, s: &mut State<u32>) => { let n = s.get().copied().unwrap_or(0) + v.unwrap_or(0); s.update(n); (k.clone(), n) }).timeout(Minutes(30)))
        sessions.stateSnapshots().join(history).print()
        visits.updateStateByKey((vs: Vec<u32>, s: Option<u32>) => Some(s.unwrap_or(0) + vs.iter().sum::<u32>()), 4).print()
    };
}
