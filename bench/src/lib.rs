//! Shared pieces of dstream's benchmarks: the click-line and tweet-line generators, a source
//! that replays pre-built in-memory batches (so the source is not what is measured, as on the
//! Spark side), and the search for the maximum sustained rate.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use dstream::prelude::*;
use dstream::{BatchInfo, Source, SourceContext, StreamingListener};

/// A fixed, well-mixed hash: the generator is a pure function of the record index.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Click line `i`: `"<userId> /p/<page>"`, users drifting through a window of 20,000 active
/// ones out of 100,000, pages uniform over 1,000.
pub fn click_line(i: u64) -> String {
    let h = mix(i);
    let user = (i / 1000 + h % 20_000) % 100_000;
    let page = (h >> 20) % 1000;
    format!("u{user} /p/{page}")
}

/// Number of distinct hashtags of the tweet lines.
pub const TAGS: usize = 1000;

/// The Zipf(s = 1) cumulative distribution over tag ranks `1..=TAGS`: entry `k - 1` is
/// `(1/1 + ... + 1/k) / (1/1 + ... + 1/TAGS)`, summed in that order in `f64` (the Scala port
/// does the same double arithmetic, so both sides pick the same rank for the same hash).
pub fn zipf_cdf() -> &'static [f64] {
    static CDF: OnceLock<Vec<f64>> = OnceLock::new();
    CDF.get_or_init(|| {
        let mut sum = 0.0;
        let mut c: Vec<f64> = (1..=TAGS)
            .map(|r| {
                sum += 1.0 / r as f64;
                sum
            })
            .collect();
        for x in &mut c {
            *x /= sum;
        }
        c
    })
}

/// The tag rank (1-based) for hash `h`: the smallest `k` with `u < cdf[k - 1]`, where `u` is
/// the top 53 bits of `h` as a fraction in `[0, 1)` (inverse-CDF sampling, binary search).
pub fn tag_rank(h: u64) -> usize {
    let u = (h >> 11) as f64 / (1u64 << 53) as f64;
    let cdf = zipf_cdf();
    let (mut lo, mut hi) = (0, cdf.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if cdf[mid] <= u {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo + 1
}

/// Tweet line `i`: 10 words joined by single spaces. Word `j` hashes `h = mix(i * 16 + j)`;
/// one word in ten (`h % 10 == 0`) is a hashtag `#t<rank>` with rank Zipf(1)-distributed over
/// 1,000 tags ([`tag_rank`]), the others are `w<(h >> 8) % 5000>`.
pub fn tweet_line(i: u64) -> String {
    let mut line = String::with_capacity(64);
    for j in 0..10 {
        let h = mix(i.wrapping_mul(16).wrapping_add(j));
        if j > 0 {
            line.push(' ');
        }
        if h.is_multiple_of(10) {
            let _ = write!(line, "#t{}", tag_rank(h));
        } else {
            let _ = write!(line, "w{}", (h >> 8) % 5000);
        }
    }
    line
}

/// `n` distinct click lines in one leaked buffer, as `&'static str` views (zero-copy records,
/// the way a consumer hands out views of a fetched buffer).
pub fn click_pool(n: usize) -> Vec<&'static str> {
    line_pool(n, click_line)
}

/// `n` distinct tweet lines ([`tweet_line`]), laid out as [`click_pool`]'s.
pub fn tweet_pool(n: usize) -> Vec<&'static str> {
    line_pool(n, tweet_line)
}

/// Lines `0..n` of `line` in one leaked buffer, as `&'static str` views.
pub fn line_pool(n: usize, line: impl Fn(u64) -> String) -> Vec<&'static str> {
    let mut text = String::with_capacity(n * 16);
    let mut ends = Vec::with_capacity(n);
    for i in 0..n as u64 {
        text.push_str(&line(i));
        ends.push(text.len());
    }
    let text: &'static str = Box::leak(text.into_boxed_str());
    let mut start = 0;
    ends.into_iter()
        .map(|e| {
            let s = &text[start..e];
            start = e;
            s
        })
        .collect()
}

/// Replays pre-built batches in turn, each for `run` consecutive batches (1: round robin).
pub struct Replay<T> {
    pub batches: Vec<Batch<T>>,
    pub next: usize,
    pub run: usize,
}

impl<T: dstream::Data> Source<T> for Replay<T> {
    fn name(&self) -> String {
        "replay".into()
    }

