//! What the examples share: common flags (clap), a fixed hash for the generators, the dashboard flag,
//! and running until a time limit or Ctrl-C.

// Each example uses part of this module.
#![allow(dead_code)]

use dstream::prelude::*;
use dstream::{Dashboard, Error};

/// The flags the sessions and clickstream examples share (clap flattens them into each one's).
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long)]
    pub seconds: Option<u64>,
    /// The batch interval, in milliseconds
    #[arg(long = "batch-ms", default_value_t = 1_000, value_name = "MS", value_parser = clap::value_parser!(i64).range(1..))]
    pub batch_ms: i64,
    /// Serve the live dashboard (on --addr)
    #[arg(long)]
    pub serve: bool,
    /// The dashboard's address (port 0 picks a free one)
    #[arg(long, default_value = "127.0.0.1:4040", value_name = "HOST:PORT")]
    pub addr: String,
    /// Kafka brokers to read from (with --topic)
    #[arg(long, value_name = "BROKERS", requires = "topic")]
    pub kafka: Option<String>,
    /// The topic to read (with --kafka)
    #[arg(long, requires = "kafka")]
    pub topic: Option<String>,
    /// Only write generated input to the topic (6 partitions if it is new)
    #[arg(long = "feed-only", requires = "kafka")]
    pub feed_only: bool,
    /// Scale out: run this several times with the same NAME; the topic's partitions are spread
    /// over the instances
    #[arg(long, value_name = "NAME", requires = "kafka")]
    pub app: Option<String>,
    /// With --app: the instance's state, in DIR/<task> (default target/<example>-NAME)
    #[arg(long, value_name = "DIR", requires = "app")]
    pub checkpoint: Option<String>,
    /// With --app: keep warm copies of each task's state on N other instances
    #[arg(long, default_value_t = 0, value_name = "N", requires = "app")]
    pub standby: usize,
    /// With --app: how long the group waits for a silent instance (killed, hung) before its
    /// tasks move (Kafka's `session.timeout.ms`; brokers accept 6 s at least unless their
    /// `group.min.session.timeout.ms` is lowered)
    #[arg(
        long = "session-timeout-ms",
        default_value_t = 10_000,
        value_name = "MS",
        requires = "app"
    )]
    pub session_timeout_ms: u64,
    /// With --app: static membership (Kafka's `group.instance.id`): this instance's name, the
    /// same across its restarts; one that crashes and is started again within the session
    /// timeout gets its tasks back without a rebalance
    #[arg(long = "instance-id", value_name = "NAME", requires = "app")]
    pub instance_id: Option<String>,
}

/// Logging for the examples, as a program (not a library) sets it up: the engine's events
/// (warnings, a batch's failure, a rebalance) on stderr through `tracing-subscriber`, filtered
/// by `RUST_LOG` (`RUST_LOG=info`, `RUST_LOG=stream_kafka=debug`), warnings by default.
/// librdkafka's and other `log` records come through too.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true)
        .try_init();
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
pub fn run_mode<A>(
    name: &str,
    args: &A,
    common: &Common,
    feed: impl FnOnce(&A, &str, &str) -> Result<(), Error>,
    scale_out: impl FnOnce(&A, &str, &str) -> Result<(), Error>,
    run: impl FnOnce(&A) -> Result<(), Error>,
) {
    let result = match (&common.kafka, &common.topic) {
        (Some(b), Some(t)) if common.feed_only => feed(args, b, t),
        (Some(b), Some(t)) if common.app.is_some() => scale_out(args, b, t),
        _ => run(args),
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
    flags: &Common,
    brokers: &str,
    topic: &str,
    pipeline: impl Fn(&StreamingContext, &str, &str) -> Result<(), Error> + Send + Sync + 'static,
) -> Result<(), Error> {
    let app = flags.app.clone().unwrap_or_default();
    let root = flags
        .checkpoint
        .clone()
        .unwrap_or_else(|| format!("target/{name}-{app}"));
    let batch_ms = flags.batch_ms;
    let (b, t) = (brokers.to_string(), topic.to_string());
    let mut builder = dstream::kafka::ScaleOut::new(&app, brokers)
        .topics([topic])
        .checkpoint(&root)
        .standby_replicas(flags.standby)
        .session_timeout(std::time::Duration::from_millis(flags.session_timeout_ms));
    if let Some(id) = &flags.instance_id {
        builder = builder.instance_id(id);
    }
    let instance = builder.run(move |_task| {
        let ssc = StreamingContext::builder(Milliseconds(batch_ms)).build()?;
        pipeline(&ssc, &b, &t)?;
        Ok(ssc)
    })?;
    eprintln!("{name}: instance of {app} started (state in {root}/<task>)");
    let _dashboard = instance_dashboard(&instance, flags)?;
    run_instance(name, instance, flags.seconds)
}

/// With `--serve`, the dashboard on `--addr` (127.0.0.1:4040 by default, Spark UI's port).
pub fn dashboard(ssc: &StreamingContext, flags: &Common) -> Result<Option<Dashboard>, Error> {
    if !flags.serve {
        return Ok(None);
    }
    let d = ssc.serve_dashboard(flags.addr.as_str())?;
    println!("Dashboard: {}", d.url());
    Ok(Some(d))
}

/// With `--serve`, a scaled-out instance's dashboard on `--addr` (127.0.0.1:4040 by default;
/// give each instance on one machine a port of its own, or port 0 for a free one): its tasks
/// with their roles, the group's members and the last rebalance, beside the batches.
pub fn instance_dashboard(
    instance: &dstream::kafka::Instance,
    flags: &Common,
) -> Result<Option<Dashboard>, Error> {
    if !flags.serve {
        return Ok(None);
    }
    let d = instance.serve_dashboard(flags.addr.as_str())?;
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
