//! Scale-out under SIGKILL. Instances of one stateful application run as child processes, each
//! with a checkpoint directory of its own (as on separate machines: state moves only through
//! the changelogs). The input is clicks of 2,000 users spread over 6 partitions without regard
//! to the user, so the pipeline repartitions them by user (`repartition_by_key`) before counting
//! each user's clicks (`map_with_state`, one output record per click, exactly-once sink).
//!
//! The run goes from 1 to 3 instances; a random instance is killed with SIGKILL and restarted
//! `KILLS` times (default 20) while input keeps arriving; then one instance leaves for good
//! (3 -> 2). At the end the output must be exactly that of an uninterrupted single-process run
//! (none lost, none twice), each task's last state must be the uninterrupted run's final state,
//! and the group's offsets must be the end of the input.
//!
//! The uninterrupted run's output is known without running it: the n-th click of user `u` that
//! the count sees is output as `u n`, so whatever the order of a user's clicks, one process
//! writes `u 1` .. `u N` once each, N being the user's clicks.
//!
//! Runs on real Kafka with `DSTREAM_REAL_KAFKA=host:port` (in CI, which starts one), and on the
//! test broker (tansu) with `SCALE_CRASH_ON=tansu` (or `both`). On tansu the output is read
//! `read_uncommitted`: tansu shows aborted transactions to every reader, and the sink's
//! read-back recovery is what keeps the output exactly-once there. On Kafka it is read
//! `read_committed`, with real aborts of the killed instances' transactions.
//!
//! Children are this test binary re-run with `DSTREAM_SCALE_CHILD` set.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration as StdDuration, Instant};

use common::*;
use stream_core::prelude::*;
use stream_core::{State, StateSpec};
use stream_kafka::{Delivery, KafkaSink, KafkaSource, KafkaStreams, OutRecord, ScaleOut};

const PARTITIONS: i32 = 6;
const USERS: usize = 2000;
/// Clicks per user in each round of input (a round before the first instance starts, and one
/// after each kill).
const PER_ROUND: usize = 1;
/// Records per partition and second: a round takes a few seconds to read.
const RATE: f64 = 200.0;
const BATCH_MS: i64 = 500;
/// The instances' session timeout.
const SESSION_TIMEOUT_S: u64 = 6;

/// The child: one instance of the application, until SIGTERM (leaves the group) or SIGKILL.
fn child() -> Result<(), Error> {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let (b, input, out) = (var("SC_BROKERS"), var("SC_INPUT"), var("SC_OUTPUT"));
    let states = PathBuf::from(var("SC_STATES"));
    let mut builder = ScaleOut::new(var("SC_APP"), &b)
        .topics([input.as_str()])
        .checkpoint(var("SC_ROOT"))
        .session_timeout(StdDuration::from_secs(
            var("SC_SESSION_TIMEOUT_S")
                .parse()
                .unwrap_or(SESSION_TIMEOUT_S),
        ));
    if !var("SC_INSTANCE_ID").is_empty() {
        builder = builder.instance_id(var("SC_INSTANCE_ID"));
    }
    let instance = builder.run(move |task| {
        let ssc = StreamingContext::builder(Milliseconds(BATCH_MS))
            .parallelism(2)
            .build()?;
        let source = KafkaSource::strings(&b)
            .topics([input.as_str()])
            .max_rate_per_partition(RATE)
            .build()?;
        let handle = source.handle();
        let counted = ssc
            .kafka_stream(source)
            .map(|u| (u, ()))
            .repartition_by_key()
            .map_with_state(StateSpec::function(
                |_, user: &String, v: Option<()>, st: &mut State<i64>| {
                    v?;
                    let n = st.get().copied().unwrap_or(0) + 1;
                    st.update(n);
                    Some(format!("{user} {n}"))
                },
            ));
        counted.mapped().save_to(
            KafkaSink::with_encoder(&b, &out, |l: &String| Ok(OutRecord::new(l.clone())))
                .delivery(Delivery::ExactlyOnce)
                .commit_offsets_of(&handle)
                .build(),
        )?;
        // The task's whole state after each batch, in a file of this process: the test
        // takes, for each task, the file of the latest batch.
        let file = states.join(format!("{}.{}", task.task, std::process::id()));
        counted.state_snapshots().foreach_batch(move |b, t| {
            let mut text = format!("{}\n", t.millis());
            let users: Vec<(String, i64)> = b.collect();
            for (user, n) in users {
                text += &format!("{user} {n}\n");
            }
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &file))
        })?;
        Ok(ssc)
    })?;
    instance.await_termination()
}