    fn capture(&mut self, _: Time, _: &SourceContext) -> Result<Option<Batch<T>>, Error> {
        let slot = self.next / self.run.max(1) % self.batches.len();
        let b = self.batches[slot].clone();
        self.next += 1;
        Ok(Some(b))
    }
}

/// The sessions input: click lines in `BANDS` bands of users, band `b` being click lines
/// `b * BAND_STRIDE + k` (users `20,000 b ..`), each band replayed for `BAND_SECS` seconds of
/// consecutive batches in turn, so that every band is idle for 32 s (its sessions end, 30 s)
/// between its runs, and about 100,000 users have state.
pub const BANDS: usize = 5;
/// See [`BANDS`].
pub const BAND_SECS: u64 = 8;
/// See [`BANDS`].
pub const BAND_STRIDE: u64 = 20_000_000;

/// The lines of every band, `lines` each (the most a search can ask for), leaked once.
pub fn band_pools(lines: usize) -> Vec<Vec<&'static str>> {
    (0..BANDS as u64)
        .map(|b| line_pool(lines, |k| click_line(b * BAND_STRIDE + k)))
        .collect()
}

/// The replay slots of the sessions job: band `b`'s first `records` lines, in `parts`
/// partitions.
pub fn band_batches(
    pools: &[Vec<&'static str>],
    records: usize,
    parts: usize,
) -> Vec<Batch<&'static str>> {
    pools
        .iter()
        .map(|pool| Batch::from_vec(pool[..records.min(pool.len())].to_vec(), parts))
        .collect()
}

/// Replay slot `b` starts at line `b * REPLAY_STRIDE` of the pool (wrapping).
const REPLAY_STRIDE: usize = 7919;

/// The lines of the pool that `replay_batches` reads for `count` batches of `records`: a pool of
/// this many lines gives the same batches as the whole [`POOL_LINES`]. A process that probes one
/// rate holds only these, as the Spark side holds only its cached batches (it computes each
/// line from its index, without a pool), so that peak RSS compares the jobs, not the pool.
pub fn replay_pool_len(records: usize, count: usize) -> usize {
    records
        .saturating_add(REPLAY_STRIDE * count.saturating_sub(1))
        .min(POOL_LINES)
}

/// Builds `count` batches of `records` records each from `pool`, in `parts` partitions.
pub fn replay_batches<T: dstream::Data>(
    pool: &[T],
    records: usize,
    parts: usize,
    count: usize,
) -> Vec<Batch<T>> {
    (0..count)
        .map(|b| {
            let offset = b * REPLAY_STRIDE % pool.len().max(1);
            let v: Vec<T> = (0..records)
                .map(|i| pool[(offset + i) % pool.len()].clone())
                .collect();
            Batch::from_vec(v, parts)
        })
        .collect()
}

/// Collects batch infos.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<BatchInfo>>);

impl StreamingListener for Recorder {
    fn on_batch_completed(&self, info: &BatchInfo) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(info.clone());
    }
}

/// How a probe is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Judge {
    /// Sustained when every measured batch's processing time is under the batch interval and
    /// the scheduling delay does not grow (the last is at most a tenth of an interval above
    /// the first): the throughput rule.
    Throughput,
    /// Sustained when the 99th percentile of the total delay (batch time to the end of its
    /// processing) is under two batch intervals: the latency rule of the 100 ms runs.
    Latency,
}

impl Judge {
    fn name(self) -> &'static str {
        match self {
            Judge::Throughput => "throughput",
            Judge::Latency => "latency",
        }
    }
}

/// The outcome of running a job at one rate.
#[derive(Debug, Clone)]
pub struct Probe {
    pub rate: u64,
    pub sustained: bool,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub first_delay_ms: i64,
    pub last_delay_ms: i64,
    /// 99th percentile of the total delay: scheduling delay plus processing time.
    pub p99_total_ms: f64,
    /// Peak RSS of the process during this probe (its input included), in MiB.
    pub rss_mib: f64,
}

/// The `p` quantile (0 to 1) of values sorted in ascending order; NaN for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn sorted_ms(durations: impl Iterator<Item = Duration>) -> Vec<f64> {
    let mut v: Vec<f64> = durations.map(|d| d.millis() as f64).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// Judges measured batches by `judge` (the Spark side, `BenchCommon.scala`, judges the same way
