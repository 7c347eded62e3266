//! Popular hashtags, as in Spark Streaming's `TwitterPopularTags` example and the talks: tweets
//! -> hashtags -> counts over the last 60 s, updated every 5 s with the "smart" window reduce (the
//! previous window's counts, minus the batches that left, plus those that came in) -> the top 10.
//!
//! Runs on an embedded generator of realistic tweets (about ten words each, a tenth of them
//! hashtags drawn from 1,000 tags with a Zipf skew, and a new trending tag every 20 seconds), so
//! no Twitter or Kafka is needed:
//!
//! ```text
//! cargo run --release --example hashtags                 # until Ctrl-C (graceful stop)
//! cargo run --release --example hashtags -- --seconds 10 --rate 50000 --window 20 --slide 2
//! ```
//!
//! With `--kafka BROKERS --topic T` the tweets are read from a Kafka topic instead (one tweet's
//! text per record), with the window's state, and the topic's offsets, checkpointed in
//! `--checkpoint DIR` when given (a restart then resumes where it stopped). `--feed` also writes
//! the generator's tweets into the topic, at `--rate`, to try it on an empty topic:
//!
//! ```text
//! scripts/kafka-broker.sh start && eval "$(scripts/kafka-broker.sh env)"
//! cargo run --release --example hashtags -- --kafka $KAFKA_BROKERS --topic tweets --feed
//! ```

mod common;

use common::{mix, zipf_cdf, zipf_pick};
use dstream::kafka::{KafkaSource, KafkaStreams};
use dstream::prelude::*;
use dstream::text;

/// The talks' top hashtags over a sliding window, from generated tweets or a Kafka topic.
#[derive(clap::Parser, Debug, Default)]
#[command(name = "hashtags")]
struct Args {
    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long)]
    seconds: Option<u64>,
    /// Generated tweets a second
    #[arg(long, default_value_t = 2_000, value_name = "TWEETS_PER_SECOND")]
    rate: u64,
    /// The batch interval, in milliseconds
    #[arg(long = "batch-ms", default_value_t = 1_000, value_name = "MS", value_parser = clap::value_parser!(i64).range(1..))]
    batch_ms: i64,
    /// The window, in seconds
    #[arg(long = "window", default_value_t = 60, value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    window_s: i64,
    /// The window's slide, in seconds
    #[arg(long = "slide", default_value_t = 5, value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    slide_s: i64,
    /// Kafka brokers to read tweets from (with --topic)
    #[arg(long, value_name = "BROKERS", requires = "topic")]
    kafka: Option<String>,
    /// The topic of tweets (with --kafka)
    #[arg(long, requires = "kafka")]
    topic: Option<String>,
    /// Checkpoint directory: a restart resumes from its offsets and state
    #[arg(long, value_name = "DIR", requires = "kafka")]
    checkpoint: Option<String>,
    /// Also write generated tweets to the topic (6 partitions if it is new)
    #[arg(long, requires = "kafka")]
    feed: bool,
    /// Only write them (a feeder for instances started with --app)
    #[arg(long = "feed-only", requires = "kafka")]
    feed_only: bool,
    /// Scale out: run this several times with the same NAME; the topic's partitions are spread
    /// over the instances (state in DIR/<task>, default target/hashtags-NAME)
    #[arg(long, value_name = "NAME", requires = "kafka")]
    app: Option<String>,
    /// The live dashboard on ADDR (e.g. 127.0.0.1:4040; port 0 picks a free one); with --app,
    /// the instance's: its tasks and their roles, the group's members
    #[arg(long, value_name = "ADDR")]
    serve: Option<String>,
}

