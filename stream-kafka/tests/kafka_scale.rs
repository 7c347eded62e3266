//! Scale-out: instances of one application in a consumer group, tasks that move between them.
//! Each test runs on the test broker (tansu) and, when `DSTREAM_REAL_KAFKA` names one (CI starts
//! it), on a real Apache Kafka broker, whose group coordinator is the one users run.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration as StdDuration;

use common::*;
use stream_core::prelude::*;
use stream_core::{State, StateSpec};
use stream_kafka::{Delivery, Instance, KafkaSink, KafkaSource, KafkaStreams, OutRecord, ScaleOut};

/// The brokers to run on: the test broker, and a real Kafka when given.
fn each_broker(test: &str) -> Vec<(&'static str, String)> {
    let mut v = vec![("tansu", brokers())];
    match std::env::var("DSTREAM_REAL_KAFKA") {
        Ok(b) if !b.is_empty() => v.push(("kafka", b)),
        _ => eprintln!(
            "{test}: on tansu only: set DSTREAM_REAL_KAFKA=host:port to run it on a real Kafka broker too"
        ),
    }
    v
}

fn temp_root(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A stateless instance: upper-cases the input's lines into `out`, exactly once.
fn upper_instance(brokers: &str, app: &str, input: &str, out: &str, root: &PathBuf) -> Instance {
    let (b, i, o) = (brokers.to_string(), input.to_string(), out.to_string());
    ScaleOut::new(app, brokers)
        .topics([input])
        .checkpoint(root)
        .session_timeout(StdDuration::from_secs(6))
        .stop_gracefully_on_signal(false)
        .run(move |_task| {
            let ssc = StreamingContext::builder(Milliseconds(200))
                .stop_gracefully_on_signal(false)
                .build()?;
            let source = KafkaSource::strings(&b).topics([i.as_str()]).build()?;
            let handle = source.handle();
            ssc.kafka_stream(source).map(|l| l.to_uppercase()).save_to(
                KafkaSink::with_encoder(&b, &o, |l: &String| Ok(OutRecord::new(l.clone())))
                    .delivery(Delivery::ExactlyOnce)
                    .commit_offsets_of(&handle)
                    .build(),
            )?;
            Ok(ssc)
        })
        .unwrap()
}

fn owned(instances: &[&Instance]) -> Vec<BTreeSet<String>> {
    instances
        .iter()
        .map(|i| i.status().tasks.into_iter().map(|t| t.task).collect())
        .collect()
}

/// Every task is run by exactly one instance, and each instance runs at least one.
fn split_among(instances: &[&Instance], tasks: usize) -> bool {
    let owned = owned(instances);
    let total: usize = owned.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<&String> = owned.iter().flatten().collect();
    total == tasks && union.len() == tasks && owned.iter().all(|o| !o.is_empty())
}

fn lines(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("line{i}")).collect()
}

fn counts(values: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in values {
        *m.entry(v).or_insert(0) += 1;
    }
    m
}

#[test]
fn instances_split_the_tasks_and_take_over_those_of_one_that_leaves() {
    for (kind, b) in each_broker("instances_split_the_tasks_and_take_over_those_of_one_that_leaves")
    {
        eprintln!("== on {kind} ({b})");
        let input = unique("scale-in");
        let out = unique("scale-out");
        let app = unique("scale-app");
        create_topic(&b, &input, 6);
        create_topic(&b, &out, 3);
        produce_lines(&b, &input, 6, &lines(0, 600));
        let roots: Vec<PathBuf> = (0..3).map(|i| temp_root(&format!("inst{i}"))).collect();
        let a = upper_instance(&b, &app, &input, &out, &roots[0]);
        let c = upper_instance(&b, &app, &input, &out, &roots[1]);
        let d = upper_instance(&b, &app, &input, &out, &roots[2]);
        wait_for(60, "the 6 tasks split among 3 instances", || {
            split_among(&[&a, &c, &d], 6)
        });
        eprintln!("tasks: {:?}", owned(&[&a, &c, &d]));
        wait_for(60, "600 records out", || read_all(&b, &out).len() >= 600);

        // One instance leaves: its tasks finish their batch and move to the other two.
        a.stop();
        assert!(a.status().tasks.is_empty());
        wait_for(60, "the 6 tasks split among the 2 others", || {
            split_among(&[&c, &d], 6)
        });
        produce_lines(&b, &input, 6, &lines(600, 1200));
        wait_for(60, "1200 records out", || read_all(&b, &out).len() >= 1200);
        // Some more batches: nothing more may come out.
        std::thread::sleep(StdDuration::from_secs(1));
        let got = counts(read_all(&b, &out).iter().map(|r| r.text()));
        let want = counts(lines(0, 1200).iter().map(|l| l.to_uppercase()));
        assert_eq!(
            got, want,
            "each input line exactly once in the output ({kind})"
        );
        // The group's offsets are the end of the input.
        wait_for(30, "the group's offsets at the end of the input", || {
            group_offsets(&b, &app, &input, 6) == vec![200; 6]
        });
        c.stop();
        d.stop();
        for r in roots {
            let _ = std::fs::remove_dir_all(r);
        }
    }
}

