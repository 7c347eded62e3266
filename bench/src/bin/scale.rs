//! Scale-out figures, measured on what a user runs: the `sessions` example's release binary,
//! started as instances of one application (`--app`) on a Kafka broker, each with a checkpoint
//! directory of its own and its dashboard on a free port, which this binary reads
//! (`/api/status`: each task's role, since when, its batches, what its restore did).
//!
//! ```text
//! cargo build --release --example sessions -p dstream
//! DSTREAM_KAFKA_JARS=~/.cache/dstream scripts/kafka-broker.sh start kafka
//! eval "$(scripts/kafka-broker.sh env kafka)"
//! cargo run --release -p dstream-bench --bin scale -- failover --kills 20
//! cargo run --release -p dstream-bench --bin scale -- restore --keys 1000000
//! cargo run --release -p dstream-bench --bin scale -- throughput --clicks 3000000
//! ```
//!
//! - `failover`: 3 instances (`--standby N`: with N standby replicas of each task), clicks fed
//!   at `--rate`; a random instance that runs tasks is killed with SIGKILL (and started again)
//!   `--kills` times (`--stop term`: stopped with SIGTERM, a rolling restart, its exit waited
//!   for before it starts again; `--static-membership`: each instance has an `--instance-id`,
//!   and one started again within the session timeout gets its tasks back). For each kill:
//!   the time until
//!   every task it ran has completed a batch on an instance again, split into the time until
//!   the task was started elsewhere (the group noticing, the rebalance) and its restore.
//! - `restore`: `--keys` visitors, one click each, make that many sessions of state (`--idle`
//!   long enough that none closes); one instance processes them and leaves; a second one, on
//!   an empty checkpoint directory, restores every task from the changelogs (tasks side by
//!   side, `start_threads`): the time from the first task's restore starting to the last
//!   one's ending, keys/s, changes/s, MB/s.
//! - `throughput`: `--clicks` clicks in the topic, then 1, 2 and 3 instances of a new
//!   application each: the time until the group's offsets reach the end, and each instance's
//!   CPU time (from /proc), so the per-core efficiency of scale-out shows.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration as StdDuration, Instant, SystemTime};

use serde_json::Value;

const PARTITIONS: i32 = 6;

/// What the benchmark measures.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// SIGKILL (or SIGTERM) instances one at a time; time until their tasks run elsewhere
    Failover,
    /// Restore session state of `--keys` visitors on an instance with no local copy
    Restore,
    /// 1, 2, then 3 instances over `--clicks` clicks: time and CPU per instance
    Throughput,
}

/// How `failover` stops an instance.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// SIGKILL: the group notices after the session timeout
    Kill,
    /// SIGTERM: the instance finishes its batches in flight and leaves the group
    Term,
}

/// Scale-out figures of the sessions example's instances (issue 20; results in BENCHMARKS.md).
#[derive(clap::Parser, Debug)]
#[command(name = "scale")]
struct Args {
    /// What to measure
    #[arg(value_enum)]
    mode: Mode,
    /// The Kafka brokers [default: $KAFKA_REAL_BROKERS, else $KAFKA_BROKERS]
    #[arg(long, default_value_t = default_brokers(), hide_default_value = true)]
    brokers: String,
    /// failover: instances killed, one at a time
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// restore: visitors, each one session of state
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// throughput: clicks in the topic
    #[arg(long, default_value_t = 3_000_000)]
    clicks: u64,
    /// failover: clicks fed per second
    #[arg(long, default_value_t = 3_000)]
    rate: u64,
    /// The instances' batch interval in milliseconds
    #[arg(long = "batch-ms", value_name = "MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    batch_ms: u64,
    /// Standby replicas of each task
    #[arg(long, default_value_t = 0)]
    standby: u64,
    /// The instances' session timeout (ms): how long the group waits for a killed one. Below
    /// 6,000 the broker must allow it (`KAFKA_MIN_SESSION_TIMEOUT_MS` of scripts/kafka-broker.sh)
    #[arg(
        long = "session-timeout-ms",
        value_name = "MS",
        default_value_t = 10_000
    )]
    session_timeout_ms: u64,
    /// failover: how an instance is stopped
    #[arg(long, value_enum, default_value_t = Stop::Kill)]
    stop: Stop,
    /// Static membership: each instance started with `--instance-id` (its slot), so that one
    /// killed and started again gets its tasks back without a rebalance
    #[arg(long = "static-membership")]
    static_membership: bool,
    /// The sessions example's release binary
    #[arg(long, default_value = "target/release/examples/sessions")]
    binary: PathBuf,
    /// failover: before each kill, wait up to this many seconds for every task to be within
    /// two batch intervals of now (how far behind it still was is printed with the kill)
    #[arg(long, default_value_t = 30)]
    settle: u64,
    /// Keep the instances' logs and checkpoints (removed at the end otherwise)
    #[arg(long)]
    keep: bool,
    /// Where the instances keep their checkpoints
    #[arg(skip = std::env::temp_dir().join(format!("dstream-scale-bench-{}", std::process::id())))]
    dir: PathBuf,
}