const WORDS: &[&str] = &[
    "the", "a", "is", "just", "new", "love", "today", "what", "this", "best", "time", "people",
    "got", "going", "never", "game", "night", "day", "world", "music", "know", "life", "think",
    "watch", "really", "great", "stream", "data", "live", "now", "tonight", "happy", "again",
    "finally",
];
const TOPICS: &[&str] = &[
    "rust",
    "spark",
    "kafka",
    "music",
    "nba",
    "worldcup",
    "ai",
    "election",
    "tbt",
    "photography",
    "travel",
    "food",
    "coffee",
    "gaming",
    "crypto",
    "fitness",
    "movies",
    "news",
    "weather",
    "art",
    "linux",
    "opensource",
    "startup",
    "science",
    "space",
    "books",
    "fashion",
    "nature",
    "dogs",
    "cats",
    "mondaymotivation",
    "fridayfeeling",
    "streaming",
    "bigdata",
    "cloud",
    "devops",
    "jazz",
    "football",
    "tennis",
    "f1",
];
const NUM_TAGS: usize = 1000;
const TRENDING_PERIOD_TWEETS: u64 = 20; // times the rate: a new trending tag every 20 s

fn tag_name(k: usize) -> String {
    let base = TOPICS[k % TOPICS.len()];
    match k / TOPICS.len() {
        0 => format!("#{base}"),
        n => format!("#{base}{n}"),
    }
}

/// Tweet number `i` of a stream of `rate` tweets per second.
fn tweet(i: u64, rate: u64, cdf: &[f64], tags: &[String]) -> String {
    let words = 6 + (mix(i) % 9) as usize;
    let trending =
        tags[(mix(i / (rate * TRENDING_PERIOD_TWEETS).max(1) + 7) % 200 + 50) as usize].as_str();
    let mut text = String::with_capacity(words * 8);
    for w in 0..words {
        let h = mix(i.wrapping_mul(31).wrapping_add(w as u64));
        if w > 0 {
            text.push(' ');
        }
        if h.is_multiple_of(10) {
            // A burst: a fifth of the tags in this period are the trending one.
            if (h >> 8).is_multiple_of(5) {
                text.push_str(trending);
            } else {
                text.push_str(&tags[zipf_pick(cdf, h)]);
            }
        } else {
            text.push_str(WORDS[(h >> 16) as usize % WORDS.len()]);
        }
    }
    text
}