#[test]
fn an_instance_with_another_pipeline_shape_is_refused() {
    for (kind, b) in each_broker("an_instance_with_another_pipeline_shape_is_refused") {
        let input = unique("shape-in");
        let out = unique("shape-out");
        let app = unique("shape-app");
        create_topic(&b, &input, 2);
        let root = temp_root("shape");
        let first = upper_instance(&b, &app, &input, &out, &root);
        let b2 = b.clone();
        let i2 = input.clone();
        let refused = ScaleOut::new(&app, &b)
            .topics([input.as_str()])
            .checkpoint(&root)
            .stop_gracefully_on_signal(false)
            .run(move |_| {
                let ssc = StreamingContext::builder(Milliseconds(200))
                    .stop_gracefully_on_signal(false)
                    .build()?;
                ssc.kafka_stream(KafkaSource::strings(&b2).topics([i2.as_str()]).build()?)
                    .map(|l| (l, 1i64))
                    .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| {
                        Some(s.unwrap_or(0) + vs.iter().sum::<i64>())
                    })
                    .foreach_batch(|_, _| {})?;
                Ok(ssc)
            })
            .expect_err("a pipeline with another shape must not join");
        let message = refused.to_string();
        eprintln!("{kind}: {message}");
        assert!(
            message.contains("cannot join") && message.contains("updateStateByKey"),
            "the error names the difference: {message}"
        );
        first.stop();
        let _ = std::fs::remove_dir_all(root);
    }
}

