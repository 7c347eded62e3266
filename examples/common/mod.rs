//! What the examples share: flag parsing, a fixed hash for the generators, the dashboard flag,
//! and running until a time limit or Ctrl-C.

// Each example uses part of this module.
#![allow(dead_code)]

use std::collections::HashMap;

use dstream::prelude::*;
use dstream::{Dashboard, Error};

/// The flags of a command line: `--name value` or `--name` alone.
pub struct Flags {
    values: HashMap<String, String>,
    usage: &'static str,
}

impl Flags {
    /// Parses the process's arguments; `valued` names the flags that take a value, `switches`
    /// those that do not. Prints the usage and exits on `--help` or a mistake.
    pub fn parse(valued: &[&str], switches: &[&str], usage: &'static str) -> Flags {
        let program = std::env::args().next().unwrap_or_default();
        let mut values = HashMap::new();
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let name = flag.trim_start_matches("--").to_string();
            if flag == "-h" || flag == "--help" {
                println!("{usage}");
                std::process::exit(0);
            } else if valued.contains(&name.as_str()) && flag.starts_with("--") {
                match it.next() {
                    Some(v) => values.insert(name, v),
                    None => fail(usage, &format!("{flag} needs a value")),
                };
            } else if switches.contains(&name.as_str()) && flag.starts_with("--") {
                values.insert(name, String::new());
            } else {
                fail(usage, &format!("unknown argument {flag:?} (in {program})"));
            }
        }
        Flags { values, usage }
    }

    /// A whole number flag, or `default`.
    pub fn num(&self, name: &str, default: u64) -> u64 {
        match self.values.get(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|_| {
                fail(
                    self.usage,
                    &format!("--{name} takes a whole number, not {v:?}"),
                )
            }),
        }
    }

    /// A text flag.
    pub fn text(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// Whether a switch is on.
    pub fn on(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }
}

fn fail(usage: &str, msg: &str) -> ! {
    eprintln!("{msg}\n{usage}");
    std::process::exit(2);
}

/// A fixed, well-mixed hash of a number (splitmix64): the generators are pure functions of the
/// record index, so every run, and every test, sees the same data.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number in [0, 1) from a hash.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The cumulative Zipf(`s`) distribution over `n` items, for `zipf_pick`.
pub fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n).map(|k| 1.0 / (k as f64).powf(s)).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    weights
        .iter()
        .map(|w| {
            acc += w / total;
            acc
        })
        .collect()
}

/// The item a hash picks from a Zipf distribution (0 is the most frequent).
pub fn zipf_pick(cdf: &[f64], h: u64) -> usize {
    let u = unit(h);
    cdf.partition_point(|c| *c < u).min(cdf.len() - 1)
}

/// A batch time as a UTC clock time, "14:03:05".
pub fn clock(t: Time) -> String {
    let s = t.millis().div_euclid(1000);
    format!(
        "{:02}:{:02}:{:02}",
        s.div_euclid(3600).rem_euclid(24),
        s.div_euclid(60).rem_euclid(60),
        s.rem_euclid(60)
    )
}

/// The examples' modes, by flags: `--kafka B --topic T --feed-only` writes generated input
/// to the topic, `--kafka B --topic T --app NAME` runs a scaled-out instance, anything else
/// one process (on the topic with `--kafka` and `--topic`). An error ends the process with
/// status 1, after `name: error`.
pub fn run_mode(
    name: &str,
    flags: &Flags,
    usage: &str,
    feed: impl FnOnce(&Flags, &str, &str) -> Result<(), Error>,
    scale_out: impl FnOnce(&Flags, &str, &str) -> Result<(), Error>,
    run: impl FnOnce(&Flags) -> Result<(), Error>,
) {
    if flags.text("kafka").is_some() != flags.text("topic").is_some() {
        eprintln!("{name}: --kafka and --topic go together\n{usage}");
        std::process::exit(2);
    }
    let result = match (flags.text("kafka"), flags.text("topic")) {
        (Some(b), Some(t)) if flags.on("feed-only") => feed(flags, &b, &t),
        (Some(b), Some(t)) if flags.text("app").is_some() => scale_out(flags, &b, &t),
        _ => run(flags),
    };
    if let Err(e) = result {
        eprintln!("{name}: {e}");
        std::process::exit(1);
    }
}

/// `--app NAME`: this process as one instance of application NAME over `topic`, each of its
/// partitions a task whose context `pipeline` fills (given the brokers and the topic), with
/// state in `--checkpoint DIR/<task>` (default `target/<name>-NAME`), the instance dashboard
/// with `--serve`, until Ctrl-C, a failure, or `--seconds`.
pub fn run_scaled_out(
    name: &'static str,
    flags: &Flags,
    brokers: &str,
    topic: &str,
    pipeline: impl Fn(&StreamingContext, &str, &str) -> Result<(), Error> + Send + Sync + 'static,
) -> Result<(), Error> {
    let app = flags.text("app").unwrap_or_default();
    let root = flags
        .text("checkpoint")
        .unwrap_or_else(|| format!("target/{name}-{app}"));
    let batch_ms = flags.num("batch-ms", 1_000).max(1) as i64;
    let (b, t) = (brokers.to_string(), topic.to_string());
    let instance = dstream::kafka::ScaleOut::new(&app, brokers)
        .topics([topic])
        .checkpoint(&root)
        .standby_replicas(flags.num("standby", 0) as usize)
        .run(move |_task| {
            let ssc = StreamingContext::builder(Milliseconds(batch_ms)).build()?;
            pipeline(&ssc, &b, &t)?;
            Ok(ssc)
        })?;
    eprintln!("{name}: instance of {app} started (state in {root}/<task>)");
    let _dashboard = instance_dashboard(&instance, flags)?;
    run_instance(
        name,
        instance,
        flags.text("seconds").map(|_| flags.num("seconds", 0)),
    )
}

