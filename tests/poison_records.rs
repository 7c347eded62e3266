//! Poison records in a stateful pipeline, under each policy of `RecordErrors`, with the
//! pipeline killed (SIGKILL) and restarted from its checkpoint.
//!
//! The input holds two poison records: a line whose number does not parse (`map` panics) and a
//! value 13 that the state functions refuse (`update_state_by_key` and `map_with_state` panic).
//! - `fail` (Spark's way): the batch fails, and so does every restart, at the same batch, with
//!   the same message; what came before it is intact.
//! - `skip`: the pipeline completes; killed and restarted at random instants, its outputs and
//!   final state equal an uninterrupted run's, and the state holds every value but the poison.
//! - `dead_letter`: the same, and the three poison records reach the dead-letter function.
//!
//! The child is this test binary, re-run with `DSTREAM_POISON_CHILD` set.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use dstream::prelude::*;
use dstream::{FileStreamOptions, RecordErrors};

const BATCH_MS: i64 = 100;
const FILES: usize = 16;
/// Batches a run lasts: the files, then a few more.
const BATCHES: i64 = FILES as i64 + 4;
/// The file holding the line that does not parse, and the one holding the unlucky 13.
const POISON_FILE: usize = 5;
const UNLUCKY_FILE: usize = 9;

fn policy(name: &str, dead: &Path) -> RecordErrors {
    match name {
        "fail" => RecordErrors::fail(),
        "skip" => RecordErrors::skip(),
        "dead_letter" => {
            let dead = dead.to_path_buf();
            RecordErrors::dead_letter(move |d| {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&dead)
                    .expect("the dead-letter file opens");
                let op = d.operator.split('#').next().unwrap_or_default();
                writeln!(f, "{op} | {} | {}", d.record_text(), d.error).expect("written");
            })
        }
        other => panic!("no policy {other}"),
    }
}

/// The pipeline: per-user totals (`update_state_by_key`) and running counts (`map_with_state`).
fn build(input: &Path, out: &Path, policy: RecordErrors) -> Result<StreamingContext, Error> {
    let ssc = StreamingContext::builder(Milliseconds(BATCH_MS))
        .parallelism(2)
        .stop_gracefully_on_signal(false)
        .on_record_error(policy)
        .build()?;
    let lines = ssc.text_file_stream_with(
        input,
        FileStreamOptions {
            include_existing: true,
            max_files_per_batch: Some(1),
        },
    );
    let events = lines.map(|l| {
        let (user, n) = l.split_once(' ').expect("user and number");
        let n: i64 = n.parse().unwrap_or_else(|_| panic!("not a number: {n}"));
        (user.to_string(), n)
    });
    let totals = events.update_state_by_key(|ns: Vec<i64>, total: Option<i64>| {
        assert!(!ns.contains(&13), "unlucky 13");
        Some(total.unwrap_or(0) + ns.iter().sum::<i64>())
    });
    let prefix = |name: &str| out.join(name).to_string_lossy().into_owned();
    totals
        .map(|(u, t)| format!("{u} {t}"))
        .save_as_text_files(prefix("totals"), "txt")?;
    let counts = events.map_with_state(StateSpec::function(
        |_, user: &String, n: Option<i64>, st: &mut State<i64>| {
            assert!(n != Some(13), "unlucky 13");
            let c = st.get().copied().unwrap_or(0) + 1;
            st.update(c);
            Some(format!("{user} {c}"))
        },
    ));
    counts.save_as_text_files(prefix("counts"), "txt")?;
    Ok(ssc)
}

/// The child: runs from its checkpoint until the last batch; a failed batch ends it with code 3.
fn child(input: &Path, checkpoint: &Path, out: &Path, policy: RecordErrors) -> Result<(), Error> {
    let ssc = StreamingContext::get_or_create(checkpoint, || build(input, out, policy))?;
    ssc.start()?;
    let end = ssc.zero_time().expect("started") + Milliseconds(BATCHES * BATCH_MS);
    loop {
        if let Some((_, e)) = ssc.failures().first() {
            ssc.stop();
            return Err(e.clone());
        }
        if ssc
            .recent_batches()
            .last()
            .is_some_and(|b| b.batch_time >= end)
        {
            ssc.stop();
            for c in ssc.record_errors() {
                eprintln!(
                    "record errors: {} skipped {} dead-lettered {}",
                    c.operator, c.skipped, c.dead_lettered
                );
            }
            return Ok(());
        }
        std::thread::sleep(StdDuration::from_millis(10));
    }
}

/// Not a test by itself: the child process's entry point (does nothing in a normal run).
#[test]
fn child_entry() {
    if std::env::var_os("DSTREAM_POISON_CHILD").is_none() {
        return;
    }
    let var = |k: &str| PathBuf::from(std::env::var_os(k).unwrap());
    let name = std::env::var("POISON_POLICY").unwrap();
    let p = policy(&name, &var("POISON_DEAD"));
    if let Err(e) = child(
        &var("POISON_INPUT"),
        &var("POISON_CHECKPOINT"),
        &var("POISON_OUT"),
        p,
    ) {
        eprintln!("child failed: {e}");
        std::process::exit(3);
    }
}

