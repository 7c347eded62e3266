//! Timed state as a replica (a scale-out changelog) receives it: one change per key, no timer
//! entries, and the timer index derived again when a replica's changes are restored, so that
//! keys time out after a restore exactly as in an uninterrupted run, on a fresh copy and on a
//! local copy that held the keys' earlier times.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use dstream::prelude::*;
use dstream::{
    CommitRecord, ManualClock, Replicator, Source, SourceContext, State, StateChange, StateSpec,
};

const BATCHES: usize = 20;

/// The keys of batch `i` (1-based): `a` in every batch; `b` in 1, 2 and 5; `c` in 1 and 7;
/// `d` in 3 only.
fn keys(i: usize) -> Vec<String> {
    let mut v = vec!["a"];
    if [1, 2, 5].contains(&i) {
        v.push("b");
    }
    if [1, 7].contains(&i) {
        v.push("c");
    }
    if i == 3 {
        v.push("d");
    }
    v.into_iter().map(String::from).collect()
}

/// Batch `i`'s keys at the batch time `zero + i * batch`, whenever the context runs it.
struct Script;

impl Source<String> for Script {
    fn name(&self) -> String {
        "script".into()
    }

    fn capture(&mut self, time: Time, ctx: &SourceContext) -> Result<Option<Batch<String>>, Error> {
        let i = ((time - ctx.zero_time) / ctx.batch_duration) as usize;
        Ok(Some(Batch::from_vec(
            if i <= BATCHES { keys(i) } else { Vec::new() },
            2,
        )))
    }
}

/// One batch as the replicator saw it.
#[derive(Clone)]
struct Recorded {
    time: Time,
    zero: Time,
    changes: Vec<StateChange>,
    inputs: Vec<(usize, Vec<u8>)>,
    sinks: Vec<(usize, Vec<u8>)>,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Recorded>>);

impl Replicator for Recorder {
    fn replicate(&self, b: &CommitRecord<'_>) -> Result<Option<Vec<u8>>, Error> {
        self.0.lock().unwrap().push(Recorded {
            time: b.time,
            zero: b.zero,
            changes: b.changes.to_vec(),
            inputs: b.inputs.to_vec(),
            sinks: b.sinks.to_vec(),
        });
        Ok(None)
    }
}

type TimedOut = Arc<Mutex<BTreeMap<i64, Vec<String>>>>;

/// The pipeline on `dir`: keys timing out after 3 s idle go to `out`, by batch time.
fn context(dir: &Path, clock: &ManualClock, out: &TimedOut) -> StreamingContext {
    let ssc = StreamingContext::builder(Seconds(1))
        .parallelism(2)
        .clock(clock.clone())
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    ssc.checkpoint(dir).unwrap();
    let spec = StateSpec::function(|_, k: &String, v: Option<i32>, st: &mut State<i32>| {
        if v.is_some() {
            st.update(st.get().copied().unwrap_or(0) + 1);
        }
        st.is_timing_out().then(|| k.clone())
    })
    .timeout(Seconds(3));
    let out = out.clone();
    ssc.input_stream(Script)
        .map(|k| (k, 1))
        .map_with_state(spec)
        .mapped()
        .foreach_batch(move |b, t| {
            let mut keys = b.collect();
            keys.sort();
            if !keys.is_empty() {
                out.lock().unwrap().insert(t.millis(), keys);
            }
        })
        .unwrap();
    ssc
}

/// Runs `ssc` (resuming after its checkpoint's last batch, if any) up to the batch at `until`
/// seconds: `n` batches.
fn run(ssc: &StreamingContext, clock: &ManualClock, until: i64, n: u64) {
    ssc.start().unwrap();
    clock.set(Time::from_millis(until * 1000));
    assert!(ssc.await_batches(n, Seconds(30)), "{n} batches in 30 s");
    ssc.stop();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dstream-replica-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Restores `batches` (a replica's records, oldest first) into `ssc`'s checkpoint.
fn restore(ssc: &StreamingContext, batches: &[Recorded]) {
    ssc.restore_checkpoint(|r| {
        for b in batches {
            for c in &b.changes {
                r.apply(c)?;
            }
        }
        let last = batches.last().expect("batches to restore");
        r.batch(last.time, last.zero, &last.inputs, &last.sinks, None)
    })
    .unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn timed_state_restored_from_its_replica_times_out_as_an_uninterrupted_run() {
    // The reference: all batches in one run.
    let reference = TimedOut::default();
    let clock = ManualClock::new();
    let d = dir("reference");
    run(
        &context(&d, &clock, &reference),
        &clock,
        BATCHES as i64,
        BATCHES as u64,
    );
    let reference = reference.lock().unwrap().clone();
    // c (last seen at 1 s, then at 7 s), b (5 s) and d (3 s) time out; a never does.
    assert_eq!(
        reference.values().flatten().filter(|k| *k == "a").count(),
        0
    );
    assert_eq!(reference.get(&5000), Some(&vec!["c".to_string()]));
    assert_eq!(reference.get(&7000), Some(&vec!["d".to_string()]));
    assert_eq!(reference.get(&9000), Some(&vec!["b".to_string()]));
    assert_eq!(reference.get(&11000), Some(&vec!["c".to_string()]));
    assert_eq!(reference.len(), 4);

    // The first owner runs batches 1-3 on `local`, and a second owner batches 4-8 on a copy of
    // it; both log their changes to the same replica.
    let replica = Arc::new(Recorder::default());
    let out = TimedOut::default();
    let local = dir("local");
    let clock = ManualClock::new();
    let first = context(&local, &clock, &out);
    first.set_replicator(replica.clone()).unwrap();
    run(&first, &clock, 3, 3);
    drop(first);
    let second_dir = dir("second");
    copy_dir(&local, &second_dir);
    let clock = ManualClock::new();
    let second = context(&second_dir, &clock, &out);
    second.set_replicator(replica.clone()).unwrap();
    run(&second, &clock, 8, 5);
    drop(second);
    let logged = replica.0.lock().unwrap().clone();
    assert_eq!(logged.len(), 8);
    // One change per key the batch touched (and the operator's key count when it changed):
    // the timer index is not logged.
    for b in &logged {
        assert!(
            b.changes.iter().all(|c| c.key.first() != Some(&b't')),
            "a timer entry was logged in the batch at {}",
            b.time
        );
    }
    let state_changes = |b: &Recorded| b.changes.iter().filter(|c| c.key[0] == b's').count();
    assert_eq!(state_changes(&logged[0]), 3, "a, b and c at 1 s");
    assert_eq!(
        state_changes(&logged[4]),
        3,
        "a and b at 5 s, c removed after its timeout"
    );

    // A fresh instance restores all 8 batches; the first owner's copy restores the tail (4-8),
    // keeping the timers of b, c and d at their earlier times beside the new ones.
    for (name, ckpt, from) in [("fresh", dir("fresh"), 0), ("local copy", local, 3)] {
        let out = TimedOut::default();
        let clock = ManualClock::new();
        let ssc = context(&ckpt, &clock, &out);
        restore(&ssc, &logged[from..]);
        run(&ssc, &clock, BATCHES as i64, (BATCHES - 8) as u64);
        let expected: BTreeMap<i64, Vec<String>> = reference
            .iter()
            .filter(|(t, _)| **t > 8000)
            .map(|(t, k)| (*t, k.clone()))
            .collect();
        assert_eq!(*out.lock().unwrap(), expected, "restored on {name}");
        drop(ssc);
        let _ = std::fs::remove_dir_all(&ckpt);
    }
    for name in ["reference", "second"] {
        let _ = std::fs::remove_dir_all(dir(name));
    }
}
