//! Exactly-once under SIGKILL, Kafka to Kafka: a child process runs a stateful pipeline (a
//! running count per key in `map_with_state`, one output record per input record) from an input
//! topic to an output topic with the exactly-once sink, and is killed at random instants and
//! restarted from its checkpoint. A `read_committed` reader of the output topic must then see
//! exactly the records of an uninterrupted run (none lost, none twice), the final state must be
//! the uninterrupted run's, and the consumer group's offsets must be the end of the input.
//!
//! The uninterrupted run's output is known without running it: each key lives in one input
//! partition, so its records reach the state in offset order whatever the batch boundaries, and
//! the k-th record of a key is output as "key k value".
//!
//! The child is this test binary re-run with `DSTREAM_KAFKA_CRASH_CHILD` set. `KILLS` sets the
//! number of kills (default 20). `DSTREAM_REAL_KAFKA=host:port` also runs it against that
//! cluster (`crash_test_on_a_real_kafka_cluster`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use common::*;
use stream_core::prelude::*;
use stream_core::{State, StateSpec};
use stream_kafka::{Delivery, KafkaSink, KafkaSource, KafkaStreams, OutRecord};

const PARTITIONS: i32 = 3;
const KEYS_PER_PARTITION: usize = 5;
const PER_PARTITION: usize = 1000;
const BATCH_MS: i64 = 100;
/// Per partition and second: 30 records per partition per batch, about 34 batches a run.
const RATE: f64 = 300.0;

struct Job {
    brokers: String,
    input: String,
    output: String,
    group: String,
    checkpoint: PathBuf,
    state_file: PathBuf,
}

impl Job {
    fn from_env() -> Job {
        let var = |k: &str| std::env::var(k).unwrap();
        Job {
            brokers: var("KC_BROKERS"),
            input: var("KC_INPUT"),
            output: var("KC_OUTPUT"),
            group: var("KC_GROUP"),
            checkpoint: PathBuf::from(var("KC_CHECKPOINT")),
            state_file: PathBuf::from(var("KC_STATE")),
        }
    }

    fn spawn(&self, log: &Path) -> std::process::Child {
        let log = std::fs::File::create(log).unwrap();
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env("DSTREAM_KAFKA_CRASH_CHILD", "1")
            .env("KC_BROKERS", &self.brokers)
            .env("KC_INPUT", &self.input)
            .env("KC_OUTPUT", &self.output)
            .env("KC_GROUP", &self.group)
            .env("KC_CHECKPOINT", &self.checkpoint)
            .env("KC_STATE", &self.state_file)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }
}

/// The child: runs the pipeline from its checkpoint until the input is consumed, then stops.
fn child(job: &Job) -> Result<(), Error> {
    let ssc = StreamingContext::builder(Milliseconds(BATCH_MS))
        .parallelism(2)
        .stop_gracefully_on_signal(false)
        .checkpoint(&job.checkpoint)
        .build()?;
    let source = KafkaSource::strings(&job.brokers)
        .topics([job.input.as_str()])
        .group_id(&job.group)
        .max_rate_per_partition(RATE)
        .build()?;
    let handle = source.handle();
    let events = ssc.kafka_stream(source).map(|l| {
        let (k, v) = l.split_once(' ').unwrap_or((&l, ""));
        (k.to_string(), v.to_string())
    });
    let counted = events.map_with_state(StateSpec::function(
        |_, key: &String, value: Option<String>, st: &mut State<i64>| {
            let v = value?;
            let n = st.get().copied().unwrap_or(0) + 1;
            st.update(n);
            Some(format!("{key} {n} {v}"))
        },
    ));
    counted.mapped().save_to(
        KafkaSink::with_encoder(&job.brokers, &job.output, |line: &String| {
            let key = line.split(' ').next().unwrap_or_default().to_string();
            Ok(OutRecord::new(line.as_bytes()).key(key))
        })
        .delivery(Delivery::ExactlyOnce)
        .commit_offsets_of(&handle)
        .build(),
    )?;
    let state_file = job.state_file.clone();
    counted.state_snapshots().foreach_batch(move |b, _| {
        let mut state: Vec<(String, i64)> = b.collect();
        state.sort();
        let text: String = state.iter().map(|(k, n)| format!("{k} {n}\n")).collect();
        let tmp = state_file.with_extension("tmp");
        std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &state_file))
    })?;
    ssc.start()?;
    let total = (PARTITIONS as usize * PER_PARTITION) as i64;
    let mut done_at = None;
    loop {
        if let Some((t, e)) = ssc.failures().first() {
            return Err(Error::user(*t, e));
        }
        let read: i64 = handle
            .status()
            .partitions
            .iter()
            .map(|p| p.next_offset)
            .sum();
        let completed = ssc.completed_batches();
        match done_at {
            None if read == total => done_at = Some(completed),
            // Two more batches: the last records' batch is committed and the state written.
            Some(at) if completed >= at + 2 => {
                ssc.stop_gracefully();
                return Ok(());
            }
            _ => {}
        }
        std::thread::sleep(StdDuration::from_millis(10));
    }
}