struct Run {
    input: PathBuf,
    root: PathBuf,
    policy: &'static str,
}

impl Run {
    fn new(policy: &'static str) -> Run {
        let root =
            std::env::temp_dir().join(format!("dstream-poison-{policy}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let input = root.join("input");
        std::fs::create_dir_all(&input).unwrap();
        for f in 0..FILES {
            let mut text = String::new();
            for i in 0..12 {
                text.push_str(&format!("u{} {}\n", (f + i) % 5, f * 12 + i + 100));
            }
            if f == POISON_FILE {
                text.push_str("u3 poison\n");
            }
            if f == UNLUCKY_FILE {
                text.push_str("u4 13\n");
            }
            std::fs::write(input.join(format!("in-{f:03}.txt")), text).unwrap();
        }
        Run {
            input,
            root,
            policy,
        }
    }

    fn spawn(&self, name: &str) -> std::process::Child {
        let dir = self.root.join(name);
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env("DSTREAM_POISON_CHILD", "1")
            .env("POISON_POLICY", self.policy)
            .env("POISON_INPUT", &self.input)
            .env("POISON_CHECKPOINT", dir.join("ckpt"))
            .env("POISON_OUT", dir.join("out"))
            .env("POISON_DEAD", dir.join("dead.txt"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs `name` to its end; its exit code and stderr.
    fn run(&self, name: &str) -> (Option<i32>, String) {
        let r = self.spawn(name).wait_with_output().unwrap();
        (
            r.status.code(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        )
    }

    /// Kills `name` with SIGKILL `kills` times at random instants, restarting it each time, then
    /// runs it to its end.
    fn killed(&self, name: &str, kills: usize, seed: u64) -> (Option<i32>, String) {
        let mut rng = seed | 1;
        let mut killed = 0;
        let started = Instant::now();
        while killed < kills {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let mut c = self.spawn(name);
            std::thread::sleep(StdDuration::from_millis(150 + rng % 700));
            if c.try_wait().unwrap().is_some() {
                // It finished first: what follows (the final run) checks it.
                break;
            }
            c.kill().unwrap();
            c.wait().unwrap();
            killed += 1;
        }
        eprintln!("{}: {killed} kills in {:?}", self.policy, started.elapsed());
        self.run(name)
    }

    /// Every output batch of `name`, by output and batch index from its first batch.
    fn outputs(&self, name: &str) -> BTreeMap<(String, i64), Vec<String>> {
        let out = self.root.join(name).join("out");
        let mut dirs = Vec::new();
        for e in std::fs::read_dir(&out).unwrap() {
            let file = e.unwrap().file_name().to_string_lossy().into_owned();
            if let Some((kind, ms)) = file.split_once('-')
                && let Ok(ms) = ms.trim_end_matches(".txt").parse::<i64>()
            {
                dirs.push((kind.to_string(), ms, file));
            }
        }
        let first = dirs.iter().map(|d| d.1).min().unwrap();
        let mut all = BTreeMap::new();
        for (kind, ms, file) in dirs {
            let index = (ms - first) / BATCH_MS;
            if index >= BATCHES {
                continue;
            }
            let mut lines = Vec::new();
            for part in std::fs::read_dir(out.join(&file)).unwrap() {
                let text = std::fs::read_to_string(part.unwrap().path()).unwrap();
                lines.extend(text.lines().map(str::to_string));
            }
            lines.sort();
            all.insert((kind, index), lines);
        }
        all
    }

    /// The final totals per user, from the last batch's output.
    fn final_totals(&self, name: &str) -> BTreeMap<String, i64> {
        let outputs = self.outputs(name);
        let last = outputs
            .iter()
            .rfind(|((k, _), _)| k == "totals")
            .expect("a totals batch");
        last.1
            .iter()
            .map(|l| {
                let (u, t) = l.split_once(' ').unwrap();
                (u.to_string(), t.parse().unwrap())
            })
            .collect()
    }

    /// Every user's total of the input's good values: what the state holds once the poison
    /// records are skipped.
    fn expected_totals(&self) -> BTreeMap<String, i64> {
        let mut totals = BTreeMap::new();
        for f in 0..FILES {
            for i in 0..12 {
                *totals.entry(format!("u{}", (f + i) % 5)).or_insert(0) +=
                    (f * 12 + i + 100) as i64;
            }
        }
        totals
    }
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[test]
fn fail_stops_at_the_poison_record_in_every_restart_and_keeps_what_came_before() {
    if std::env::var_os("DSTREAM_POISON_CHILD").is_some() {
        return;
    }
    let run = Run::new("fail");
    let (code, err) = run.run("a");
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("not a number: poison"), "{err}");
    let before = run.outputs("a");
    // Restarted from its checkpoint, twice: the same batch fails the same way, and nothing
    // before it is lost or repeated.
    for _ in 0..2 {
        let (code, again) = run.run("a");
        assert_eq!(code, Some(3), "{again}");
        assert!(again.contains("not a number: poison"), "{again}");
        assert_eq!(run.outputs("a"), before);
    }
    let done: BTreeSet<i64> = before.keys().map(|(_, i)| *i).collect();
    assert_eq!(
        done,
        (0..POISON_FILE as i64).collect::<BTreeSet<_>>(),
        "the batches before the poison record's, and only those, are output"
    );
}

fn skipping_run(policy: &'static str) -> Run {
    let run = Run::new(policy);
    let (code, err) = run.run("reference");
    assert_eq!(code, Some(0), "{err}");
    for op in ["map", "updateStateByKey", "mapWithState"] {
        let dead = if policy == "dead_letter" { 1 } else { 0 };
        let line = format!("skipped 1 dead-lettered {dead}");
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("record errors: {op}#")) && l.ends_with(&line)),
            "{op}: {line} in\n{err}"
        );
    }
    let seed = seed();
    eprintln!("seed {seed}");
    let (code, err) = run.killed("killed", 6, seed);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        run.outputs("killed"),
        run.outputs("reference"),
        "outputs after SIGKILLs and restarts equal an uninterrupted run's"
    );
    // u3's poison line is skipped by `map`; u4's unlucky batch is skipped by the state
    // function, so u4 keeps the state it had: that batch's other values of u4 are not added.
    let mut expected = run.expected_totals();
    let unlucky_others: i64 = (0..12)
        .filter(|i| (UNLUCKY_FILE + i) % 5 == 4)
        .map(|i| (UNLUCKY_FILE * 12 + i + 100) as i64)
        .sum();
    *expected.get_mut("u4").unwrap() -= unlucky_others;
    assert_eq!(run.final_totals("killed"), expected);
    assert_eq!(run.final_totals("reference"), expected);
    run
}

#[test]
fn skip_drops_the_poison_records_and_recovers_exactly_after_sigkills() {
    if std::env::var_os("DSTREAM_POISON_CHILD").is_some() {
        return;
    }
    skipping_run("skip");
}

#[test]
fn dead_letter_hands_on_each_poison_record_and_recovers_exactly_after_sigkills() {
    if std::env::var_os("DSTREAM_POISON_CHILD").is_some() {
        return;
    }
    let run = skipping_run("dead_letter");
    let letters = |name: &str| -> Vec<String> {
        std::fs::read_to_string(run.root.join(name).join("dead.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    let expected = vec![
        "map | u3 poison | panicked: not a number: poison".to_string(),
        "mapWithState | (u4, 13) | panicked: unlucky 13".to_string(),
        "updateStateByKey | (u4, [208, 213, 218, 13]) | panicked: unlucky 13".to_string(),
    ];
    let mut reference = letters("reference");
    reference.sort();
    assert_eq!(reference, expected);
    // At least once: a batch computed again after a kill hands its letters on again.
    let killed = letters("killed");
    assert_eq!(
        killed.iter().cloned().collect::<BTreeSet<_>>(),
        expected.into_iter().collect::<BTreeSet<_>>(),
        "{killed:?}"
    );
}

/// An operator's own policy overrides the context's, and a policy on a stream whose operator
/// calls no function per record is refused with a clear error, not ignored.
#[test]
fn an_operator_s_policy_overrides_the_context_s_and_is_refused_where_meaningless() {
    if std::env::var_os("DSTREAM_POISON_CHILD").is_some() {
        return;
    }
    use dstream::testing::TestContext;
    let tc = TestContext::new();
    let words = tc.input_stream(vec![vec!["1", "two", "3"], vec!["4"]]);
    let parsed = words
        .map(|w: &str| w.parse::<i64>().expect("a number"))
        .on_record_error(RecordErrors::skip());
    let doubled = parsed
        .filter(|n| 10 / (n - 3) != 0 || *n > 0)
        .on_record_error(RecordErrors::fail());
    let out = tc.collect(&doubled).unwrap();
    let report = tc.run(2).unwrap();
    // The filter's division by zero at 3 fails its batch, the first; the second runs.
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    let failure = report.failures[0].1.to_string();
    assert!(failure.contains("attempt to divide by zero"), "{failure}");
    assert_eq!(out.batch(0), vec![4]);
    assert_eq!(
        tc.context()
            .record_errors()
            .iter()
            .map(|c| (c.operator.split('#').next().unwrap().to_string(), c.skipped))
            .collect::<Vec<_>>(),
        // The filter, under `fail`, drops nothing and is not listed.
        vec![("map".to_string(), 1)]
    );

    let tc = TestContext::new();
    let s = tc
        .input_stream(vec![vec![1, 2]])
        .repartition(2)
        .on_record_error(RecordErrors::skip());
    let err = tc.collect(&s).unwrap_err().to_string();
    assert!(
        err.contains("on_record_error: `repartition` calls no user function per record"),
        "{err}"
    );
}