/// from its listener's `processingDelay`, `schedulingDelay` and `totalDelay`).
pub fn judge(rate: u64, infos: &[BatchInfo], batch: Duration, judge: Judge) -> Probe {
    let mut times: Vec<f64> = infos
        .iter()
        .filter_map(|i| i.processing_time)
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    times.sort_by(f64::total_cmp);
    let totals = sorted_ms(infos.iter().filter_map(|i| i.total_delay()));
    let delays: Vec<i64> = infos
        .iter()
        .filter_map(|i| i.scheduling_delay())
        .map(|d| d.millis())
        .collect();
    let first = delays.first().copied().unwrap_or(0);
    let last = delays.last().copied().unwrap_or(0);
    let max = times.last().copied().unwrap_or(f64::NAN);
    let p99_total = percentile(&totals, 0.99);
    let failed = infos.iter().any(|i| i.failure.is_some()) || times.len() < infos.len();
    let interval = batch.millis() as f64;
    let sustained = !failed
        && match judge {
            Judge::Throughput => max < interval && last <= first + batch.millis() / 10,
            Judge::Latency => p99_total < 2.0 * interval,
        };
    Probe {
        rate,
        sustained,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        max_ms: max,
        first_delay_ms: first,
        last_delay_ms: last,
        p99_total_ms: p99_total,
        rss_mib: peak_rss_mib(),
    }
}

/// Peak resident set size of this process, in MiB (VmHWM).
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Resets the peak RSS to the current RSS (Linux: `5` to `/proc/self/clear_refs`), so that each
/// probe reports its own peak. Where that is not possible the peak stays the process's.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Shared handle to a recorder.
pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder::default())
}

/// The pool both sides draw benchmark batches from (see `replay_batches`).
pub const POOL_LINES: usize = 4_000_000;

/// The one place the benchmarks make their context: `batch` intervals, `parallelism` threads,
/// state in RocksDB committed every batch (a fresh checkpoint per probe, removed after it).
pub fn context(batch: Duration, parallelism: usize) -> StreamingContext {
    StreamingContext::builder(batch)
        .parallelism(parallelism)
        .temporary_checkpoint()
        .build()
        .expect("a streaming context")
}

/// A throughput benchmark of dstream (bench/README.md; results in BENCHMARKS.md). The Spark
/// job of the same name (bench/spark/) takes the same flags.
#[derive(clap::Parser, Debug)]
struct Cli {
    /// One probe at this rate (records per second) instead of a search
    #[arg(long, value_name = "RECORDS_PER_SECOND", value_parser = clap::value_parser!(u64).range(1..))]
    rate: Option<u64>,
    /// Repetitions of the search (or of the probe)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    reps: u64,
    /// Measured batches per probe [default: 30, and at least 10 s of batches]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    batches: Option<u64>,
    /// Batches run before measuring [default: the job's warm-up time in batches]
    #[arg(long)]
    warmup: Option<u64>,
    /// The rate the search tries first
    #[arg(long, value_name = "RECORDS_PER_SECOND", value_parser = clap::value_parser!(u64).range(1..))]
    start: u64,
    /// The search never probes above this rate [default: no ceiling]
    #[arg(long, value_name = "RECORDS_PER_SECOND", value_parser = clap::value_parser!(u64).range(1..))]
    max: Option<u64>,
    /// Worker threads and partitions per batch
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    parallelism: u64,
    /// The batch interval in milliseconds; it must divide 1000
    #[arg(long = "batch-ms", value_name = "MS", default_value_t = 1000)]
    batch_ms: u64,
    /// How a probe is judged sustained
    #[arg(long, value_enum, default_value_t = Judge::Throughput)]
    judge: Judge,
    /// Instead of measuring, run this many batches at --rate and print the job's result
    #[arg(long, value_name = "BATCHES", requires = "rate", value_parser = clap::value_parser!(u64).range(1..))]
    check: Option<u64>,
    /// Print this many generated lines (and a few far ones) and exit
    #[arg(long = "print-lines", value_name = "LINES")]
    print_lines: Option<u64>,
    /// The job's variant (sessions: update or mapws)
    #[arg(long)]
    mode: Option<String>,
}

