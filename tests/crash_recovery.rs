//! Exact recovery under SIGKILL: a stateful pipeline (an inverse window and `map_with_state`
//! with a timeout) over the file-directory source runs in a child process that is killed at
//! random instants and restarted from its checkpoint each time; its text-file outputs and its
//! final state must equal those of an uninterrupted run.
//!
//! The child is this test binary itself, re-run with `DSTREAM_CRASH_CHILD` set. `KILLS` sets the
//! number of kills (default 20; more by hand: `KILLS=200 cargo test --test crash_recovery`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use dstream::prelude::*;
use dstream::{FileStreamOptions, State, StateSpec};

const BATCH_MS: i64 = 100;
const FILES: usize = 40;
/// Batches a run lasts: the files, then enough to drain the window and time out every key.
const BATCHES: i64 = FILES as i64 + 10;

/// The pipeline under test.
fn build(input: &Path, out: &Path) -> Result<StreamingContext, Error> {
    let ssc = StreamingContext::builder(Milliseconds(BATCH_MS))
        .parallelism(2)
        .stop_gracefully_on_signal(false)
        .build()?;
    let lines = ssc.text_file_stream_with(
        input,
        FileStreamOptions {
            include_existing: true,
            max_files_per_batch: Some(1),
        },
    );
    let events = lines.map(|l| {
        let mut f = l.split(' ');
        let user = f.next().unwrap_or_default().to_string();
        let word = f.next().unwrap_or_default().to_string();
        (user, word)
    });
    let counts = events
        .map(|(_, w)| (w, 1i64))
        .reduce_by_key_and_window_inv_filtered(
            |a, b| a + b,
            |a, b| a - b,
            Milliseconds(5 * BATCH_MS),
            Milliseconds(BATCH_MS),
            HashPartitioner::new(2)?,
            |kv| kv.1 > 0,
        );
    let prefix = |name: &str| out.join(name).to_string_lossy().into_owned();
    counts
        .map(|(w, c)| format!("{w} {c}"))
        .save_as_text_files(prefix("window"), "txt")?;
    let sessions = events.map_with_state(
        StateSpec::function(
            |_, user: &String, word: Option<String>, st: &mut State<i64>| match word {
                Some(_) => {
                    let n = st.get().copied().unwrap_or(0) + 1;
                    st.update(n);
                    Some(format!("{user} {n}"))
                }
                None => Some(format!("{user} closed {}", st.get().copied().unwrap_or(0))),
            },
        )
        .timeout(Milliseconds(3 * BATCH_MS)),
    );
    sessions.save_as_text_files(prefix("sessions"), "txt")?;
    sessions
        .state_snapshots()
        .map(|(u, n)| format!("{u} {n}"))
        .save_as_text_files(prefix("state"), "txt")?;
    Ok(ssc)
}

/// The child: runs the pipeline from its checkpoint until the last batch, then exits 0.
fn child(input: &Path, checkpoint: &Path, out: &Path) -> Result<(), Error> {
    let ssc = StreamingContext::get_or_create(checkpoint, || build(input, out))?;
    ssc.start()?;
    let zero = ssc.zero_time().expect("started");
    let end = zero + Milliseconds(BATCHES * BATCH_MS);
    loop {
        if let Some(e) = ssc.failures().first() {
            return Err(e.1.clone());
        }
        if ssc
            .recent_batches()
            .last()
            .is_some_and(|b| b.batch_time >= end)
        {
            ssc.stop();
            return Ok(());
        }
        std::thread::sleep(StdDuration::from_millis(10));
    }
}