/// Not a test by itself: the child process's entry point (does nothing in a normal run).
#[test]
fn scale_child_entry() {
    if std::env::var_os("DSTREAM_SCALE_CHILD").is_none() {
        return;
    }
    // The engine logs through tracing and installs no logger: the child, a program, does, so
    // that its log says when it starts a task (`runs_tasks`) and what went wrong.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    if let Err(e) = child() {
        eprintln!("child failed: {e}");
        std::process::exit(3);
    }
}

struct Job {
    brokers: String,
    app: String,
    input: String,
    output: String,
    dir: PathBuf,
    /// Static membership: each slot's instances have the id `<app>-<slot>`.
    static_ids: bool,
    /// The instances' session timeout, in seconds.
    session_timeout_s: u64,
}

/// A child instance: its process, its slot (checkpoint directory), its log.
struct Running {
    slot: usize,
    child: Child,
    log: PathBuf,
}

/// A failed test does not leave instances running.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Job {
    /// A job on `brokers` whose topics, group and directory are named after `name`.
    fn new(brokers: &str, name: &str, static_ids: bool, session_timeout_s: u64) -> Job {
        let job = Job {
            brokers: brokers.to_string(),
            app: unique(&format!("{name}-app")),
            input: unique(&format!("{name}-in")),
            output: unique(&format!("{name}-out")),
            dir: std::env::temp_dir().join(unique(&format!("dstream-{name}"))),
            static_ids,
            session_timeout_s,
        };
        std::fs::create_dir_all(job.dir.join("states")).unwrap();
        job
    }

    fn spawn(&self, slot: usize, run: usize) -> Running {
        let log = self.dir.join(format!("instance{slot}-run{run}.log"));
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "scale_child_entry",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("DSTREAM_SCALE_CHILD", "1")
            .env("RUST_LOG", "info")
            .env("SC_BROKERS", &self.brokers)
            .env("SC_APP", &self.app)
            .env("SC_INPUT", &self.input)
            .env("SC_OUTPUT", &self.output)
            .env("SC_STATES", self.dir.join("states"))
            .env("SC_ROOT", self.dir.join(format!("instance{slot}")))
            .env("SC_SESSION_TIMEOUT_S", self.session_timeout_s.to_string())
            .env(
                "SC_INSTANCE_ID",
                if self.static_ids {
                    format!("{}-{slot}", self.app)
                } else {
                    String::new()
                },
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Running { slot, child, log }
    }

    /// The last lines of every instance's log with an error or a warning.
    fn trouble(&self) -> String {
        let mut out = String::new();
        let mut logs: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let bad: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
                .collect();
            if !bad.is_empty() {
                out += &format!("== {}\n", log.display());
                for l in bad.iter().rev().take(6).rev() {
                    out += &format!("{l}\n");
                }
            }
        }
        out
    }
}

/// Whether the instance has started a task (its log says so).
fn runs_tasks(r: &Running) -> bool {
    std::fs::read_to_string(&r.log).is_ok_and(|l| l.contains(": started"))
}

/// Fails the test if a child exited on its own.
fn check_alive(job: &Job, running: &mut [Running]) {
    for r in running.iter_mut() {
        if let Some(status) = r.child.try_wait().unwrap() {
            panic!(
                "instance {} exited ({status}): {}\n{}",
                r.slot,
                std::fs::read_to_string(&r.log).unwrap_or_default(),
                job.trouble()
            );
        }
    }
}

fn terminate(job: &Job, r: &mut Running) {
    let _ = Command::new("kill")
        .args(["-TERM", &r.child.id().to_string()])
        .status();
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while r.child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "instance {} did not stop on SIGTERM",
            r.slot
        );
        std::thread::sleep(StdDuration::from_millis(50));
    }
    let status = r.child.wait().unwrap();
    assert!(
        status.success(),
        "instance {} failed: {}\n{}",
        r.slot,
        std::fs::read_to_string(&r.log).unwrap_or_default(),
        job.trouble()
    );
}

/// The partition of click `k` of user `u` in round `round`: every partition holds some clicks
/// of every user.
fn partition_of(u: usize, k: usize, round: usize) -> usize {
    (u + k + round) % PARTITIONS as usize
}

