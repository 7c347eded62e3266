//! `String` lines against `Text` lines on a user's path (issue 21, point 1): the file source
//! (`text_files_of`) over tweet files written beforehand, split into words with
//! `text::split`, hashtags counted with `reduce_by_key`, as a batch job (`run_to_completion`).
//! Both record types give the same counts (checked); the figure is lines a second of the whole
//! job, reading the files included, median of `--runs`.
//!
//! ```sh
//! cargo build --release -p dstream-bench --bin text_records                       # glibc malloc
//! target/release/text_records --lines 4000000 --runs 5
//! cargo build --release -p dstream-bench --bin text_records --features mimalloc  # mimalloc
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dstream::prelude::*;
use dstream::text::{self, Text};

/// String lines against Text lines through the file source and a hashtag count.
#[derive(clap::Parser, Debug)]
#[command(name = "text_records")]
struct Args {
    /// Tweet lines in all (written once, in 8 files)
    #[arg(long, default_value_t = 4_000_000)]
    lines: u64,
    /// Runs of each record type (the median is reported)
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The context's parallelism
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Run only this record type (`String` or `Text`), as for a profile
    #[arg(long)]
    only: Option<String>,
}

type Counts = BTreeMap<String, i64>;

/// Writes the tweet lines into 8 files of `dir`.
fn write_input(dir: &Path, lines: u64) {
    std::fs::create_dir_all(dir).expect("input directory");
    let per_file = lines.div_ceil(8);
    for f in 0..8 {
        let mut text = String::new();
        for i in f * per_file..((f + 1) * per_file).min(lines) {
            text.push_str(&dstream_bench::tweet_line(i));
            text.push('\n');
        }
        std::fs::write(dir.join(format!("tweets-{f}.txt")), text).expect("input file");
    }
}

/// The hashtag count over the files as lines of `L`: the counts and the seconds it took.
fn run<L>(dir: &Path, parallelism: usize) -> (Counts, f64)
where
    L: dstream::TextRecord + for<'a> text::Splittable<'a>,
    for<'a> <L as text::Splittable<'a>>::Pieces: Iterator<Item = L>,
    L: std::ops::Deref<Target = str> + dstream::StateKey,
{
    let ssc = StreamingContext::builder(Seconds(1))
        .parallelism(parallelism)
        .stop_gracefully_on_signal(false)
        .build()
        .expect("a context");
    let counts = ssc
        .text_files_of::<L>(dir)
        .flat_map(|line: L| text::split(line, ' '))
        .filter(|w: &L| w.starts_with('#'))
        .map(|w| (w, 1i64))
        .reduce_by_key(|a, b| a + b);
    let seen = Arc::new(Mutex::new(Counts::new()));
    let sink = seen.clone();
    counts
        .foreach_batch(move |b, _| {
            let mut s = sink.lock().expect("counts");
            for (k, n) in b.collect() {
                *s.entry(k.to_string()).or_default() += n;
            }
        })
        .expect("an output");
    let started = Instant::now();
    ssc.run_to_completion().expect("the job");
    let secs = started.elapsed().as_secs_f64();
    let counts = std::mem::take(&mut *seen.lock().expect("counts"));
    (counts, secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let a = <Args as clap::Parser>::parse();
    let dir: PathBuf =
        std::env::temp_dir().join(format!("dstream-text-records-{}", std::process::id()));
    write_input(&dir, a.lines);
    let allocator = if cfg!(feature = "mimalloc") {
        "mimalloc"
    } else {
        "the system allocator"
    };
    let mut times: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut reference: Option<Counts> = None;
    for r in 0..a.runs {
        let wanted = |name: &str| a.only.as_deref().is_none_or(|o| o == name);
        let mut results = Vec::new();
        if wanted("String") {
            results.push(("String", run::<String>(&dir, a.parallelism)));
        }
        if wanted("Text") {
            results.push(("Text", run::<Text>(&dir, a.parallelism)));
        }
        for (name, (counts, secs)) in results {
            match &reference {
                None => reference = Some(counts),
                Some(want) => assert_eq!(&counts, want, "{name} counted other hashtags"),
            }
            println!(
                "run {}: {name}: {} lines in {secs:.3} s, {:.0} lines/s",
                r + 1,
                a.lines,
                a.lines as f64 / secs
            );
            times.entry(name).or_default().push(secs);
        }
    }
    let tags: i64 = reference.as_ref().map_or(0, |c| c.values().sum());
    if times.len() < 2 {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let s = median(times["String"].clone());
    let t = median(times["Text"].clone());
    println!(
        "{} lines ({tags} hashtags, the same counts both ways), parallelism {}, {allocator}, median of {}: String {:.0} lines/s, Text {:.0} lines/s ({:.2}x)",
        a.lines,
        a.parallelism,
        a.runs,
        a.lines as f64 / s,
        a.lines as f64 / t,
        s / t
    );
    let _ = std::fs::remove_dir_all(&dir);
}