fn spawn(input: &Path, checkpoint: &Path, out: &Path) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env("DSTREAM_CRASH_CHILD", "1")
        .env("CRASH_INPUT", input)
        .env("CRASH_CHECKPOINT", checkpoint)
        .env("CRASH_OUT", out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Not a test by itself: the child process's entry point (does nothing in a normal run).
#[test]
fn child_entry() {
    if std::env::var_os("DSTREAM_CRASH_CHILD").is_none() {
        return;
    }
    let var = |k: &str| PathBuf::from(std::env::var_os(k).unwrap());
    if let Err(e) = child(
        &var("CRASH_INPUT"),
        &var("CRASH_CHECKPOINT"),
        &var("CRASH_OUT"),
    ) {
        eprintln!("child failed: {e}");
        std::process::exit(3);
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn write_input(dir: &Path, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng(seed);
    for f in 0..FILES {
        let mut text = String::new();
        // Users come and go: each file draws from a window of 8 users that drifts.
        for _ in 0..30 {
            let user = f / 4 + (rng.next() % 8) as usize;
            let word = rng.next() % 12;
            text.push_str(&format!("u{user} w{word}\n"));
        }
        std::fs::write(dir.join(format!("in-{f:03}.txt")), text).unwrap();
    }
}

/// Every output batch, by output and batch index (from the run's first batch), as sorted lines.
fn outputs(out: &Path) -> BTreeMap<(String, i64), Vec<String>> {
    let mut dirs = Vec::new();
    for e in std::fs::read_dir(out).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let (kind, rest) = name.split_once('-').unwrap();
        let ms: i64 = rest.trim_end_matches(".txt").parse().unwrap();
        dirs.push((kind.to_string(), ms, name));
    }
    let first = dirs.iter().map(|d| d.1).min().unwrap();
    let mut all = BTreeMap::new();
    for (kind, ms, name) in dirs {
        let mut lines = Vec::new();
        for part in std::fs::read_dir(out.join(&name)).unwrap() {
            let text = std::fs::read_to_string(part.unwrap().path()).unwrap();
            lines.extend(text.lines().map(str::to_string));
        }
        lines.sort();
        let index = (ms - first) / BATCH_MS;
        // The run is its first BATCHES batches. A restarted child catches up on the batches it
        // missed back to back, so the batch after the last may already be running when the
        // child sees the last one done and stops; what that extra batch writes is not part of
        // the run being compared.
        if index < BATCHES {
            all.insert((kind, index), lines);
        }
    }
    all
}

#[test]
fn sigkill_at_random_instants_then_recovery_equals_an_uninterrupted_run() {
    if std::env::var_os("DSTREAM_CRASH_CHILD").is_some() {
        return;
    }
    let kills: usize = std::env::var("KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("seed {seed}, {kills} kills");
    let root = std::env::temp_dir().join(format!("dstream-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let input = root.join("input");
    write_input(&input, seed);

    // The reference: one uninterrupted run.
    let (ref_ckpt, ref_out) = (root.join("ref-ckpt"), root.join("ref-out"));
    let r = spawn(&input, &ref_ckpt, &ref_out)
        .wait_with_output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    // The same pipeline killed `kills` times at random instants, restarted each time.
    let (ckpt, out) = (root.join("ckpt"), root.join("out"));
    let mut rng = Rng(seed);
    let mut killed = 0;
    let mut finished_early = 0;
    let started = Instant::now();
    while killed < kills {
        let mut c = spawn(&input, &ckpt, &out);
        let wait = StdDuration::from_millis(30 + rng.next() % 400);
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
                // The run completed before the kill: start over with a new run to kill more.
                let mut err = String::new();
                use std::io::Read;
                c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                assert!(status.success(), "child failed: {err}");
                finished_early += 1;
                assert!(
                    finished_early < 50,
                    "the child never lives long enough to be killed"
                );
                compare(&ref_out, &out);
                let _ = std::fs::remove_dir_all(&ckpt);
                let _ = std::fs::remove_dir_all(&out);
            }
            None => {
                c.kill().unwrap(); // SIGKILL
                c.wait().unwrap();
                killed += 1;
            }
        }
    }
    // The last restart runs to the end.
    let r = spawn(&input, &ckpt, &out).wait_with_output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    compare(&ref_out, &out);
    eprintln!(
        "{killed} kills in {:?}; outputs and final state equal the uninterrupted run's",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&root);
}

fn compare(reference: &Path, got: &Path) {
    let (want, have) = (outputs(reference), outputs(got));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        have.keys().collect::<Vec<_>>(),
        "the runs wrote different batches"
    );
    for (k, lines) in &want {
        assert_eq!(lines, &have[k], "output {} of batch {} differs", k.0, k.1);
    }
    let largest = want
        .iter()
        .filter(|(k, _)| k.0 == "state")
        .map(|(_, v)| v.len())
        .max()
        .unwrap();
    assert!(
        largest > 0,
        "the state never held a key: the test proves nothing"
    );
    eprintln!(
        "compared {} output batches, the state's after every batch (up to {largest} keys) included",
        want.len()
    );
}