/// Options of the benchmarks (see `Cli` for the flags).
#[derive(Debug, Clone)]
pub struct Opts {
    /// One probe at this rate instead of a search.
    pub rate: Option<u64>,
    pub reps: usize,
    /// Measured batches per probe (default: 30, and at least 10 s of batches).
    pub batches: Option<usize>,
    /// Batches run before measuring (default: the job's warm-up time in batches).
    pub warmup: Option<usize>,
    /// The rate the search tries first.
    pub start: u64,
    /// The search never probes above this rate.
    pub max: u64,
    pub parallelism: usize,
    /// The batch interval in milliseconds.
    pub batch_ms: u64,
    pub judge: Judge,
    /// Instead of measuring, run this many batches at `--rate` and print the job's result.
    pub check: Option<usize>,
    /// Print this many generated lines (and a few far ones) and exit.
    pub print_lines: Option<u64>,
    /// A job variant (`sessions`: `update` or `mapws`).
    pub mode: String,
}

impl Opts {
    /// Defaults: one search of 3 repetitions from `start`, 1 s batches, parallelism 2.
    pub fn new(start: u64, mode: &str) -> Opts {
        Opts {
            rate: None,
            reps: 3,
            batches: None,
            warmup: None,
            start,
            max: u64::MAX,
            parallelism: 2,
            batch_ms: 1000,
            judge: Judge::Throughput,
            check: None,
            print_lines: None,
            mode: mode.into(),
        }
    }

    /// Parses the process arguments over `defaults` (their `start` and `mode` are the job's);
    /// `--help` lists every flag with its default, and a bad one exits with clap's message.
    pub fn parse(prog: &str, defaults: Opts) -> Opts {
        let matches = Opts::command(prog, &defaults).get_matches();
        Opts::from_matches(&matches, defaults).unwrap_or_else(|e| {
            eprintln!("{prog}: {e}");
            std::process::exit(2)
        })
    }

    /// Parses `args` (without the program name) over `defaults`.
    pub fn parse_from(args: &[String], defaults: Opts) -> Result<Opts, String> {
        let matches = Opts::command("bench", &defaults)
            .try_get_matches_from(std::iter::once("bench".to_string()).chain(args.iter().cloned()))
            .map_err(|e| e.to_string())?;
        Opts::from_matches(&matches, defaults)
    }

    /// The flags, with the job's defaults of `--start` and `--mode`.
    fn command(prog: &str, defaults: &Opts) -> clap::Command {
        use clap::CommandFactory;
        let start = defaults.start.to_string();
        let mode = defaults.mode.clone();
        let cmd = Cli::command()
            .name(prog.to_string())
            .mut_arg("start", |a| a.default_value(start).required(false));
        if mode.is_empty() {
            cmd.mut_arg("mode", |a| a.hide(true))
        } else {
            cmd.mut_arg("mode", |a| a.default_value(mode))
        }
    }

    fn from_matches(m: &clap::ArgMatches, defaults: Opts) -> Result<Opts, String> {
        use clap::FromArgMatches;
        let c = Cli::from_arg_matches(m).map_err(|e| e.to_string())?;
        if c.batch_ms == 0 || 1000 % c.batch_ms != 0 {
            return Err("--batch-ms must divide 1000 (e.g. 1000, 500, 100)".into());
        }
        Ok(Opts {
            rate: c.rate,
            reps: c.reps as usize,
            batches: c.batches.map(|b| b as usize),
            warmup: c.warmup.map(|w| w as usize),
            start: c.start,
            max: c.max.unwrap_or(u64::MAX),
            parallelism: c.parallelism as usize,
            batch_ms: c.batch_ms,
            judge: c.judge,
            check: c.check.map(|n| n as usize),
            print_lines: c.print_lines,
            mode: c.mode.unwrap_or(defaults.mode),
        })
    }

    /// The batch interval.
    pub fn batch(&self) -> Duration {
        Milliseconds(self.batch_ms as i64)
    }

    /// `secs` seconds in batches.
    pub fn batches_in(&self, secs: u64) -> usize {
        (secs * 1000 / self.batch_ms) as usize
    }

    /// Records per batch at `rate` records per second.
    pub fn per_batch(&self, rate: u64) -> usize {
        // Saturating: a search without `--max` has the ceiling `u64::MAX`.
        (rate.saturating_mul(self.batch_ms) / 1000).min(usize::MAX as u64) as usize
    }

    /// Warm-up batches: `--warmup`, or `secs` seconds of batches.
    pub fn warmup_or(&self, secs: u64) -> usize {
        self.warmup.unwrap_or_else(|| self.batches_in(secs))
    }

    /// Measured batches: `--batches`, or 30 and at least 10 s of batches.
    pub fn measured(&self) -> usize {
        self.batches.unwrap_or_else(|| self.batches_in(10).max(30))
    }