/// With `--serve`, the dashboard on `--addr` (127.0.0.1:4040 by default, Spark UI's port).
pub fn dashboard(ssc: &StreamingContext, flags: &Flags) -> Result<Option<Dashboard>, Error> {
    if !flags.on("serve") {
        return Ok(None);
    }
    let addr = flags
        .text("addr")
        .unwrap_or_else(|| "127.0.0.1:4040".to_string());
    let d = ssc.serve_dashboard(addr.as_str())?;
    println!("Dashboard: {}", d.url());
    Ok(Some(d))
}

/// With `--serve`, a scaled-out instance's dashboard on `--addr` (127.0.0.1:4040 by default;
/// give each instance on one machine a port of its own, or port 0 for a free one): its tasks
/// with their roles, the group's members and the last rebalance, beside the batches.
pub fn instance_dashboard(
    instance: &dstream::kafka::Instance,
    flags: &Flags,
) -> Result<Option<Dashboard>, Error> {
    if !flags.on("serve") {
        return Ok(None);
    }
    let addr = flags
        .text("addr")
        .unwrap_or_else(|| "127.0.0.1:4040".to_string());
    let d = instance.serve_dashboard(addr.as_str())?;
    println!("Dashboard: {}", d.url());
    Ok(Some(d))
}

/// Starts the context and runs it for `seconds` (then stops gracefully), or until Ctrl-C.
/// Runs a scaled-out instance until it stops (Ctrl-C), fails, or `seconds` pass; prints the
/// tasks it runs whenever they change.
pub fn run_instance(
    example: &str,
    instance: dstream::kafka::Instance,
    seconds: Option<u64>,
) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let mut owned = Vec::new();
    loop {
        let now: Vec<String> = instance
            .status()
            .tasks
            .into_iter()
            .filter(|t| !matches!(t.role, dstream::kafka::TaskRole::Standby { .. }))
            .map(|t| t.task)
            .collect();
        if now != owned {
            eprintln!("{example}: this instance runs tasks {now:?}");
            owned = now;
        }
        if let Some(end) =
            instance.await_termination_or_timeout(std::time::Duration::from_secs(1))?
        {
            return end;
        }
        if seconds.is_some_and(|s| started.elapsed().as_secs() >= s) {
            instance.stop();
            return instance.await_termination();
        }
    }
}

pub fn run(ssc: &StreamingContext, seconds: Option<u64>) -> Result<(), Error> {
    ssc.start()?;
    if let Some(s) = seconds
        && !ssc.await_termination_or_timeout(Seconds(s as i64))?
    {
        ssc.stop_gracefully();
    }
    ssc.await_termination()
}

/// Creates `topic` with 6 partitions unless it exists.
pub fn create_topic(example: &str, brokers: &str, topic: &str) {
    if let Err(e) = dstream::kafka::admin::create_topic(brokers, topic, 6)
        && !e.contains("AlreadyExists")
    {
        eprintln!("{example}: {e}");
    }
}

/// Feeds `topic` (created with 6 partitions unless it exists) with record `line(i)` for
/// `i = 0, 1, ...` at `rate` records a second, catching up every 100 ms, for `seconds` or for
/// ever: the feeder of the examples' `--feed-only` (and of `hashtags --feed`).
pub fn feed(
    example: &str,
    brokers: &str,
    topic: &str,
    rate: u64,
    seconds: Option<u64>,
    mut line: impl FnMut(u64) -> String,
) -> Result<(), Error> {
    create_topic(example, brokers, topic);
    eprintln!("{example}: feeding {topic} with {rate} records a second");
    let started = std::time::Instant::now();
    let mut i = 0u64;
    while seconds.is_none_or(|s| started.elapsed().as_secs() < s) {
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        let batch: Vec<_> = (i..due)
            .map(|j| dstream::kafka::OutRecord::new(line(j)))
            .collect();
        i = due;
        dstream::kafka::admin::produce(brokers, topic, batch).map_err(|e| {
            Error::from(dstream::ContextError::InvalidArgument(format!(
                "feeding {topic}: {e}"
            )))
        })?;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    Ok(())
}

/// Reports a record of the input that is not what the example reads (it is skipped): the
/// first ten on stderr, then every thousandth, with the count so far.
pub fn report_skipped(example: &str, record: &str) {
    static SKIPPED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if n <= 10 || n.is_multiple_of(1000) {
        eprintln!("{example}: skipped a record that does not parse ({n} so far): {record:?}");
    }
}