/// Not a test by itself: the child process's entry point (does nothing in a normal run).
#[test]
fn child_entry() {
    if std::env::var_os("DSTREAM_KAFKA_CRASH_CHILD").is_none() {
        return;
    }
    if let Err(e) = child(&Job::from_env()) {
        eprintln!("child failed: {e}");
        std::process::exit(3);
    }
}

/// Produces the input; returns the uninterrupted run's output lines and final state.
fn write_input(brokers: &str, topic: &str, seed: u64) -> (Vec<String>, BTreeMap<String, i64>) {
    create_topic(brokers, topic, PARTITIONS);
    let mut rng = Rng(seed);
    let mut lines = Vec::new();
    let mut expected = Vec::new();
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for p in 0..PARTITIONS {
        for i in 0..PER_PARTITION {
            // Each key belongs to one partition.
            let key = format!("p{p}k{}", rng.next() % KEYS_PER_PARTITION as u64);
            let value = format!("v{p}-{i}");
            let n = counts.entry(key.clone()).or_default();
            *n += 1;
            expected.push(format!("{key} {n} {value}"));
            lines.push((p, key, value));
        }
    }
    let texts: Vec<String> = lines.iter().map(|(_, k, v)| format!("{k} {v}")).collect();
    let records: Vec<In<'_>> = lines
        .iter()
        .zip(&texts)
        .map(|((p, k, _), t)| (*p, Some(k.as_str()), Some(t.as_bytes())))
        .collect();
    produce(brokers, topic, &records);
    expected.sort();
    (expected, counts)
}

fn read_state(path: &Path) -> BTreeMap<String, i64> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let (k, n) = l.split_once(' ').unwrap();
            (k.to_string(), n.parse().unwrap())
        })
        .collect()
}