    /// The highest rate a search may probe.
    pub fn ceiling(&self) -> u64 {
        self.rate.unwrap_or(self.max)
    }
}

/// Runs a job over replayed `batches` (each for `run` consecutive batches) on the real clock for
/// `warmup + measured` batches of `o.batch()` and judges the measured ones by `o.judge`. `job`
/// builds the job on the input stream and registers its output.
pub fn run_probe<T: dstream::Data>(
    batches: Vec<Batch<T>>,
    run: usize,
    rate: u64,
    (warmup, measured): (usize, usize),
    o: &Opts,
    job: impl FnOnce(&DStream<T>) -> Result<(), Error>,
) -> Probe {
    let ssc = context(o.batch(), o.parallelism);
    let rec = recorder();
    ssc.add_streaming_listener(rec.clone());
    let lines = ssc.input_stream(Replay {
        batches,
        next: 0,
        run,
    });
    job(&lines).expect("the job's graph");
    ssc.start().expect("the context starts");
    let total = warmup + measured;
    while ssc.completed_batches() < total as u64 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    ssc.stop();
    let infos = rec.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if std::env::var_os("DSTREAM_BENCH_TRACE").is_some() {
        trace(&infos, warmup);
    }
    let p = judge(rate, &infos[warmup..total], o.batch(), o.judge);
    p.log();
    p
}

/// Prints each batch's time, scheduling delay and processing time (with `DSTREAM_BENCH_TRACE`
/// set), to see which batches make a probe's tail.
fn trace(infos: &[BatchInfo], warmup: usize) {
    for (i, b) in infos.iter().enumerate() {
        let ms = |d: Option<Duration>| d.map_or(-1, |d| d.millis());
        eprintln!(
            "    batch {:>3}{} at {} ms: delay {} ms, processing {} ms, {} records",
            i + 1,
            if i < warmup { " (warm-up)" } else { "" },
            b.batch_time.millis(),
            ms(b.scheduling_delay()),
            b.processing_time.map_or(-1, |d| d.as_millis() as i64),
            b.num_records
        );
    }
}

/// The factor by which a search steps up (or down) from its start until a probe falls behind
/// (or is sustained); it then bisects the last step.
pub const SEARCH_STEP: f64 = 1.1;

/// Search for the highest sustained rate to within 5%: from `start`, step up by
/// [`SEARCH_STEP`] while sustained (never above `max`) or down while not, then bisect.
pub fn max_sustained(start: u64, max: u64, mut probe: impl FnMut(u64) -> Probe) -> Probe {
    let step = |r: u64, up: bool| {
        let next = if up {
            (r as f64 * SEARCH_STEP) as u64
        } else {
            (r as f64 / SEARCH_STEP) as u64
        };
        next.clamp(1, max)
    };
    let first = probe(start.min(max));
    let (mut lo, mut hi, mut best) = if first.sustained {
        // Up while sustained.
        let (mut lo, mut best) = (first.rate, first);
        loop {
            let next = step(lo, true);
            if next <= lo {
                break (lo, lo, best);
            }
            let p = probe(next);
            if !p.sustained {
                break (lo, next, best);
            }
            (lo, best) = (next, p);
        }
    } else {
        // Down until sustained.
        let (mut hi, mut last) = (first.rate, first);
        loop {
            if hi <= 1000 {
                return last;
            }
            let next = step(hi, false);
            let p = probe(next);
            if p.sustained {
                break (next, hi, p);
            }
            (hi, last) = (next, p);
        }
    };
    while (hi - lo) as f64 > lo as f64 * 0.05 {
        let mid = lo + (hi - lo) / 2;
        let p = probe(mid);
        if p.sustained {
            lo = mid;
            best = p;
        } else {
            hi = mid;
        }
    }
    best
}

