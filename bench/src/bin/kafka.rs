//! End to end through Kafka: tweet lines in a topic -> the Kafka direct source -> hashtags ->
//! `reduce_by_key_and_window` (+, -, 30 s, 1 s, zeros dropped) -> the Kafka sink (one record per
//! tag and batch) -> an output topic; 1 s batches, the broker on this machine.
//!
//! The input topic is filled first (`--lines`, default 4M, over `--partitions` partitions); the
//! pipeline then starts at the earliest offsets with no rate limit, and the figure is the input
//! lines over the time from the start until the batch holding the last line has completed (its
//! output delivered, and committed with the exactly-once sink). Per-batch processing times are
//! printed too, and first the rate at which a bare librdkafka consumer reads the same topic (what
//! the broker can deliver). Both delivery modes run, alternately, `--reps` times each.
//!
//! ```text
//! scripts/kafka-broker.sh start && eval "$(scripts/kafka-broker.sh env)"
//! cargo run --release -p dstream-bench --bin kafka -- [--lines 4000000] [--partitions 2] [--reps 3]
//!     [--records string text]   # `String` lines, `Text` lines, or both (alternately)
//! ```

use std::time::{Duration as StdDuration, Instant};

use dstream::kafka::{Delivery, KafkaSink, KafkaSource, KafkaStreams, OutRecord};
use dstream::prelude::*;
use dstream::text::{self, Text};
use dstream_bench::{peak_rss_mib, tweet_line};
use rdkafka::config::ClientConfig;

fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    if let Err(e) = dstream::kafka::admin::create_topic(brokers, topic, partitions) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}

/// Fills `topic` with tweet lines `0..n`, round robin over the partitions; returns lines/s.
fn fill(brokers: &str, topic: &str, partitions: i32, n: u64) -> f64 {
    dstream_bench::produce_round_robin(brokers, topic, partitions, 0..n, tweet_line)
}

/// A bare librdkafka consumer reading the whole input topic: what the broker can deliver, the
/// ceiling of any pipeline on it.
fn raw_consume(brokers: &str, topic: &str, partitions: i32, n: u64) -> f64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-raw"))
        .set("enable.auto.commit", "false")
        // As the source's consumer: fetch again as soon as the queue is read (librdkafka's
        // default waits a second once 100,000 records are queued).
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    drop(tpl);
    let started = Instant::now();
    let mut got = 0;
    while got < n && started.elapsed() < StdDuration::from_secs(600) {
        if let Some(Ok(_)) = c.poll(StdDuration::from_millis(100)) {
            got += 1;
        }
    }
    got as f64 / started.elapsed().as_secs_f64()
}

struct Run {
    rate: f64,
    batches: Vec<f64>,
    rss: f64,
}

/// The records the source gives: a `String` per line (`KafkaSource::strings`), or `Text`s that
/// share a batch's buffers (`KafkaSource::text`); both split by `text::split`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Records {
    String,
    Text,
}

/// Hashtags -> counts over a 30 s window sliding every second -> the Kafka sink.
fn count_tags<K>(tags: DStream<K>, brokers: &str, output: &str, delivery: Delivery)
where
    K: dstream::StateKey + AsRef<str>,
{
    let counts = tags
        .map(|tag| (tag, 1i64))
        .reduce_by_key_and_window_inv_filtered(
            |a, b| a + b,
            |a, b| a - b,
            Seconds(30),
            Seconds(1),
            HashPartitioner::new(2).expect("partitions"),
            |kv| kv.1 > 0,
        );
    counts
        .save_to(
            KafkaSink::with_encoder(brokers, output, |(tag, n): &(K, i64)| {
                Ok(OutRecord::new(n.to_string()).key(tag.as_ref().as_bytes()))
            })
            .delivery(delivery)
            .build(),
        )
        .expect("sink");
}