/// One round: `PER_ROUND` clicks of each user.
fn produce_round(brokers: &str, topic: &str, round: usize) {
    let users: Vec<String> = (0..USERS).map(|u| format!("u{u}")).collect();
    let mut records: Vec<In<'_>> = Vec::new();
    for k in 0..PER_ROUND {
        for (u, name) in users.iter().enumerate() {
            let p = partition_of(u, k, round) as i32;
            records.push((p, None, Some(name.as_bytes())));
        }
    }
    produce(brokers, topic, &records);
}

/// The end offset of each input partition once `rounds` rounds are in.
fn input_ends(rounds: usize) -> Vec<i64> {
    let mut ends = vec![0i64; PARTITIONS as usize];
    for round in 0..rounds {
        for k in 0..PER_ROUND {
            for u in 0..USERS {
                ends[partition_of(u, k, round)] += 1;
            }
        }
    }
    ends
}

/// Each task's state in the latest batch any instance wrote, merged.
fn final_state(dir: &Path) -> BTreeMap<String, i64> {
    let mut latest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((task, pid)) = name.rsplit_once('.') else {
            continue;
        };
        if pid == "tmp" {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        let time: i64 = text
            .lines()
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        if latest.get(task).is_none_or(|(t, _)| time > *t) {
            latest.insert(task.to_string(), (time, text));
        }
    }
    let mut state = BTreeMap::new();
    for (_, text) in latest.values() {
        for l in text.lines().skip(1) {
            let (user, n) = l.split_once(' ').unwrap();
            assert!(
                state.insert(user.to_string(), n.parse().unwrap()).is_none(),
                "user {user} is in the state of two tasks"
            );
        }
    }
    state
}

fn run(kind: &str, brokers: &str, kills: usize) {
    let mut rng = Rng::from_clock();
    let job = Job::new(brokers, "scrash", false, SESSION_TIMEOUT_S);
    eprintln!(
        "seed {}, {kills} kills, on {kind} ({brokers}), logs in {}",
        rng.0,
        job.dir.display()
    );
    let isolation = if kind == "tansu" {
        "read_uncommitted"
    } else {
        "read_committed"
    };
    create_topic(brokers, &job.input, PARTITIONS);
    create_topic(brokers, &job.output, 3);
    let started = Instant::now();
    let mut runs = 0usize;
    let mut spawn = |job: &Job, slot: usize| {
        runs += 1;
        job.spawn(slot, runs)
    };

    // One instance, then three.
    produce_round(brokers, &job.input, 0);
    let mut running = vec![spawn(&job, 0)];
    std::thread::sleep(StdDuration::from_secs(4));
    running.push(spawn(&job, 1));
    running.push(spawn(&job, 2));

    let rounds = kills + 1;
    for k in 0..kills {
        // A random instance, once it runs tasks (a kill of a process still joining the group
        // tests little), a random instant into its batches.
        let i = (rng.next() % running.len() as u64) as usize;
        let deadline = Instant::now() + StdDuration::from_secs(30);
        while !runs_tasks(&running[i]) && Instant::now() < deadline {
            check_alive(&job, &mut running);
            std::thread::sleep(StdDuration::from_millis(100));
        }
        std::thread::sleep(StdDuration::from_millis(rng.next() % 2000));
        check_alive(&job, &mut running);
        let slot = running[i].slot;
        let had_tasks = runs_tasks(&running[i]);
        running[i].child.kill().unwrap(); // SIGKILL
        running[i].child.wait().unwrap();
        eprintln!(
            "kill {}: instance {slot} at {:.1?}{}",
            k + 1,
            started.elapsed(),
            if had_tasks {
                ", running tasks"
            } else {
                ", before it ran a task"
            }
        );
        running[i] = spawn(&job, slot);
        produce_round(brokers, &job.input, k + 1);
    }
    // One leaves for good, once it runs tasks: three to two.
    let i = (rng.next() % 3) as usize;
    let deadline = Instant::now() + StdDuration::from_secs(60);
    while !runs_tasks(&running[i]) && Instant::now() < deadline {
        check_alive(&job, &mut running);
        std::thread::sleep(StdDuration::from_millis(100));
    }
    let mut gone = running.remove(i);
    terminate(&job, &mut gone);
    eprintln!("{kills} kills and a leave in {:.1?}", started.elapsed());

    let (total, end, users) = assert_exact(&job, isolation, rounds, &mut running);
    for r in running.iter_mut() {
        terminate(&job, r);
    }
    eprintln!(
        "on {kind}: {kills} kills, scale 1 -> 3 -> 2: output equals one uninterrupted run's ({total} records, each once), final state equal ({users} users), group offsets at the end ({end:?}), in {:.1?}",
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&job.dir);
}

