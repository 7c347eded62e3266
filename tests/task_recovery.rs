//! A task of a scaled-out application (a context built inside a [`TaskScope`] whose zero time
//! the instances agreed on) recovers exactly as a single process does: a batch that was cut and
//! never committed is replayed with the same records, whenever the task joined the
//! application's batch grid.

use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use dstream::prelude::*;
use dstream::{Source, SourceContext, TaskScope};

/// Ten records, all there from the start, read from a position (the index of the next one):
/// a replayable source, as a Kafka partition or a file is.
struct Log {
    next: usize,
}

const RECORDS: usize = 10;

impl Source<u32> for Log {
    fn name(&self) -> String {
        "log".into()
    }

    fn capture(&mut self, _time: Time, _ctx: &SourceContext) -> Result<Option<Batch<u32>>, Error> {
        let batch: Vec<u32> = (self.next..RECORDS).map(|i| i as u32).collect();
        self.next = RECORDS;
        Ok(Some(Batch::from(batch)))
    }

    fn position(&self) -> Option<Vec<u8>> {
        Some((self.next as u64).to_be_bytes().to_vec())
    }

    fn restore(&mut self, position: &[u8]) -> Result<(), Error> {
        self.next = decode(position) as usize;
        Ok(())
    }

    fn replay(
        &mut self,
        _time: Time,
        from: &[u8],
        to: &[u8],
        _ctx: &SourceContext,
    ) -> Result<Option<Batch<u32>>, Error> {
        Ok(Some(Batch::from(
            (decode(from)..decode(to))
                .map(|i| i as u32)
                .collect::<Vec<_>>(),
        )))
    }
}

fn decode(position: &[u8]) -> u64 {
    u64::from_be_bytes(position.try_into().expect("8 bytes"))
}

fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dstream-task-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The task's context: the log's records to `seen`; with `fail`, every batch holding records
/// fails (its owner stopped before its outputs committed).
fn task(
    scope: &TaskScope,
    ckpt: &std::path::Path,
    seen: Arc<Mutex<Vec<u32>>>,
    fail: bool,
) -> StreamingContext {
    scope.enter(|| {
        let ssc = StreamingContext::builder(Milliseconds(100))
            .stop_gracefully_on_signal(false)
            .build()
            .unwrap();
        ssc.checkpoint(ckpt).unwrap();
        ssc.input_stream(Log { next: 0 })
            .foreach_batch(move |b, t| {
                let records = b.collect();
                if fail && !records.is_empty() {
                    seen.lock().unwrap().push(u32::MAX);
                    return Err(format!("the owner stopped during the batch at {t}"));
                }
                seen.lock().unwrap().extend(records);
                Ok(())
            })
            .unwrap();
        ssc
    })
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(StdDuration::from_millis(20));
    }
}

/// The task joins its application 10 s after the agreed zero time (as every task of an
/// application without exchanges does), so its first batch is not the grid's first. Its first
/// batch fails; started again on the same checkpoint, it replays that batch's ten records. (The
/// position before that first batch used to be kept under the zero time and not written
/// ahead: the restart then resumed after the failed batch and its records were lost, while the
/// group's offsets moved past them.)
#[test]
fn a_task_that_joined_late_replays_its_first_batch_after_a_failure() {
    let ckpt = dir("late-first-batch");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let scope = TaskScope {
        app: "late".into(),
        task: "late-in-0".into(),
        partitions: vec![("late-in".into(), 0)],
        zero: Some(Time::from_millis(now / 100 * 100 - 10_000)),
        link: None,
        exchanges: None,
    };

    let failed = Arc::new(Mutex::new(Vec::new()));
    let ssc = task(&scope, &ckpt, failed.clone(), true);
    ssc.start().unwrap();
    wait_until("the first batch to fail", || {
        !failed.lock().unwrap().is_empty()
    });
    ssc.stop();
    drop(ssc);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let ssc = task(&scope, &ckpt, seen.clone(), false);
    ssc.start().unwrap();
    let all: Vec<u32> = (0..RECORDS as u32).collect();
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while seen.lock().unwrap().len() < RECORDS && Instant::now() < deadline {
        std::thread::sleep(StdDuration::from_millis(20));
    }
    // A few more batches: nothing is replayed twice.
    std::thread::sleep(StdDuration::from_millis(300));
    ssc.stop();
    let mut got = seen.lock().unwrap().clone();
    got.sort_unstable();
    assert_eq!(
        got, all,
        "the restarted task processes the failed batch's records exactly once"
    );
    let _ = std::fs::remove_dir_all(&ckpt);
}