#[test]
fn a_source_outside_the_task_topics_fails_the_task_with_a_clear_error() {
    let b = brokers();
    let input = unique("outside-in");
    let other = unique("outside-other");
    create_topic(&b, &input, 1);
    create_topic(&b, &other, 1);
    let root = temp_root("outside");
    let b2 = b.clone();
    let o2 = other.clone();
    let instance = ScaleOut::new(unique("outside-app"), &b)
        .topics([input.as_str()])
        .checkpoint(&root)
        .session_timeout(StdDuration::from_secs(6))
        .stop_gracefully_on_signal(false)
        .run(move |_| {
            let ssc = StreamingContext::builder(Milliseconds(200))
                .stop_gracefully_on_signal(false)
                .build()?;
            ssc.kafka_stream(KafkaSource::strings(&b2).topics([o2.as_str()]).build()?)
                .foreach_batch(|_, _| {})?;
            Ok(ssc)
        })
        .unwrap();
    let r = instance
        .await_termination_or_timeout(StdDuration::from_secs(60))
        .unwrap()
        .expect("the task fails to start, which stops the instance");
    let message = r.expect_err("an error").to_string();
    assert!(
        message.contains("none of the application's task topics") && message.contains(&input),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(root);
}

/// A stateful instance: counts each user's events (`map_with_state`), writing `user n` for the
/// n-th event of a user, exactly once. Users are keyed to partitions, so a user's state is in
/// one task.
fn counting_instance(brokers: &str, app: &str, input: &str, out: &str, root: &PathBuf) -> Instance {
    let (b, i, o) = (brokers.to_string(), input.to_string(), out.to_string());
    ScaleOut::new(app, brokers)
        .topics([input])
        .checkpoint(root)
        .session_timeout(StdDuration::from_secs(6))
        .stop_gracefully_on_signal(false)
        .run(move |_task| {
            let ssc = StreamingContext::builder(Milliseconds(200))
                .stop_gracefully_on_signal(false)
                .parallelism(2)
                .build()?;
            let source = KafkaSource::strings(&b).topics([i.as_str()]).build()?;
            let handle = source.handle();
            let counted =
                ssc.kafka_stream(source)
                    .map(|u| (u, ()))
                    .map_with_state(StateSpec::function(
                        |_, user: &String, v: Option<()>, st: &mut State<i64>| {
                            v?;
                            let n = st.get().copied().unwrap_or(0) + 1;
                            st.update(n);
                            Some(format!("{user} {n}"))
                        },
                    ));
            counted.mapped().save_to(
                KafkaSink::with_encoder(&b, &o, |l: &String| Ok(OutRecord::new(l.clone())))
                    .delivery(Delivery::ExactlyOnce)
                    .commit_offsets_of(&handle)
                    .build(),
            )?;
            Ok(ssc)
        })
        .unwrap()
}

/// `per_user` events of each of 60 users, user `u` in partition `u % 6`.
fn produce_users(b: &str, topic: &str, per_user: usize) {
    let users: Vec<String> = (0..60).map(|u| format!("u{u}")).collect();
    let mut records: Vec<In<'_>> = Vec::new();
    for _ in 0..per_user {
        for (u, name) in users.iter().enumerate() {
            records.push(((u % 6) as i32, None, Some(name.as_bytes())));
        }
    }
    produce(b, topic, &records);
}

#[test]
fn stateful_tasks_move_with_their_state_through_the_changelog() {
    for (kind, b) in each_broker("stateful_tasks_move_with_their_state_through_the_changelog") {
        eprintln!("== on {kind} ({b})");
        let input = unique("users-in");
        let out = unique("users-out");
        let app = unique("users-app");
        create_topic(&b, &input, 6);
        create_topic(&b, &out, 3);
        // Separate checkpoint roots: as on separate machines, state moves only through Kafka.
        let roots: Vec<PathBuf> = (0..3).map(|i| temp_root(&format!("users{i}"))).collect();
        produce_users(&b, &input, 10);
        let a = counting_instance(&b, &app, &input, &out, &roots[0]);
        let c = counting_instance(&b, &app, &input, &out, &roots[1]);
        let d = counting_instance(&b, &app, &input, &out, &roots[2]);
        wait_for(90, "the 6 tasks split among 3 instances", || {
            split_among(&[&a, &c, &d], 6)
        });
        wait_for(60, "600 counts out", || read_all(&b, &out).len() >= 600);

        // One leaves: its tasks are restored elsewhere from their changelogs.
        a.stop();
        wait_for(90, "the 6 tasks on the 2 others", || {
            split_among(&[&c, &d], 6)
        });
        produce_users(&b, &input, 10);
        wait_for(60, "1200 counts out", || read_all(&b, &out).len() >= 1200);

        // It comes back with its old checkpoints: a task it had before restores the
        // changelog's tail onto its local copy.
        let a = counting_instance(&b, &app, &input, &out, &roots[0]);
        wait_for(90, "the 6 tasks among 3 again", || {
            split_among(&[&a, &c, &d], 6)
        });
        produce_users(&b, &input, 10);
        wait_for(60, "1800 counts out", || read_all(&b, &out).len() >= 1800);
        std::thread::sleep(StdDuration::from_secs(1));

        let got = counts(read_all(&b, &out).iter().map(|r| r.text()));
        let want = counts((0..60).flat_map(|u| (1..=30).map(move |n| format!("u{u} {n}"))));
        assert_eq!(
            got, want,
            "each user's counts 1..30 exactly once: state moved whole, no update twice ({kind})"
        );
        for i in [&a, &c, &d] {
            i.stop();
        }
        for r in roots {
            let _ = std::fs::remove_dir_all(r);
        }
    }
}
