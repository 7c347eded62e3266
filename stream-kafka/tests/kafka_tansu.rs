//! The Kafka source and sink against a real Kafka-protocol broker (tansu; see tests/common).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use common::*;
use stream_core::Data;
use stream_core::prelude::*;
use stream_kafka::{Delivery, KafkaSink, KafkaSource, KafkaStreams, OutRecord};

fn context(batch_ms: i64, checkpoint: Option<&std::path::Path>) -> StreamingContext {
    let mut b = StreamingContext::builder(Milliseconds(batch_ms))
        .parallelism(2)
        .stop_gracefully_on_signal(false);
    if let Some(dir) = checkpoint {
        b = b.checkpoint(dir);
    }
    b.build().unwrap()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(unique(name));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn tags(line: &str) -> Vec<String> {
    line.split(' ')
        .filter(|w| w.starts_with('#') && w.len() > 1)
        .map(str::to_string)
        .collect()
}

#[test]
fn windowed_hashtag_count_from_topic_to_topic() {
    let b = brokers();
    let (input, output) = (unique("tweets"), unique("tag-counts"));
    create_topic(&b, &input, 3);
    create_topic(&b, &output, 2);
    let words = ["#rust", "#spark", "#kafka", "hello", "world"];
    let lines: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "{} {} {}",
                words[i % 5],
                words[(i / 5) % 5],
                words[(i / 25) % 5]
            )
        })
        .collect();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for l in &lines {
        for t in tags(l) {
            *expected.entry(t).or_default() += 1;
        }
    }
    produce_lines(&b, &input, 3, &lines);

    let dir = temp_dir("hashtag-ckpt");
    let ssc = context(200, Some(&dir));
    let source = KafkaSource::strings(&b)
        .topics([input.as_str()])
        .build()
        .unwrap();
    let handle = source.handle();
    let counts = ssc
        .kafka_stream(source)
        .flat_map(|l| tags(&l))
        .map(|t| (t, 1i64))
        .reduce_by_key_and_window_inv_filtered(
            |a, b| a + b,
            |a, b| a - b,
            Seconds(2),
            Milliseconds(200),
            HashPartitioner::new(2).unwrap(),
            |kv| kv.1 > 0,
        );
    counts
        .save_to(
            KafkaSink::with_encoder(&b, &output, |(tag, n): &(String, i64)| {
                Ok(OutRecord::new(n.to_string()).key(tag.as_bytes()))
            })
            .delivery(Delivery::ExactlyOnce)
            .build(),
        )
        .unwrap();
    ssc.start().unwrap();
    wait_for(30, "the source to read every line", || {
        handle.status().records == 300
    });
    // Two more seconds: the window slides past every record.
    std::thread::sleep(StdDuration::from_millis(2600));
    ssc.stop_gracefully();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());

    let out = read_all(&b, &output);
    let mut by_batch: BTreeMap<i64, BTreeMap<String, i64>> = BTreeMap::new();
    for r in &out {
        let batch: i64 = r.headers["dstream.batch"].parse().unwrap();
        let tag = String::from_utf8(r.key.clone().unwrap()).unwrap();
        by_batch
            .entry(batch)
            .or_default()
            .insert(tag, r.text().parse().unwrap());
    }
    eprintln!(
        "{} output batches; window totals {:?}",
        by_batch.len(),
        by_batch.values().next()
    );
    assert!(
        by_batch.values().any(|counts| *counts == expected),
        "no window held exactly the counts {expected:?}: {by_batch:?}"
    );
    let status = handle.status();
    assert_eq!(status.records, 300);
    assert_eq!(status.decode_failures, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A pipeline writing each input line to the output topic; returns the context and the handle.
fn copy_pipeline(
    b: &str,
    input: &str,
    output: &str,
    group: &str,
    dir: &std::path::Path,
) -> (StreamingContext, stream_kafka::KafkaSourceHandle) {
    let ssc = context(100, Some(dir));
    let source = KafkaSource::strings(b)
        .topics([input])
        .group_id(group)
        .build()
        .unwrap();
    let handle = source.handle();
    ssc.kafka_stream(source)
        .save_to(
            KafkaSink::with_encoder(b, output, |l: &String| Ok(OutRecord::new(l.as_bytes())))
                .delivery(Delivery::ExactlyOnce)
                .commit_offsets_of(&handle)
                .build(),
        )
        .unwrap();
    (ssc, handle)
}

#[test]
fn restart_resumes_from_the_checkpoint_not_from_group_offsets() {
    let b = brokers();
    let (input, output, group) = (unique("events"), unique("copy"), unique("group"));
    create_topic(&b, &input, 2);
    create_topic(&b, &output, 1);
    let first: Vec<String> = (0..100).map(|i| format!("e{i}")).collect();
    produce_lines(&b, &input, 2, &first);
    let dir = temp_dir("resume-ckpt");

    // A run from the checkpoint until it has read 100 records; the checkpoint's database is
    // released when it returns.
    let run = || {
        let (ssc, handle) = copy_pipeline(&b, &input, &output, &group, &dir);
        ssc.start().unwrap();
        wait_for(30, "100 records", || handle.status().records == 100);
        // One more batch so that the last records' batch is committed.
        std::thread::sleep(StdDuration::from_millis(300));
        ssc.stop_gracefully();
        assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    };
    run();
    wait_for(10, "group offsets after the batches", || {
        group_offsets(&b, &group, &input, 2) == vec![50, 50]
    });

    // The group's offsets say "start over"; the checkpoint says where the pipeline was.
    set_group_offsets(&b, &group, &input, &[0, 0]);
    let second: Vec<String> = (100..200).map(|i| format!("e{i}")).collect();
    produce_lines(&b, &input, 2, &second);
    run();

    let mut seen: Vec<String> = read_all(&b, &output).iter().map(|r| r.text()).collect();
    seen.sort();
    let mut all: Vec<String> = first.iter().chain(&second).cloned().collect();
    all.sort();
    assert_eq!(seen, all, "each record exactly once across the restart");
    assert_eq!(group_offsets(&b, &group, &input, 2), vec![100, 100]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `source` through `pipeline` on `ssc` until the source has read `records` records (or
/// failed to decode them), stops gracefully, and returns every output record in order.
fn read_through<T: Data, U: Data>(
    ssc: &StreamingContext,
    source: KafkaSource<T>,
    records: u64,
    pipeline: impl FnOnce(DStream<T>) -> DStream<U>,
) -> Vec<U> {
    let handle = source.handle();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    pipeline(ssc.kafka_stream(source))
        .foreach_batch(move |batch, _| g.lock().unwrap().extend(batch.collect()))
        .unwrap();
    ssc.start().unwrap();
    wait_for(30, "every record", || {
        let s = handle.status();
        s.records + s.decode_failures == records
    });
    ssc.stop_gracefully();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    got.lock().unwrap().clone()
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
struct Click {
    user: String,
    page: u32,
}

#[test]
fn decode_failures_go_to_the_dead_letter_topic_with_their_origin() {
    let b = brokers();
    let (input, dlq) = (unique("clicks"), unique("dead"));
    create_topic(&b, &input, 1);
    create_topic(&b, &dlq, 1);
    let mut records: Vec<In<'_>> = Vec::new();
    let good: Vec<String> = (0..10)
        .map(|i| format!(r#"{{"user":"u{i}","page":{i}}}"#))
        .collect();
    for (i, g) in good.iter().enumerate() {
        records.push((0, None, Some(g.as_bytes())));
        if i == 3 {
            records.push((0, Some("k1"), Some(b"not json")));
        }
        if i == 6 {
            records.push((0, Some("k2"), Some(br#"{"user":"x"}"#)));
        }
    }
    produce(&b, &input, &records);

    let ssc = context(100, None);
    let source = KafkaSource::<Click>::json(&b)
        .topics([input.as_str()])
        .dead_letter_topic(&dlq)
        .build()
        .unwrap();
    let handle = source.handle();
    let got = read_through(&ssc, source, 12, |s| s);
    assert_eq!(got.len(), 10);
    assert_eq!(
        got[9],
        Click {
            user: "u9".into(),
            page: 9
        }
    );
    let status = handle.status();
    assert_eq!((status.decode_failures, status.dead_lettered), (2, 2));

    let dead = read_all(&b, &dlq);
    assert_dead_letters(&dead, &[("4", "expected"), ("8", "page")]);
    assert_eq!(dead[0].value, b"not json");
    assert_eq!(dead[0].key.as_deref(), Some(&b"k1"[..]));
    assert_eq!(dead[0].headers["dstream.source.topic"], input);
    assert_eq!(dead[0].headers["dstream.source.partition"], "0");
}

/// The dead letters are those of these source offsets, in order, each with an error that says
/// what is given.
fn assert_dead_letters(dead: &[Read], want: &[(&str, &str)]) {
    assert_eq!(dead.len(), want.len(), "{dead:?}");
    for (d, (offset, says)) in dead.iter().zip(want) {
        assert_eq!(
            d.headers["dstream.source.offset"], *offset,
            "{:?}",
            d.headers
        );
        assert!(d.headers["dstream.error"].contains(says), "{:?}", d.headers);
    }
}

/// `KafkaSource::text`: values as `Text`s that share buffers (a batch's records of a
/// partition, about 64 KiB each), words split from them copying nothing; a value that is not
/// UTF-8 and a tombstone are decode failures that go to the dead-letter topic, and the records
/// with metadata keep their own offsets around them.
#[test]
fn text_values_share_buffers_and_bad_ones_are_dead_lettered() {
    use stream_core::text::{self, Text};
    let b = brokers();
    let (input, dlq) = (unique("texts"), unique("texts-dead"));
    create_topic(&b, &input, 2);
    create_topic(&b, &dlq, 1);
    // Partition 0: a few lines around an invalid value and a tombstone. Partition 1: 2,000
    // lines of about 100 bytes (three buffers or more), each saying its offset.
    let padding = "x".repeat(90);
    let long: Vec<String> = (0..2000)
        .map(|i| format!("line {i} #p1 {padding}"))
        .collect();
    let accents = "\u{e9}t\u{e9} #\u{e9}t\u{e9}";
    let mut records: Vec<In<'_>> = vec![
        (0, None, Some(&b"rust #dstream is #fast"[..])),
        (0, Some("bad"), Some(&b"caf\xc3 au lait"[..])),
        (0, None, Some(&b"#fast"[..])),
        (0, Some("gone"), None),
        (0, None, Some(accents.as_bytes())),
    ];
    records.extend(long.iter().map(|l| (1, None, Some(l.as_bytes()))));
    produce(&b, &input, &records);

    let ssc = context(200, None);
    let source = KafkaSource::text(&b)
        .topics([input.as_str()])
        .dead_letter_topic(&dlq)
        .build()
        .unwrap();
    let handle = source.handle();
    let got: Vec<(Text, Vec<Text>)> = read_through(&ssc, source, 2005, |lines| {
        lines.map(|l: Text| {
            let tags = text::split(l.clone(), ' ')
                .filter(|w| w.starts_with('#'))
                .collect();
            (l, tags)
        })
    });
    let mut lines: Vec<&str> = got.iter().map(|(l, _)| l.as_str()).collect();
    lines.sort_unstable();
    let mut want: Vec<&str> = long.iter().map(String::as_str).collect();
    want.extend(["rust #dstream is #fast", "#fast", accents]);
    want.sort_unstable();
    assert_eq!(lines, want);
    for (l, tags) in &got {
        assert!(
            tags.iter().all(|t| t.shares_buffer_with(l)),
            "{l:?}: {tags:?}"
        );
    }
    let first = got
        .iter()
        .find(|(l, _)| l.as_str() == "rust #dstream is #fast")
        .unwrap();
    assert_eq!(first.1, ["#dstream", "#fast"]);
    // Buffers: a handful for 2,003 values, never one per value.
    let mut buffers: Vec<&Text> = Vec::new();
    for (l, _) in &got {
        if !buffers.iter().any(|b| b.shares_buffer_with(l)) {
            buffers.push(l);
        }
    }
    assert!(
        (4..=40).contains(&buffers.len()),
        "{} buffers for {} values",
        buffers.len(),
        got.len()
    );
    let status = handle.status();
    assert_eq!((status.decode_failures, status.dead_lettered), (2, 2));
    let dead = read_all(&b, &dlq);
    assert_dead_letters(&dead, &[("1", "not UTF-8"), ("3", "tombstone")]);

    // With metadata: each value beside its own offset, the failures between them skipped.
    let ssc = context(200, None);
    let source = KafkaSource::text(&b)
        .topics([input.as_str()])
        .group_id(unique("texts-meta"))
        .dead_letter_topic(&dlq)
        .with_metadata()
        .build()
        .unwrap();
    let got = read_through(&ssc, source, 2005, |s| s);
    assert_eq!(got.len(), 2003);
    for r in &got {
        let want = match (r.partition, r.offset) {
            (0, 0) => "rust #dstream is #fast",
            (0, 2) => "#fast",
            (0, 4) => accents,
            (1, i) => long[i as usize].as_str(),
            other => panic!("a record at {other:?}"),
        };
        assert_eq!(r.value.as_str(), want);
    }
}

/// While processing is behind and the generator waits (`max_queued_batches`), the source stops
/// fetching: once no batch has taken records for two intervals, a partition holding 200,000
/// records not yet in a batch is paused, so a backlog does not fill memory at the broker's
/// speed (the batches cut after the wait hold at most that plus what came in those two
/// intervals), and nothing is lost. Before, librdkafka's fetch back-off (about 0.1M records a
/// second per partition) was the only bound; with it gone, a batch after the wait held about
/// everything.
#[test]
fn a_source_fetches_no_further_than_its_bound_while_processing_is_behind() {
    let b = brokers();
    let input = unique("behind");
    create_topic(&b, &input, 1);
    let n = 1_500_000usize;
    let values: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
    let records: Vec<In<'_>> = values
        .iter()
        .map(|v| (0, None, Some(v.as_bytes())))
        .collect();
    produce(&b, &input, &records);

    let ssc = StreamingContext::builder(Milliseconds(200))
        .parallelism(2)
        .max_queued_batches(1)
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    let source = KafkaSource::strings(&b)
        .topics([input.as_str()])
        .build()
        .unwrap();
    let handle = source.handle();
    let sizes = Arc::new(Mutex::new(Vec::<usize>::new()));
    let s = sizes.clone();
    ssc.kafka_stream(source)
        .foreach_batch(move |batch, _| {
            let len = batch.count();
            let mut sizes = s.lock().unwrap();
            // The first batch with records takes 4 s: the generator waits behind it.
            if len > 0 && sizes.iter().all(|n| *n == 0) {
                std::thread::sleep(StdDuration::from_secs(4));
            }
            sizes.push(len);
        })
        .unwrap();
    ssc.start().unwrap();
    wait_for(120, "every record", || handle.status().records == n as u64);
    ssc.stop_gracefully();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let sizes = sizes.lock().unwrap().clone();
    let with_records: Vec<usize> = sizes.into_iter().filter(|n| *n > 0).collect();
    eprintln!("batches of {with_records:?} records");
    assert_eq!(with_records.iter().sum::<usize>(), n, "{with_records:?}");
    // The bound, plus what the fetcher reads in two intervals before it sees the batches
    // waiting (tansu delivers about 1M records a second here).
    assert!(
        with_records.iter().all(|n| *n <= 600_000),
        "batches of {with_records:?} records"
    );
    assert!(with_records.len() >= 4, "{with_records:?}");
}

/// A decoder that panics on one record (Kafka Streams' poison pill) loses neither that record
/// (it goes to the dead-letter topic) nor the good records fetched with it.
#[test]
fn a_decoder_that_panics_dead_letters_its_record_and_keeps_the_rest() {
    let b = brokers();
    let (input, dlq) = (unique("pills"), unique("pills-dead"));
    create_topic(&b, &input, 1);
    create_topic(&b, &dlq, 1);
    let lines: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    let mut records: Vec<In<'_>> = lines
        .iter()
        .map(|l| (0, None, Some(l.as_bytes())))
        .collect();
    records.insert(7, (0, Some("pill"), Some(b"poison")));
    produce(&b, &input, &records);

    let ssc = context(100, None);
    let source = KafkaSource::with_decoder(&b, |r| {
        let v = std::str::from_utf8(r.value.unwrap_or_default()).map_err(|e| e.to_string())?;
        assert!(v != "poison", "cannot decode {v}");
        Ok(v.to_string())
    })
    .topics([input.as_str()])
    .dead_letter_topic(&dlq)
    .build()
    .unwrap();
    let handle = source.handle();
    assert_eq!(read_through(&ssc, source, 21, |s| s), lines);
    let status = handle.status();
    assert_eq!((status.decode_failures, status.dead_lettered), (1, 1));
    // The same counts on the dashboard and /metrics, beside the operators'.
    let reported = ssc.record_errors();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert!(
        reported[0].operator.starts_with("kafka decoder (group "),
        "{reported:?}"
    );
    assert_eq!((reported[0].skipped, reported[0].dead_lettered), (1, 1));
    let dead = read_all(&b, &dlq);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value, b"poison");
    assert_eq!(dead[0].headers["dstream.source.offset"], "7");
    assert_eq!(
        dead[0].headers["dstream.error"],
        "the decoder panicked: cannot decode poison"
    );
}

/// A record on which the pipeline's own function panics goes to a Kafka dead-letter topic
/// under `RecordErrors` (`dead_letter_topic`); the batch and the other records go on.
#[test]
fn a_poison_record_of_a_user_function_goes_to_the_dead_letter_topic() {
    let b = brokers();
    let (input, dlq) = (unique("numbers"), unique("numbers-dead"));
    create_topic(&b, &input, 1);
    create_topic(&b, &dlq, 1);
    let lines = ["1", "2", "three", "4"];
    let records: Vec<In<'_>> = lines
        .iter()
        .map(|l| (0, None, Some(l.as_bytes())))
        .collect();
    produce(&b, &input, &records);

    let ssc = StreamingContext::builder(Milliseconds(100))
        .on_record_error(stream_kafka::dead_letter_topic(&b, &dlq).unwrap())
        .build()
        .unwrap();
    let source = KafkaSource::strings(&b)
        .topics([input.as_str()])
        .build()
        .unwrap();
    let got = read_through(&ssc, source, 4, |s| {
        s.map(|s| s.parse::<i64>().expect("a number"))
    });
    assert_eq!(got, vec![1, 2, 4]);
    let dead = read_all(&b, &dlq);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value, b"three");
    let h = &dead[0].headers;
    assert!(h["dstream.error"].contains("a number"), "{h:?}");
    assert!(h["dstream.operator"].starts_with("map#"), "{h:?}");
    assert_eq!(h["dstream.record.type"], "alloc::string::String");
    assert!(h["dstream.batch.time"].parse::<i64>().is_ok(), "{h:?}");
    let counts = ssc.record_errors();
    let map = counts
        .iter()
        .find(|c| c.operator.starts_with("map#"))
        .unwrap();
    assert_eq!((map.skipped, map.dead_lettered), (1, 1));
}

#[test]
fn the_rate_limit_holds_per_partition_and_batch() {
    let b = brokers();
    let (input, _) = topic_with_lines(&b, "rated", 2, 400);

    let ssc = context(200, None);
    // 100 records/s per partition, 200 ms batches: at most 20 per partition per batch.
    let source = KafkaSource::strings(&b)
        .topics([input.as_str()])
        .max_rate_per_partition(100.0)
        .build()
        .unwrap();
    let handle = source.handle();
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let (s, h) = (sizes.clone(), handle.clone());
    ssc.kafka_stream(source)
        .foreach_batch(move |batch, t| {
            let ranges = h.offset_ranges(t).expect("offset ranges of the batch");
            let per_partition: Vec<i64> = ranges.iter().map(|r| r.count()).collect();
            assert_eq!(per_partition.iter().sum::<i64>(), batch.count() as i64);
            s.lock().unwrap().push(per_partition);
        })
        .unwrap();
    ssc.start().unwrap();
    wait_for(60, "every record", || handle.status().records == 400);
    ssc.stop_gracefully();
    assert!(ssc.failures().is_empty(), "{:?}", ssc.failures());
    let sizes = sizes.lock().unwrap().clone();
    let max = sizes.iter().flatten().max().copied().unwrap();
    let full = sizes.iter().flatten().filter(|n| **n == 20).count();
    eprintln!(
        "{} batches, largest partition share {max}, {full} at the limit",
        sizes.len()
    );
    assert!(
        max <= 20,
        "a partition gave {max} records to one batch: {sizes:?}"
    );
    assert!(full >= 15, "the limit was rarely reached: {sizes:?}");
    assert_eq!(handle.status().rate_limit, Some(200.0));
}

#[test]
fn backpressure_sets_and_adapts_the_rate_limit() {
    let b = brokers();
    let (input, _) = topic_with_lines(&b, "pressure", 2, 3000);
    let ssc = context(100, None);
    let source = KafkaSource::strings(&b)
        .topics([input.as_str()])
        .backpressure(Some(1000.0))
        .build()
        .unwrap();
    let handle = source.handle();
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let s = sizes.clone();
    ssc.kafka_stream(source)
        .foreach_batch(move |batch, _| {
            // A slow job: 20 ms per batch plus 0.1 ms per record.
            std::thread::sleep(StdDuration::from_micros(
                20_000 + 100 * batch.count() as u64,
            ));
            s.lock().unwrap().push(batch.count());
        })
        .unwrap();
    ssc.start().unwrap();
    wait_for(10, "the first batches", || sizes.lock().unwrap().len() >= 3);
    let first = handle.status().rate_limit;
    wait_for(60, "every record", || handle.status().records == 3000);
    ssc.stop_gracefully();
    let sizes = sizes.lock().unwrap().clone();
    eprintln!("initial limit {first:?}, batch sizes {sizes:?}");
    // The initial rate: 1000 records/s, 100 per 100 ms batch.
    assert!(sizes.iter().take(2).all(|n| *n <= 100), "{sizes:?}");
    // The estimator then moved the limit (the job takes ~0.1 ms per record: ~ 8,000/s).
    assert!(
        sizes.iter().any(|n| *n > 100),
        "the rate never grew: {sizes:?}"
    );
}

#[test]
fn topics_created_later_that_match_the_pattern_are_read() {
    let b = brokers();
    let prefix = unique("pat");
    let (a, later) = (format!("{prefix}-a"), format!("{prefix}-b"));
    create_topic(&b, &a, 1);
    produce_lines(&b, &a, 1, &["a1".to_string(), "a2".to_string()]);
    let ssc = context(100, None);
    let source = KafkaSource::strings(&b)
        .pattern(format!("{prefix}-.*"))
        .metadata_refresh(StdDuration::from_millis(200))
        .build()
        .unwrap();
    let handle = source.handle();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    ssc.kafka_stream(source)
        .foreach_batch(move |batch, _| g.lock().unwrap().extend(batch.collect()))
        .unwrap();
    ssc.start().unwrap();
    wait_for(30, "the first topic", || handle.status().records == 2);
    create_topic(&b, &later, 2);
    produce_lines(
        &b,
        &later,
        2,
        &["b1".to_string(), "b2".to_string(), "b3".to_string()],
    );
    wait_for(30, "the topic created later", || {
        handle.status().records == 5
    });
    // A partition added to a topic is read too (when the broker can add partitions).
    match stream_kafka::admin::add_partitions(&b, &a, 2) {
        Ok(()) => {
            produce(&b, &a, &[(1, None, Some(&b"a3"[..]))]);
            wait_for(30, "the added partition", || handle.status().records == 6);
        }
        Err(e) => {
            eprintln!("the broker cannot add partitions ({e}); that part is not checked here")
        }
    }
    ssc.stop_gracefully();
    let mut got = got.lock().unwrap().clone();
    got.sort();
    assert!(
        got.starts_with(&["a1".to_string(), "a2".to_string()]),
        "{got:?}"
    );
    assert!(got.contains(&"b3".to_string()), "{got:?}");
}

#[test]
fn an_unreachable_broker_is_a_clear_error_not_a_hang() {
    // Nothing listens on this port.
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let ssc = context(100, None);
    let source = KafkaSource::strings(&brokers)
        .topics(["t"])
        .broker_timeout(StdDuration::from_secs(2))
        .build()
        .unwrap();
    ssc.kafka_stream(source).foreach_batch(|_, _| {}).unwrap();
    let started = std::time::Instant::now();
    let err = ssc.start().expect_err("no broker");
    eprintln!("{err} (after {:?})", started.elapsed());
    assert!(started.elapsed() < StdDuration::from_secs(15));
    assert!(err.to_string().contains(&brokers), "{err}");
}

#[test]
fn a_broker_lost_while_running_fails_batches_after_the_timeout() {
    let own = OwnBroker::start();
    let input = unique("lost");
    create_topic(&own.brokers, &input, 1);
    produce_lines(&own.brokers, &input, 1, &["x".to_string()]);
    let (ssc, handle) = reading(&own.brokers, &input, 1, |s| {
        s.broker_timeout(StdDuration::from_secs(2))
    });
    drop(own);
    let started = std::time::Instant::now();
    let err = ssc
        .await_termination_or_timeout(Seconds(30))
        .expect_err("a lost broker must fail the batches");
    let failed_after = started.elapsed();
    // The status said why while the batches were still empty.
    let last_error = handle.status().last_error;
    assert!(last_error.is_some(), "no error in the status");
    ssc.stop();
    eprintln!(
        "{err} (after {failed_after:?}; stopped after {:?})",
        started.elapsed()
    );
    assert!(failed_after < StdDuration::from_secs(10));
    assert!(
        started.elapsed() < StdDuration::from_secs(15),
        "stop() hung"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("unreachable") || msg.contains("cannot read"),
        "{msg}"
    );
}