impl Args {
    /// `--stop term`: the failover stops instances with SIGTERM instead of SIGKILL.
    fn graceful(&self) -> bool {
        self.stop == Stop::Term
    }
}

fn default_brokers() -> String {
    std::env::var("KAFKA_REAL_BROKERS")
        .or_else(|_| std::env::var("KAFKA_BROKERS"))
        .unwrap_or_default()
}

fn parse() -> Args {
    let a = <Args as clap::Parser>::parse();
    if a.brokers.is_empty() {
        fail("no brokers: --brokers HOST:PORT, or KAFKA_REAL_BROKERS / KAFKA_BROKERS");
    }
    if !a.binary.exists() {
        fail(&format!(
            "{} is missing: cargo build --release --example sessions -p dstream",
            a.binary.display()
        ));
    }
    a
}

/// The instances started and not yet stopped (their pids), for `fail` to stop.
static RUNNING: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

fn fail(message: &str) -> ! {
    eprintln!("scale: {message} (scale --help lists the flags)");
    // The instances would otherwise run on, until their output hits the closed pipe.
    let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|e| e.into_inner()));
    for pid in running {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    std::process::exit(2)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn create_topic(brokers: &str, topic: &str) {
    if let Err(e) = dstream::kafka::admin::create_topic(brokers, topic, PARTITIONS) {
        fail(&e);
    }
}

/// Produces click lines `line(i)` for `i` in `range`, round robin over the partitions.
fn produce(brokers: &str, topic: &str, range: std::ops::Range<u64>, line: impl Fn(u64) -> String) {
    dstream_bench::produce_round_robin(brokers, topic, PARTITIONS, range, line);
}

/// A click of the sessions example's format: `visitor url time_ms`.
fn click(visitor: u64, i: u64) -> String {
    format!("v{visitor} /p/{} {}", dstream_bench::mix(i) % 500, now_ms())
}

/// The group's committed offsets, summed over the partitions (0 for a partition without, and
/// while they cannot be read).
fn committed(brokers: &str, group: &str, topic: &str) -> i64 {
    dstream::kafka::admin::committed_offsets(brokers, group, topic, PARTITIONS)
        .map(|offsets| offsets.into_iter().flatten().sum())
        .unwrap_or(0)
}

/// An instance: the example's process and its dashboard's address.
struct Instance {
    child: Child,
    slot: usize,
    dashboard: Option<String>,
    lines: mpsc::Receiver<String>,
}

impl Instance {
    fn start(a: &Args, app: &str, topic: &str, slot: usize, extra: &[&str]) -> Instance {
        let log = std::fs::File::create(a.dir.join(format!("{app}-{slot}-{}.log", now_ms())))
            .expect("log file");
        let mut child = Command::new(&a.binary)
            .args(["--kafka", &a.brokers, "--topic", topic, "--app", app])
            .arg("--checkpoint")
            .arg(a.dir.join(format!("{app}-{slot}")))
            .args(["--serve", "--addr", "127.0.0.1:0", "--batch-ms"])
            .arg(a.batch_ms.to_string())
            .arg("--session-timeout-ms")
            .arg(a.session_timeout_ms.to_string())
            .args(if a.static_membership {
                vec!["--instance-id".to_string(), format!("{app}-{slot}")]
            } else {
                Vec::new()
            })
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("the example starts");
        RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Dashboard: ") && tx.send(line).is_err() {
                    return;
                }
            }
        });
        Instance {
            child,
            slot,
            dashboard: None,
            lines: rx,
        }
    }

    /// The instance's status (`None` until its dashboard is up, or if it does not answer).
    fn status(&mut self) -> Option<Value> {
        if self.dashboard.is_none() {
            let line = self.lines.try_recv().ok()?;
            let url = line.trim_start_matches("Dashboard: http://");
            self.dashboard = Some(url.trim_end_matches('/').to_string());
        }
        let addr = self.dashboard.as_ref()?;
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(StdDuration::from_secs(5))).ok()?;
        write!(s, "GET /api/status HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
    }

    /// Its active tasks, as `/api/status` describes them.
    fn active_tasks(&mut self) -> Vec<Value> {
        let Some(s) = self.status() else {
            return Vec::new();
        };
        s["scale"]["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["role"] == "active")
            .cloned()
            .collect()
    }

    /// The active tasks' last completed batch times (ms).
    fn last_batches(&mut self) -> BTreeMap<String, u64> {
        self.active_tasks()
            .iter()
            .filter_map(|t| {
                Some((
                    t["task"].as_str()?.to_string(),
                    t["last_batch_ms"].as_u64()?,
                ))
            })
            .collect()
    }

    /// Its active tasks: name -> (since ms, batches completed here, restore).
    fn tasks(&mut self) -> BTreeMap<String, (u64, u64, Value)> {
        self.active_tasks()
            .into_iter()
            .map(|t| {
                (
                    t["task"].as_str().unwrap_or_default().to_string(),
                    (
                        t["since_ms"].as_u64().unwrap_or(0),
                        t["batches"].as_u64().unwrap_or(0),
                        t["restore"].clone(),
                    ),
                )
            })
            .collect()
    }

    /// CPU seconds the process used (user + system, from /proc).
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
        // Fields 14 and 15 (utime, stime) are the 12th and 13th after the name.
        (ticks(11) + ticks(12)) / 100.0
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped();
    }

    /// Its pid is no longer one for `fail` to kill (another process may get it).
    fn reaped(&self) {
        let id = self.child.id();
        RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|pid| *pid != id);
    }

    fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + StdDuration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.reaped();
                return;
            }
            std::thread::sleep(StdDuration::from_millis(50));
        }
        self.kill();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_until(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + StdDuration::from_secs(secs);
    while !cond() {
        if Instant::now() > deadline {
            fail(&format!("timed out waiting for {what}"));
        }
        std::thread::sleep(StdDuration::from_millis(50));
    }
}