/// The hashtags of a tweet (`dstream::text::split` gives what `str::split(' ')` gives, faster).
fn get_tags(status: &str) -> Vec<String> {
    text::split(status, ' ')
        .filter(|w| w.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn main() {
    common::init_logging();
    let mut args = <Args as clap::Parser>::parse();
    // `--feed-only` feeds.
    args.feed |= args.feed_only;
    if let Err(e) = run(&args) {
        eprintln!("hashtags: {e}");
        std::process::exit(1);
    }
}

/// Writes the generator's tweets into the topic at `rate` per second, from a thread.
fn feed(brokers: String, topic: String, rate: u64) {
    std::thread::spawn(move || {
        let (cdf, tags) = (
            zipf_cdf(NUM_TAGS, 1.1),
            (0..NUM_TAGS).map(tag_name).collect::<Vec<_>>(),
        );
        if let Err(e) = common::feed("hashtags", &brokers, &topic, rate, None, |j| {
            tweet(j, rate, &cdf, &tags)
        }) {
            eprintln!("hashtags: {e}");
        }
    });
}

fn run(args: &Args) -> Result<(), Error> {
    if let (Some(brokers), Some(topic)) = (&args.kafka, &args.topic)
        && args.feed
    {
        // The topic may be new: create it (6 partitions) unless it exists.
        common::create_topic("hashtags", brokers, topic);
        feed(brokers.clone(), topic.clone(), args.rate);
        if args.feed_only {
            match args.seconds {
                Some(s) => std::thread::sleep(std::time::Duration::from_secs(s)),
                None => loop {
                    std::thread::park();
                },
            }
            return Ok(());
        }
    }
    if let (Some(app), Some(brokers), Some(topic)) = (&args.app, &args.kafka, &args.topic) {
        return scale_out(args, app, brokers, topic);
    }
    let batch = Milliseconds(args.batch_ms);
    // A status line on stderr (batch time, records, rate, delays), at most once a second.
    let mut builder = StreamingContext::builder(batch).status_line(true);
    // The window's state lives in RocksDB. Generated tweets cannot be replayed, so there is
    // nothing to recover and a temporary checkpoint (removed at exit) is enough; a Kafka topic
    // can be, so with --checkpoint a restart resumes from the checkpointed offsets and state.
    builder = match &args.checkpoint {
        Some(dir) => builder.checkpoint(dir),
        None => builder.temporary_checkpoint(),
    };
    let ssc = builder.build()?;

    let tweets = match (&args.kafka, &args.topic) {
        (Some(brokers), Some(topic)) => {
            let source = KafkaSource::strings(brokers)
                .topics([topic.as_str()])
                .group_id("dstream-hashtags")
                .build()?;
            ssc.kafka_stream(source)
        }
        _ => {
            let (cdf, tags) = (
                zipf_cdf(NUM_TAGS, 1.1),
                (0..NUM_TAGS).map(tag_name).collect::<Vec<_>>(),
            );
            let rate = args.rate;
            ssc.rate_stream(rate)
                .map(move |i| tweet(i, rate, &cdf, &tags))
        }
    };
    top_hashtags(&ssc, tweets, args)?;
    let _dashboard = dashboard(args, |addr| ssc.serve_dashboard(addr))?;
    common::run(&ssc, args.seconds)
}

/// With `--serve ADDR`, the dashboard that `serve` starts on ADDR.
fn dashboard(
    args: &Args,
    serve: impl FnOnce(&str) -> Result<dstream::Dashboard, Error>,
) -> Result<Option<dstream::Dashboard>, Error> {
    let Some(addr) = &args.serve else {
        return Ok(None);
    };
    let d = serve(addr)?;
    println!("Dashboard: {}", d.url());
    Ok(Some(d))
}

/// Scale-out: this process is one instance of application `app`; each partition of `topic` is
/// a task, run as a context of its own by whichever instance the group gives it to.
fn scale_out(args: &Args, app: &str, brokers: &str, topic: &str) -> Result<(), Error> {
    let root = args
        .checkpoint
        .clone()
        .unwrap_or_else(|| format!("target/hashtags-{app}"));
    let (b, t, batch_ms) = (brokers.to_string(), topic.to_string(), args.batch_ms);
    let (window_s, slide_s) = (args.window_s, args.slide_s);
    let instance = dstream::kafka::ScaleOut::new(app, brokers)
        .topics([topic])
        .checkpoint(&root)
        .run(move |_task| {
            let ssc = StreamingContext::builder(Milliseconds(batch_ms)).build()?;
            let source = KafkaSource::strings(&b).topics([t.as_str()]).build()?;
            let tweets = ssc.kafka_stream(source);
            top_hashtags(
                &ssc,
                tweets,
                &Args {
                    window_s,
                    slide_s,
                    ..Args::default()
                },
            )?;
            Ok(ssc)
        })?;
    eprintln!("hashtags: instance of {app} started (state in {root}/<task>)");
    let _dashboard = dashboard(args, |addr| instance.serve_dashboard(addr))?;
    common::run_instance("hashtags", instance, args.seconds)
}

/// The pipeline, as the Spark Streaming talks write it in Scala. In one process the exchanges
/// change nothing; in a scaled-out application `repartitionByKey` brings each tag's counts to
/// the task of the tag, and `global` brings the window's counts of every task to one task for
/// the top 10.
fn top_hashtags(ssc: &StreamingContext, tweets: DStream<String>, args: &Args) -> Result<(), Error> {
    let (window_s, slide_s, parallelism) = (args.window_s, args.slide_s, ssc.parallelism());
    stream! {
        using tweets
        val hashTags = tweets.flatMap(status => get_tags(&status))
        // Counts over the window, kept up to date incrementally ("smart" window reduce: the
        // previous counts, minus the batches that left, plus those that came in); tags whose
        // count fell to 0 are dropped.
        val counts = hashTags.map(tag => (tag, 1i64))
            .repartitionByKey()
            .reduceByKeyAndWindow(_ + _, _ - _, Seconds(window_s), Seconds(slide_s), parallelism, _._2 > 0)
        val topCounts = counts.map { case (tag, n) => (n, tag) }
            .global()
            .transform(rdd => rdd.sort_by_key(false, 1))
        topCounts.foreachRDD { rdd =>
            let top_list = rdd.take(10);
            println!("\nPopular topics in last {window_s} seconds ({} total):", rdd.count());
            for (count, tag) in top_list {
                println!("{tag} ({count} tweets)");
            }
        }
    }
}