/// Waits up to `secs` for `total` records in the output, the instances alive.
fn wait_for_output(job: &Job, isolation: &str, total: usize, secs: u64, running: &mut [Running]) {
    let deadline = Instant::now() + StdDuration::from_secs(secs);
    let mut n = 0;
    loop {
        check_alive(job, running);
        // A reader that does not reach the end in time (tansu, busy with three instances,
        // sometimes answers no fetch for a while) tries again until the deadline.
        match try_read_all_as(&job.brokers, &job.output, isolation) {
            Ok(out) => n = out.len(),
            Err(e) => eprintln!("{e}; trying again"),
        }
        if n >= total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "only {n} of {total} records out after {secs} s; logs in {}\n{}",
            job.dir.display(),
            job.trouble()
        );
        std::thread::sleep(StdDuration::from_millis(1000));
    }
}

/// Waits for the output of `rounds` rounds of input, then checks that it is exactly one
/// uninterrupted run's (each record once), that each task's last state is that run's final
/// state, and that the group's offsets are at the end of the input. Returns the output's size,
/// the input's end offsets and the users in the state.
fn assert_exact(
    job: &Job,
    isolation: &str,
    rounds: usize,
    running: &mut [Running],
) -> (usize, Vec<i64>, usize) {
    let total = USERS * PER_ROUND * rounds;
    wait_for_output(job, isolation, total, 300, running);
    let end = input_ends(rounds);
    wait_for(60, "the group's offsets at the end of the input", || {
        group_offsets(&job.brokers, &job.app, &job.input, PARTITIONS) == end
    });
    // A few more batches: nothing more may come out, and every task writes its state.
    std::thread::sleep(StdDuration::from_millis(4 * BATCH_MS as u64));

    let out = read_all_as(&job.brokers, &job.output, isolation);
    let mut got: BTreeMap<String, usize> = BTreeMap::new();
    for r in &out {
        *got.entry(r.text()).or_default() += 1;
    }
    let per_user = (PER_ROUND * rounds) as i64;
    let want: BTreeMap<String, usize> = (0..USERS)
        .flat_map(|u| (1..=per_user).map(move |n| (format!("u{u} {n}"), 1)))
        .collect();
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n > 1).take(5).collect();
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .take(5)
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .take(5)
        .collect();
    eprintln!(
        "output: {} records, {total} expected; twice e.g. {twice:?}; missing e.g. {missing:?}; unexpected e.g. {extra:?}",
        out.len()
    );
    let logs = || format!("logs in {}\n{}", job.dir.display(), job.trouble());
    assert!(twice.is_empty(), "records output twice; {}", logs());
    assert!(missing.is_empty(), "records lost; {}", logs());
    assert!(extra.is_empty(), "records no single run writes; {}", logs());
    assert_eq!(got, want);
    let state = final_state(&job.dir.join("states"));
    let want_state: BTreeMap<String, i64> =
        (0..USERS).map(|u| (format!("u{u}"), per_user)).collect();
    assert_eq!(
        state,
        want_state,
        "the tasks' final state is one uninterrupted run's; {}",
        logs()
    );
    (total, end, state.len())
}

fn kills() -> usize {
    std::env::var("KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(20)
}

/// On real Kafka when `DSTREAM_REAL_KAFKA` names one (CI starts one): about 3.5 minutes on
/// this 2-core machine. `SCALE_CRASH_ON=tansu` runs it on the test broker instead, and
/// `SCALE_CRASH_ON=both` on both, one after the other (each runs three instances on this
/// machine's cores): by hand, since tansu's group coordinator has left partitions unassigned
/// after a member left, stalling a run (docs/scaling.md). `KILLS=n` sets the number of kills.
#[test]
#[cfg_attr(
    not(dstream_real_kafka),
    ignore = "needs a real Kafka broker: DSTREAM_REAL_KAFKA=host:port (CI starts one), or SCALE_CRASH_ON=tansu with --include-ignored"
)]
fn instances_killed_at_random_then_output_state_and_offsets_are_exact() {
    if std::env::var_os("DSTREAM_SCALE_CHILD").is_some() {
        return;
    }
    let on = std::env::var("SCALE_CRASH_ON").unwrap_or_else(|_| "kafka".into());
    if on == "tansu" || on == "both" {
        run("tansu", &brokers(), kills());
    }
    if on == "kafka" || on == "both" {
        match std::env::var("DSTREAM_REAL_KAFKA") {
            Ok(b) if !b.is_empty() => run("kafka", &b, kills()),
            _ => panic!(
                "set DSTREAM_REAL_KAFKA=host:port to run it on a real Apache Kafka broker (scripts/kafka-broker.sh start kafka), or SCALE_CRASH_ON=tansu for the test broker"
            ),
        }
    }
}