fn run(
    brokers: &str,
    input: &str,
    output: &str,
    n: u64,
    (delivery, records): (Delivery, Records),
    properties: &[(String, String)],
) -> Run {
    let dir = std::env::temp_dir().join(format!("dstream-bench-kafka-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ssc = StreamingContext::builder(Seconds(1))
        .parallelism(2)
        .stop_gracefully_on_signal(false)
        .checkpoint(&dir)
        .build()
        .expect("context");
    let group = format!("bench-{output}");
    let handle = match records {
        Records::String => {
            let source = properties
                .iter()
                .fold(KafkaSource::strings(brokers), |s, (k, v)| s.set(k, v))
                .topics([input])
                .group_id(group)
                .build()
                .expect("source");
            let handle = source.handle();
            let tags = ssc.kafka_stream(source).flat_map(|line: String| {
                text::split(line, ' ')
                    .filter(|w| w.starts_with('#'))
                    .collect::<Vec<_>>()
            });
            count_tags(tags, brokers, output, delivery);
            handle
        }
        Records::Text => {
            let source = properties
                .iter()
                .fold(KafkaSource::text(brokers), |s, (k, v)| s.set(k, v))
                .topics([input])
                .group_id(group)
                .build()
                .expect("source");
            let handle = source.handle();
            let tags = ssc.kafka_stream(source).flat_map(|line: Text| {
                text::split(line, ' ')
                    .filter(|w| w.starts_with('#'))
                    .collect::<Vec<_>>()
            });
            count_tags(tags, brokers, output, delivery);
            handle
        }
    };
    let started = Instant::now();
    ssc.start().expect("start");
    let total = n as i64;
    let mut last_batch = None;
    loop {
        std::thread::sleep(StdDuration::from_millis(5));
        if let Some((_, e)) = ssc.failures().first() {
            panic!("the pipeline failed: {e}");
        }
        let read: i64 = handle
            .status()
            .partitions
            .iter()
            .map(|p| p.next_offset)
            .sum();
        let completed = ssc.completed_batches();
        match last_batch {
            None if read == total => last_batch = Some(completed + 1),
            Some(b) if completed >= b => break,
            _ => {}
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let batches: Vec<f64> = ssc
        .recent_batches()
        .iter()
        .filter(|b| b.num_records > 0)
        .filter_map(|b| b.processing_time.map(|d| d.as_secs_f64() * 1000.0))
        .collect();
    ssc.stop();
    drop(ssc);
    let _ = std::fs::remove_dir_all(&dir);
    Run {
        rate: n as f64 / elapsed,
        batches,
        rss: peak_rss_mib(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The Kafka pipeline's throughput, at-least-once against exactly-once (results in
/// BENCHMARKS.md); the broker from `KAFKA_BROKERS`.
#[derive(clap::Parser, Debug)]
#[command(name = "kafka")]
struct Args {
    /// Tweet lines produced to the input topic
    #[arg(long, default_value_t = 4_000_000)]
    lines: u64,
    /// Partitions of the input topic
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,
    /// Repetitions of each delivery mode
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    reps: u64,
    /// The source's records (each run with each delivery mode, alternately)
    #[arg(long, value_enum, num_args = 1.., default_values_t = [Records::String])]
    records: Vec<Records>,
    /// A librdkafka property of the source's consumer, `name=value` (repeatable)
    #[arg(long = "consumer-property", value_parser = property)]
    properties: Vec<(String, String)>,
}

fn property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s}: expected name=value"))
}

fn main() {
    let Args {
        lines,
        partitions,
        reps,
        records,
        properties,
    } = <Args as clap::Parser>::parse();
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| {
        eprintln!("set KAFKA_BROKERS (scripts/kafka-broker.sh start; eval \"$(scripts/kafka-broker.sh env)\")");
        std::process::exit(2)
    });
    let tag = std::process::id();
    let input = format!("bench-tweets-{tag}");
    create_topic(&brokers, &input, partitions);
    let produced = fill(&brokers, &input, partitions, lines);
    println!(
        "input: {lines} tweet lines in {partitions} partitions, produced at {:.2}M lines/s",
        produced / 1e6
    );
    let raw = raw_consume(&brokers, &input, partitions, lines);
    println!(
        "a bare librdkafka consumer reads it at {:.2}M lines/s (the broker's ceiling for any pipeline)",
        raw / 1e6
    );
    let mut results: Vec<(Delivery, Records, Vec<f64>, Vec<f64>)> = records
        .iter()
        .flat_map(|r| {
            [
                (Delivery::AtLeastOnce, *r, Vec::new(), Vec::new()),
                (Delivery::ExactlyOnce, *r, Vec::new(), Vec::new()),
            ]
        })
        .collect();
    for rep in 0..reps {
        for (i, (delivery, records, rates, times)) in results.iter_mut().enumerate() {
            let output = format!("bench-counts-{tag}-{rep}-{i}");
            create_topic(&brokers, &output, 2);
            let r = run(
                &brokers,
                &input,
                &output,
                lines,
                (*delivery, *records),
                &properties,
            );
            let p50 = median(r.batches.clone());
            let max = r.batches.iter().copied().fold(0.0, f64::max);
            println!(
                "{delivery:?} {records:?} rep {rep}: {:.2}M lines/s end to end; batch processing p50 {p50:.0} ms, max {max:.0} ms over {} batches; peak RSS so far {:.0} MiB",
                r.rate / 1e6,
                r.batches.len(),
                r.rss
            );
            rates.push(r.rate);
            times.extend(r.batches);
        }
    }
    for (delivery, records, rates, times) in results {
        println!(
            "{delivery:?} {records:?}: median {:.2}M lines/s end to end ({} reps: {}); batch p50 {:.0} ms",
            median(rates.clone()) / 1e6,
            rates.len(),
            rates
                .iter()
                .map(|r| format!("{:.2}M", r / 1e6))
                .collect::<Vec<_>>()
                .join(", "),
            median(times)
        );
    }
}