/// The median of `v`.
fn p50(v: &[f64]) -> f64 {
    let mut sorted = v.to_vec();
    sorted.sort_by(f64::total_cmp);
    dstream_bench::percentile(&sorted, 0.5)
}

fn failover(a: &Args) {
    let tag = now_ms();
    let (app, topic) = (format!("fo-{tag}"), format!("fo-clicks-{tag}"));
    create_topic(&a.brokers, &topic);
    // The feeder: `--rate` clicks a second, 20,000 visitors.
    let (b, t, rate) = (a.brokers.clone(), topic.clone(), a.rate);
    std::thread::spawn(move || {
        let started = Instant::now();
        let mut i = 0;
        loop {
            let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
            produce(&b, &t, i..due, |j| click(dstream_bench::mix(j) % 20_000, j));
            i = due;
            std::thread::sleep(StdDuration::from_millis(100));
        }
    });
    let standby = a.standby.to_string();
    let extra = ["--standby", standby.as_str()];
    let mut instances: Vec<Instance> = (0..3)
        .map(|s| Instance::start(a, &app, &topic, s, &extra))
        .collect();
    let mut rng = tag | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut total, mut moved, mut restore) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..a.kills {
        // Every task active somewhere, and processing.
        wait_until(180, "all 6 tasks active", || {
            let all: BTreeSet<String> = instances
                .iter_mut()
                .flat_map(|i| {
                    i.tasks()
                        .into_iter()
                        .filter(|(_, (_, b, _))| *b > 0)
                        .map(|(t, _)| t)
                })
                .collect();
            all.len() == PARTITIONS as usize
        });
        // And caught up: every task's last batch within 2 intervals of now, so that a kill
        // does not find the application still replaying what the previous one held up.
        // And caught up, for up to `--settle` seconds: every task's last batch within 2
        // intervals of now, so that a kill does not find the application still replaying what
        // the previous one held up. How far behind it still was is printed with the kill.
        let deadline = Instant::now() + StdDuration::from_secs(a.settle);
        let behind = loop {
            let now = now_ms();
            let last: Vec<u64> = instances
                .iter_mut()
                .flat_map(|i| i.last_batches().into_values())
                .collect();
            let behind = last
                .iter()
                .map(|b| now.saturating_sub(*b))
                .max()
                .unwrap_or(0);
            if (last.len() >= PARTITIONS as usize && behind <= 2 * a.batch_ms)
                || Instant::now() > deadline
            {
                break behind;
            }
            std::thread::sleep(StdDuration::from_millis(50));
        };
        std::thread::sleep(StdDuration::from_millis(next() % 2000));
        let victim = loop {
            let i = (next() % 3) as usize;
            if !instances[i].tasks().is_empty() {
                break i;
            }
        };
        let tasks: BTreeSet<String> = instances[victim].tasks().into_keys().collect();
        let slot = instances[victim].slot;
        let killed_at = now_ms();
        // SIGKILL (a crash), or SIGTERM (a rolling restart: the instance finishes its
        // batches in flight and leaves the group) and its exit waited for.
        if a.graceful() {
            instances[victim].terminate();
        } else {
            instances[victim].kill();
        }
        instances[victim] = Instance::start(a, &app, &topic, slot, &extra);
        // Until each of its tasks completed a batch on an instance since the kill.
        let mut back: BTreeMap<String, (u64, u64, Value)> = BTreeMap::new();
        let deadline = Instant::now() + StdDuration::from_secs(180);
        while back.len() < tasks.len() && Instant::now() < deadline {
            for inst in instances.iter_mut() {
                for (t, (since, batches, r)) in inst.tasks() {
                    if tasks.contains(&t) && since >= killed_at && batches > 0 {
                        back.entry(t).or_insert((since, now_ms(), r));
                    }
                }
            }
            std::thread::sleep(StdDuration::from_millis(20));
        }
        if back.len() < tasks.len() {
            fail("the killed instance's tasks did not come back within 3 minutes");
        }
        let done = back
            .values()
            .map(|(_, at, _)| *at)
            .max()
            .unwrap_or(killed_at);
        let started = back.values().map(|(s, _, _)| *s).max().unwrap_or(killed_at);
        let restored: f64 = back
            .values()
            .map(|(_, _, r)| r["ms"].as_f64().unwrap_or(0.0))
            .fold(0.0, f64::max);
        let secs = (done - killed_at) as f64 / 1000.0;
        println!(
            "kill {:>2} at {killed_at} ms ({:.1} s behind): instance {slot} ({} tasks): processing again after {secs:.2} s (started elsewhere after {:.2} s, restore {:.0} ms)",
            k + 1,
            behind as f64 / 1000.0,
            tasks.len(),
            (started - killed_at) as f64 / 1000.0,
            restored
        );
        total.push(secs);
        moved.push((started - killed_at) as f64 / 1000.0);
        restore.push(restored);
    }
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "failover over {} {}, {} ms batches, {} ms session timeout, {} standby replicas{}: processing again after p50 {:.2} s, max {:.2} s; started elsewhere after p50 {:.2} s; restore p50 {:.0} ms, max {:.0} ms",
        a.kills,
        if a.graceful() { "SIGTERMs" } else { "SIGKILLs" },
        a.batch_ms,
        a.session_timeout_ms,
        a.standby,
        if a.static_membership {
            ", static membership"
        } else {
            ""
        },
        p50(&total),
        max(&total),
        p50(&moved),
        p50(&restore),
        max(&restore),
    );
}