/// The lines of an instance's log that show a rebalance touching it: a task started, revoked
/// or lost.
fn task_moves(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            l.contains(": started") || l.contains("revoked") || l.contains("lost to another")
        })
        .map(String::from)
        .collect()
}

/// The session timeout of the static-membership test: far longer than a restart, so that
/// tasks coming back sooner than it came back without the group expiring the killed member
/// (a dynamic member's restart waits for that expiry before any rebalance completes).
const STATIC_SESSION_TIMEOUT_S: u64 = 30;

/// Static membership (`ScaleOutBuilder::instance_id`): of two instances, one is killed with
/// SIGKILL and started again with the same id. It gets its tasks back well within the
/// session timeout (a dynamic member's tasks wait for the timeout to move), without a
/// rebalance (the other instance's tasks never stop), and the output is still exact.
#[test]
#[cfg_attr(
    not(dstream_real_kafka),
    ignore = "needs a real Kafka broker: DSTREAM_REAL_KAFKA=host:port (CI starts one)"
)]
fn a_static_member_killed_and_restarted_gets_its_tasks_back_without_a_rebalance() {
    if std::env::var_os("DSTREAM_SCALE_CHILD").is_some() {
        return;
    }
    let brokers = std::env::var("DSTREAM_REAL_KAFKA").expect("DSTREAM_REAL_KAFKA=host:port");
    let job = Job::new(&brokers, "sstatic", true, STATIC_SESSION_TIMEOUT_S);
    eprintln!("logs in {}", job.dir.display());
    create_topic(&brokers, &job.input, PARTITIONS);
    create_topic(&brokers, &job.output, 3);
    produce_round(&brokers, &job.input, 0);
    let mut running = vec![job.spawn(0, 1), job.spawn(1, 2)];
    // The first round is out and both run tasks: the 6 tasks run, the group is stable.
    wait_for_output(&job, "read_committed", USERS, 120, &mut running);
    wait_for(60, "both instances running tasks", || {
        runs_tasks(&running[0]) && runs_tasks(&running[1])
    });
    std::thread::sleep(StdDuration::from_secs(2));
    let other = running[1].log.clone();
    let other_log = || std::fs::read_to_string(&other).unwrap_or_default();
    let before = task_moves(&other_log()).len();

    running[0].child.kill().unwrap(); // SIGKILL
    running[0].child.wait().unwrap();
    let killed = Instant::now();
    running[0] = job.spawn(0, 3);
    wait_for(60, "the restarted instance running tasks", || {
        runs_tasks(&running[0])
    });
    let back = killed.elapsed();
    eprintln!("the restarted instance started its tasks {back:.1?} after the kill");
    assert!(
        back < StdDuration::from_secs(10),
        "the restarted static member took {back:.1?} to start its tasks (the session timeout is {STATIC_SESSION_TIMEOUT_S} s): {}",
        job.trouble()
    );
    // A while later: no rebalance touched the instance that was not killed.
    std::thread::sleep(StdDuration::from_secs(5));
    let moves = task_moves(&other_log());
    assert!(
        moves.len() == before,
        "a rebalance moved tasks of the instance that was not killed: {:?}",
        moves.get(before..)
    );

    produce_round(&brokers, &job.input, 1);
    let (total, end, users) = assert_exact(&job, "read_committed", 2, &mut running);
    for r in running.iter_mut() {
        terminate(&job, r);
    }
    eprintln!(
        "static membership: tasks back {back:.1?} after a SIGKILL, no rebalance; output exact ({total} records), final state equal ({users} users), offsets at the end ({end:?})"
    );
    let _ = std::fs::remove_dir_all(&job.dir);
}