/// The searches (or the one `--rate` probe) a job's `main` asks for. Before them, one probe of
/// 10 batches at half the starting rate, not judged, warms the process up (the Spark side does
/// the same for its JVM); later repetitions start from the previous one's result.
pub fn searches(
    o: &Opts,
    warmup_secs: u64,
    mut job_probe: impl FnMut(u64, (usize, usize)) -> Probe,
) -> Vec<Probe> {
    let (warmup, measured) = (o.warmup_or(warmup_secs), o.measured());
    let mut probe = |rate, batches| {
        reset_peak_rss();
        job_probe(rate, batches)
    };
    if let Some(r) = o.rate {
        return vec![probe(r, (warmup, measured))];
    }
    eprintln!("warm-up probe (not judged)");
    probe((o.start / 2).clamp(1, o.max.max(1)), (0, 10));
    let mut start = o.start;
    (0..o.reps)
        .map(|i| {
            eprintln!("repetition {}/{}", i + 1, o.reps);
            let p = max_sustained(start, o.max, |r| probe(r, (warmup, measured)));
            if p.sustained {
                start = p.rate;
            }
            p
        })
        .collect()
}

/// Prints the result of the searches: per-repetition rates, the median and the batch times and
/// peak RSS at it, and one `RESULT` line for `compare.sh`.
pub fn report(job: &str, description: &str, unit: &str, results: &[Probe], o: &Opts) {
    let mut rates: Vec<u64> = results
        .iter()
        .map(|p| if p.sustained { p.rate } else { 0 })
        .collect();
    rates.sort();
    let median = rates[rates.len() / 2];
    let at = results
        .iter()
        .find(|p| p.rate == median || median == 0)
        .expect("a median");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "job: {job} ({description}), {} ms batches, parallelism {}, {} rule, {} measured batches",
        o.batch_ms,
        o.parallelism,
        o.judge.name(),
        o.measured()
    );
    println!("max sustained rate per repetition: {rates:?}");
    if o.rate.is_none() && results.iter().any(|p| p.rate as f64 >= o.max as f64 * 0.97) {
        println!(
            "warning: a search ended at its ceiling {}: raise --max",
            o.max
        );
    }
    println!(
        "median max sustained rate: {:.2}M {unit}/s ({:.2}M {unit}/s per core, {cores} cores)",
        median as f64 / 1e6,
        median as f64 / 1e6 / cores as f64,
    );
    println!(
        "at that rate: batch processing time p50 {:.0} ms, p99 {:.0} ms; total delay p99 {:.0} ms; peak RSS {:.0} MiB",
        at.p50_ms, at.p99_ms, at.p99_total_ms, at.rss_mib
    );
    println!(
        "RESULT side=dstream job={job} batch_ms={} rate={median} p50_ms={:.0} p99_ms={:.0} p99_total_ms={:.0} rss_mib={:.0}",
        o.batch_ms, at.p50_ms, at.p99_ms, at.p99_total_ms, at.rss_mib
    );
}

impl Probe {
    /// The probe's line of a search log (the same on every job).
    pub fn log(&self) {
        eprintln!(
            "  rate {:>11}/s: {} (p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, delay {} -> {} ms, total p99 {:.0} ms, RSS {:.0} MiB)",
            self.rate,
            if self.sustained {
                "sustained"
            } else {
                "falls behind"
            },
            self.p50_ms,
            self.p99_ms,
            self.max_ms,
            self.first_delay_ms,
            self.last_delay_ms,
            self.p99_total_ms,
            self.rss_mib
        );
    }
}

