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
/// `b * BAND_STRIDE + k` (users `20,000 b ..`), each band replayed for `BAND_BATCHES`
/// consecutive batches in turn, so that every band is idle for 32 s (its sessions end, 30 s)
/// between its runs, and about 100,000 users have state.
pub const BANDS: usize = 5;
/// See [`BANDS`].
pub const BAND_BATCHES: usize = 8;
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

/// Builds `count` batches of `records` records each from `pool`, in `parts` partitions.
pub fn replay_batches<T: dstream::Data>(
    pool: &[T],
    records: usize,
    parts: usize,
    count: usize,
) -> Vec<Batch<T>> {
    (0..count)
        .map(|b| {
            let offset = b * 7919 % pool.len().max(1);
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
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Judges measured batches as Spark's figures were judged: every processing time under the
/// batch interval and the scheduling delay not growing.
pub fn judge(rate: u64, infos: &[BatchInfo], batch: Duration) -> Probe {
    let mut times: Vec<f64> = infos
        .iter()
        .filter_map(|i| i.processing_time)
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    times.sort_by(f64::total_cmp);
    let delays: Vec<i64> = infos
        .iter()
        .filter_map(|i| i.scheduling_delay())
        .map(|d| d.millis())
        .collect();
    let first = delays.first().copied().unwrap_or(0);
    let last = delays.last().copied().unwrap_or(0);
    let max = times.last().copied().unwrap_or(f64::NAN);
    let failed = infos.iter().any(|i| i.failure.is_some());
    Probe {
        rate,
        sustained: !failed && max < batch.millis() as f64 && last <= first + batch.millis() / 10,
        p50_ms: percentile(&times, 0.5),
        p99_ms: percentile(&times, 0.99),
        max_ms: max,
        first_delay_ms: first,
        last_delay_ms: last,
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

/// Shared handle to a recorder.
pub fn recorder() -> Arc<Recorder> {
    Arc::new(Recorder::default())
}

/// The pool both sides draw benchmark batches from (see `replay_batches`).
pub const POOL_LINES: usize = 4_000_000;

/// The one place the stateful benchmarks make their context: 1 s batches, `parallelism`
/// threads. (When the state operators need a checkpoint directory, it goes here.)
pub fn context(parallelism: usize) -> StreamingContext {
    // State in RocksDB, committed every batch (a fresh checkpoint per probe, removed after it).
    StreamingContext::builder(Seconds(1))
        .parallelism(parallelism)
        .temporary_checkpoint()
        .build()
        .expect("a streaming context")
}

/// Options of the stateful benchmarks, as `--name value` pairs.
#[derive(Debug, Clone)]
pub struct Opts {
    /// One probe at this rate instead of a search.
    pub rate: Option<u64>,
    pub reps: usize,
    /// Measured batches per probe.
    pub batches: usize,
    /// Batches run before measuring (windows and state must fill first).
    pub warmup: usize,
    /// The search's starting bounds: `lo` is tried first (halved while it falls behind), then
    /// the search bisects `lo..hi` to 3%; it never goes above `hi`.
    pub lo: u64,
    pub hi: u64,
    pub parallelism: usize,
    /// Instead of measuring, run this many batches at `--rate` and print the job's result.
    pub check: Option<usize>,
    /// Print this many generated lines (and a few far ones) and exit.
    pub print_lines: Option<u64>,
    /// A job variant (`sessions`: `update` or `mapws`).
    pub mode: String,
}

impl Opts {
    /// Parses the process arguments over `defaults`; exits with a message on a bad one.
    pub fn parse(prog: &str, defaults: Opts) -> Opts {
        let mut o = defaults;
        let args: Vec<String> = std::env::args().skip(1).collect();
        let bad = |msg: String| -> ! {
            eprintln!("{prog}: {msg}");
            std::process::exit(2)
        };
        let mut i = 0;
        while i < args.len() {
            let name = args[i].as_str();
            let Some(value) = args.get(i + 1) else {
                bad(format!("{name} needs a value"))
            };
            if name == "--mode" {
                o.mode = value.clone();
                i += 2;
                continue;
            }
            let Ok(v) = value.parse::<u64>() else {
                bad(format!("{name} needs a whole number"))
            };
            match name {
                "--rate" => o.rate = Some(v),
                "--reps" => o.reps = v as usize,
                "--batches" => o.batches = v as usize,
                "--warmup" => o.warmup = v as usize,
                "--lo" => o.lo = v,
                "--hi" => o.hi = v,
                "--parallelism" => o.parallelism = v as usize,
                "--check" => o.check = Some(v as usize),
                "--print-lines" => o.print_lines = Some(v),
                other => bad(format!("unknown argument {other}")),
            }
            i += 2;
        }
        if o.check.is_some() && o.rate.is_none() {
            bad("--check needs --rate".into());
        }
        o
    }
}

/// Runs a job over replayed `batches` (each for `run` consecutive batches) on the real clock for `warmup + measured` batches and
/// judges the measured ones. `job` builds the job on the input stream and registers its output.
pub fn run_probe<T: dstream::Data>(
    batches: Vec<Batch<T>>,
    run: usize,
    rate: u64,
    warmup: usize,
    measured: usize,
    parallelism: usize,
    job: impl FnOnce(&DStream<T>) -> Result<(), Error>,
) -> Probe {
    let batch = Seconds(1);
    let ssc = context(parallelism);
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
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ssc.stop();
    let infos = rec.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let p = judge(rate, &infos[warmup..total], batch);
    p.log();
    p
}

/// Binary search for the highest sustained rate to within 3%, from `lo` (halved while it falls
/// behind) up to at most `hi`.
pub fn max_sustained(lo: u64, hi: u64, mut probe: impl FnMut(u64) -> Probe) -> Probe {
    let (mut lo, mut hi) = (lo, hi.max(lo));
    let mut best = probe(lo);
    while !best.sustained && lo > 1000 {
        hi = lo;
        lo /= 2;
        best = probe(lo);
    }
    while (hi - lo) as f64 > lo as f64 * 0.03 {
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

/// Prints the result of a search: per-repetition rates, the median and the batch times at it,
/// peak RSS, and one `RESULT` line for `compare-stateful.sh`.
pub fn report(job: &str, description: &str, unit: &str, results: &[Probe], o: &Opts) {
    let mut rates: Vec<u64> = results.iter().map(|p| p.rate).collect();
    rates.sort();
    let median = rates[rates.len() / 2];
    let at = results.iter().find(|p| p.rate == median).expect("a median");
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rss = peak_rss_mib();
    println!(
        "job: {job} ({description}), 1 s batches, parallelism {}, warm-up {} + {} measured batches",
        o.parallelism, o.warmup, o.batches
    );
    println!("max sustained rate per repetition: {rates:?}");
    if o.rate.is_none() && results.iter().any(|p| p.rate as f64 >= o.hi as f64 * 0.97) {
        println!(
            "warning: a search ended at its upper bound {}: raise --hi",
            o.hi
        );
    }
    println!(
        "median max sustained rate: {:.2}M {unit}/s ({:.2}M {unit}/s per core, {cores} cores)",
        median as f64 / 1e6,
        median as f64 / 1e6 / cores as f64,
    );
    println!(
        "batch processing time at that rate: p50 {:.0} ms, p99 {:.0} ms",
        at.p50_ms, at.p99_ms
    );
    println!("peak RSS: {rss:.0} MiB");
    println!(
        "RESULT side=dstream job={job} rate={median} p50_ms={:.0} p99_ms={:.0} rss_mib={rss:.0}",
        at.p50_ms, at.p99_ms
    );
}

impl Probe {
    /// The probe's line of a search log (the same on every job).
    pub fn log(&self) {
        eprintln!(
            "  rate {:>11}/s: {} (p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms, delay {} -> {} ms)",
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
            self.last_delay_ms
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