fn run_crash_test(brokers: &str, kills: usize) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}, {kills} kills, brokers {brokers}");
    let root = std::env::temp_dir().join(unique("dstream-kafka-crash"));
    std::fs::create_dir_all(&root).unwrap();
    let job = Job {
        brokers: brokers.to_string(),
        input: unique("crash-in"),
        output: unique("crash-out"),
        group: unique("crash-group"),
        checkpoint: root.join("ckpt"),
        state_file: root.join("state.txt"),
    };
    let (expected, expected_state) = write_input(brokers, &job.input, seed);
    create_topic(brokers, &job.output, 2);

    let mut rng = Rng(seed);
    let mut killed = 0;
    let started = Instant::now();
    let mut restarts_without_progress = 0;
    while killed < kills {
        let mut c = job.spawn(&root.join(format!("child-{killed}.log")));
        let wait = StdDuration::from_millis(150 + rng.next() % 600);
        let deadline = Instant::now() + wait;
        let mut exited = None;
        while Instant::now() < deadline {
            if let Some(status) = c.try_wait().unwrap() {
                exited = Some(status);
                break;
            }
            std::thread::sleep(StdDuration::from_millis(2));
        }
        match exited {
            Some(status) => {
                let err = std::fs::read_to_string(root.join(format!("child-{killed}.log")))
                    .unwrap_or_default();
                assert!(status.success(), "child failed: {err}");
                // The run completed before all kills: that is fine, the input is consumed.
                restarts_without_progress += 1;
                assert!(
                    restarts_without_progress < 5,
                    "the run keeps completing early"
                );
                break;
            }
            None => {
                c.kill().unwrap(); // SIGKILL
                c.wait().unwrap();
                killed += 1;
            }
        }
    }
    // The last run, to the end of the input.
    let last_log = root.join(format!("child-{}.log", killed + 1));
    let last = job.spawn(&last_log).wait().unwrap();
    assert!(
        last.success(),
        "the final run failed: {}",
        std::fs::read_to_string(&last_log).unwrap_or_default()
    );
    eprintln!("{killed} kills in {:.1?}", started.elapsed());

    let out = read_all(brokers, &job.output);
    let mut seen: Vec<String> = out.iter().map(|r| r.text()).collect();
    seen.sort();
    let mut dups = seen.clone();
    dups.dedup();
    let duplicated = seen.len() - dups.len();
    let missing: Vec<&String> = expected
        .iter()
        .filter(|e| seen.binary_search(e).is_err())
        .take(5)
        .collect();
    eprintln!(
        "output: {} records read_committed, {} expected, {duplicated} duplicated, missing e.g. {missing:?}",
        seen.len(),
        expected.len()
    );
    if duplicated > 0 {
        // Where the copies are, and what the sink said about its recoveries.
        let mut copies: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in &out {
            copies.entry(r.text()).or_default().push(format!(
                "p{} o{} batch {}",
                r.partition,
                r.offset,
                r.headers.get("dstream.batch").cloned().unwrap_or_default()
            ));
        }
        for (text, at) in copies.iter().filter(|(_, v)| v.len() > 1).take(3) {
            eprintln!("twice: {text:?} at {at:?}");
        }
        for i in 0..=killed {
            let log =
                std::fs::read_to_string(root.join(format!("child-{i}.log"))).unwrap_or_default();
            for l in log.lines().filter(|l| l.contains("kafka sink")) {
                eprintln!("child {i}: {l}");
            }
        }
    }
    assert_eq!(duplicated, 0, "records output twice");
    assert!(missing.is_empty(), "records lost");
    assert_eq!(seen, expected);
    assert_eq!(read_state(&job.state_file), expected_state, "final state");
    let per_partition = vec![PER_PARTITION as i64; PARTITIONS as usize];
    assert_eq!(
        group_offsets(brokers, &job.group, &job.input, PARTITIONS),
        per_partition,
        "the group's offsets are the end of the input"
    );
    eprintln!(
        "{killed} kills: outputs equal the uninterrupted run's ({} records, each once), state equal ({} keys), group offsets at the end",
        expected.len(),
        expected_state.len()
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn sigkill_at_random_instants_then_output_state_and_offsets_are_exact() {
    if std::env::var_os("DSTREAM_KAFKA_CRASH_CHILD").is_some() {
        return;
    }
    let kills = std::env::var("KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    run_crash_test(&brokers(), kills);
}

#[test]
#[cfg_attr(
    not(dstream_real_kafka),
    ignore = "needs a real Kafka broker: DSTREAM_REAL_KAFKA=host:port (scripts/kafka-broker.sh start kafka; CI starts one)"
)]
fn crash_test_on_a_real_kafka_cluster() {
    if std::env::var_os("DSTREAM_KAFKA_CRASH_CHILD").is_some() {
        return;
    }
    match std::env::var("DSTREAM_REAL_KAFKA") {
        Ok(b) if !b.is_empty() => run_crash_test(&b, 10),
        _ => panic!(
            "set DSTREAM_REAL_KAFKA=host:port to run the crash test against a real Apache Kafka cluster (transactions with aborts honoured)"
        ),
    }
}