/// Waits until the group's offsets are at `end` (the sum over the partitions).
fn drained(a: &Args, app: &str, topic: &str, end: i64, secs: u64) -> StdDuration {
    let started = Instant::now();
    wait_until(secs, "the input consumed", || {
        committed(&a.brokers, app, topic) >= end
    });
    started.elapsed()
}

fn restore(a: &Args) {
    let tag = now_ms();
    let (app, topic) = (format!("rs-{tag}"), format!("rs-clicks-{tag}"));
    create_topic(&a.brokers, &topic);
    eprintln!("producing {} clicks of distinct visitors", a.keys);
    produce(&a.brokers, &topic, 0..a.keys, |i| click(i, i));
    let idle = ["--idle", "86400"];
    let mut first = Instance::start(a, &app, &topic, 0, &idle);
    let took = drained(a, &app, &topic, a.keys as i64, 3600);
    eprintln!("processed in {took:.1?}; the instance leaves");
    std::thread::sleep(StdDuration::from_secs(2));
    first.terminate();
    for rep in 0..3 {
        let mut second = Instance::start(a, &app, &topic, 10 + rep, &idle);
        let mut tasks = BTreeMap::new();
        wait_until(3600, "every task restored", || {
            tasks = second.tasks();
            tasks.len() == PARTITIONS as usize
        });
        let changes: u64 = tasks
            .values()
            .map(|(_, _, r)| r["changes"].as_u64().unwrap_or(0))
            .sum();
        let bytes: u64 = tasks
            .values()
            .map(|(_, _, r)| r["bytes"].as_u64().unwrap_or(0))
            .sum();
        // Tasks restore side by side (`start_threads`): the time is from the first task's
        // restore starting to the last one's ending; each task's own time is shown too.
        let spans: Vec<(f64, f64)> = tasks
            .values()
            .map(|(since, _, r)| {
                let ms = r["ms"].as_f64().unwrap_or(0.0);
                (*since as f64 - ms, *since as f64)
            })
            .collect();
        let first = spans.iter().map(|s| s.0).fold(f64::INFINITY, f64::min);
        let last = spans.iter().map(|s| s.1).fold(f64::NEG_INFINITY, f64::max);
        let wall = (last - first) / 1000.0;
        let each: Vec<String> = tasks
            .values()
            .map(|(_, _, r)| format!("{:.2}", r["ms"].as_f64().unwrap_or(0.0) / 1000.0))
            .collect();
        println!(
            "restore {}: {} keys of session state, {changes} changes, {:.1} MB of changelog in {wall:.2} s (tasks {} s): {:.0} keys/s, {:.0} changes/s, {:.1} MB/s; the instance's CPU {:.1} s",
            rep + 1,
            a.keys,
            bytes as f64 / 1e6,
            each.join(", "),
            a.keys as f64 / wall,
            changes as f64 / wall,
            bytes as f64 / 1e6 / wall,
            second.cpu_seconds()
        );
        second.terminate();
    }
}