/// Writes lines `line(i)` for `i` in `range` to `topic`, record `i` to partition `i % partitions`
/// (round robin); returns lines per second. Panics if the brokers do not take them (a benchmark
/// cannot go on without its input).
pub fn produce_round_robin(
    brokers: &str,
    topic: &str,
    partitions: i32,
    range: std::ops::Range<u64>,
    line: impl Fn(u64) -> String,
) -> f64 {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::time::{Duration as StdDuration, Instant};
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .expect("producer");
    let started = Instant::now();
    let n = range.end.saturating_sub(range.start);
    for i in range {
        let text = line(i);
        let mut r = BaseRecord::<(), str>::to(topic)
            .partition((i % partitions as u64) as i32)
            .payload(text.as_str());
        loop {
            match p.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    p.poll(StdDuration::from_millis(5));
                    r = back;
                }
            }
        }
    }
    p.flush(StdDuration::from_secs(300)).expect("flush");
    n as f64 / started.elapsed().as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool cut to `replay_pool_len` replays the very batches of the whole pool.
    #[test]
    fn a_pool_cut_to_what_is_replayed_gives_the_same_batches() {
        let whole: Vec<u32> = (0..POOL_LINES as u32).collect();
        for records in [
            0,
            1,
            1_000,
            160_000,
            POOL_LINES - REPLAY_STRIDE,
            POOL_LINES,
            5_000_000,
        ] {
            let n = replay_pool_len(records, 2);
            let cut = replay_batches(&whole[..n], records, 2, 2);
            let full = replay_batches(&whole, records, 2, 2);
            let same = cut
                .iter()
                .zip(&full)
                .all(|(a, b)| a.collect() == b.collect());
            assert!(
                same,
                "{records} records: a pool of {n} lines replays other batches"
            );
        }
        assert_eq!(replay_pool_len(160_000, 2), 167_919);
        assert_eq!(replay_pool_len(5_000_000, 2), POOL_LINES);
    }

    #[test]
    fn zipf_table_is_a_cdf() {
        let c = zipf_cdf();
        assert_eq!(c.len(), TAGS);
        assert_eq!(c[TAGS - 1], 1.0);
        assert!(c.windows(2).all(|w| w[0] < w[1]));
        // Rank 1 takes 1 / H(1000) of the mass.
        assert!((c[0] - 1.0 / 7.485_470_860_550_345).abs() < 1e-12);
        assert_eq!(tag_rank(0), 1);
        assert_eq!(tag_rank(u64::MAX), TAGS);
    }

    /// Pinned lines: the Scala port (`bench/spark/BenchCommon.scala`, `--print-lines`) must
    /// print the same ones.
    #[test]
    fn tweet_lines_are_pinned() {
        let pinned = [
            (
                0,
                "w2685 w3212 #t47 w3511 w4546 w2963 w432 w837 w4678 w1688",
            ),
            (
                20,
                "w4856 #t516 w1043 w3084 #t680 w2864 w3301 w2573 w3119 w3058",
            ),
            (
                23,
                "#t1 w2253 w3091 w1994 #t26 w2857 #t135 #t628 w4964 w2992",
            ),
            (
                37,
                "#t131 #t802 w2703 w2359 w9 w530 w3651 w1864 w1367 w3320",
            ),
            (
                3_999_999,
                "w4877 w3831 w576 w1593 w4109 w316 w1169 w3309 w4138 w4956",
            ),
            (
                123_456_789_012,
                "w3622 w973 w20 w2241 w1082 w1018 w2303 w4304 w257 w1218",
            ),
        ];
        for (i, line) in pinned {
            assert_eq!(tweet_line(i), line, "line {i}");
        }
    }

    #[test]
    fn tag_share_is_about_one_in_ten_and_skewed() {
        let (mut words, mut tags, mut top) = (0, 0, 0);
        for i in 0..20_000 {
            for w in tweet_line(i).split(' ') {
                words += 1;
                if w.starts_with('#') {
                    tags += 1;
                    top += usize::from(w == "#t1");
                }
            }
        }
        assert_eq!(words, 200_000);
        assert!((19_000..21_000).contains(&tags), "{tags}");
        // #t1 has 1 / H(1000) = 13.4% of the tags.
        let share = top as f64 / tags as f64;
        assert!((0.12..0.15).contains(&share), "{share}");
    }

    #[test]
    fn flags_parse_over_the_job_s_defaults_and_bad_ones_name_the_flag() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let o = Opts::parse_from(&args(&[]), Opts::new(7_000_000, "update")).unwrap();
        assert_eq!(
            (o.start, o.mode.as_str(), o.reps, o.batch_ms),
            (7_000_000, "update", 3, 1000)
        );
        assert_eq!((o.max, o.judge), (u64::MAX, Judge::Throughput));
        let o = Opts::parse_from(
            &args(&[
                "--rate",
                "5000",
                "--check",
                "3",
                "--judge",
                "latency",
                "--batch-ms",
                "100",
                "--mode",
                "mapws",
            ]),
            Opts::new(1, "update"),
        )
        .unwrap();
        assert_eq!(
            (o.rate, o.check, o.judge, o.batch_ms),
            (Some(5000), Some(3), Judge::Latency, 100)
        );
        assert_eq!(o.mode, "mapws");
        let e = Opts::parse_from(&args(&["--reps", "x"]), Opts::new(1, "")).unwrap_err();
        assert!(e.contains("invalid value 'x' for '--reps <REPS>'"), "{e}");
        let e = Opts::parse_from(&args(&["--check", "3"]), Opts::new(1, "")).unwrap_err();
        assert!(e.contains("--rate"), "{e}");
        let e = Opts::parse_from(&args(&["--batch-ms", "300"]), Opts::new(1, "")).unwrap_err();
        assert!(e.contains("must divide 1000"), "{e}");
    }
}