fn throughput(a: &Args) {
    let tag = now_ms();
    let topic = format!("tp-clicks-{tag}");
    create_topic(&a.brokers, &topic);
    eprintln!("producing {} clicks", a.clicks);
    produce(&a.brokers, &topic, 0..a.clicks, |i| {
        click(dstream_bench::mix(i) % 100_000, i)
    });
    let mut one_per_cpu = None;
    for n in 1..=3 {
        let app = format!("tp-{tag}-{n}");
        let started = Instant::now();
        let mut instances: Vec<Instance> = (0..n)
            .map(|s| Instance::start(a, &app, &topic, s, &[]))
            .collect();
        let took = drained(a, &app, &topic, a.clicks as i64, 3600);
        let cpu: Vec<f64> = instances.iter().map(Instance::cpu_seconds).collect();
        let total_cpu: f64 = cpu.iter().sum();
        let per_cpu = a.clicks as f64 / total_cpu;
        let base = *one_per_cpu.get_or_insert(per_cpu);
        println!(
            "{n} instance(s): {} clicks in {:.1} s ({:.0} clicks/s, from their start); CPU {} s; {:.0} clicks per CPU-second ({:.0}% of one instance's)",
            a.clicks,
            took.as_secs_f64(),
            a.clicks as f64 / started.elapsed().as_secs_f64(),
            cpu.iter()
                .map(|c| format!("{c:.1}"))
                .collect::<Vec<_>>()
                .join(" + "),
            per_cpu,
            100.0 * per_cpu / base
        );
        for i in instances.iter_mut() {
            i.terminate();
        }
    }
}

fn main() {
    let a = parse();
    std::fs::create_dir_all(&a.dir).expect("work directory");
    eprintln!("logs and checkpoints in {}", a.dir.display());
    match a.mode {
        Mode::Failover => failover(&a),
        Mode::Restore => restore(&a),
        Mode::Throughput => throughput(&a),
    }
    if !a.keep {
        let _ = std::fs::remove_dir_all(Path::new(&a.dir));
    }
}
