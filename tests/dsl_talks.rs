//! The Scala lines of the Spark Streaming talks, in the `stream!` DSL with only Rust-level
//! changes inside the lambdas, run on the testing harness with their outputs checked.

// The talks' lines are kept as they are: `status => getTags(status)` is a redundant closure.
#![allow(clippy::redundant_closure)]

use dstream::prelude::*;
use dstream::testing::TestContext;

mod support;
use support::get_tags;

/// The talks' `updateMood(tweet)`: a user's mood is the running sum of their tweets' moods.
fn update_mood(moods: Vec<i32>, mood: Option<i32>) -> Option<i32> {
    Some(mood.unwrap_or(0) + moods.iter().sum::<i32>())
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn hashtags_of_tweets_counted_over_a_window() {
    let tc = TestContext::new();
    let input: Vec<Vec<&'static str>> = (0..10)
        .map(|i| {
            if i < 5 {
                vec!["hi #spark", "#rust #spark"]
            } else {
                vec!["#rust"]
            }
        })
        .collect();
    let tweets = tc.input_stream(input);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    stream! {
        using tweets
        val hashTags = tweets.flatMap(status => get_tags(status))
        val counts = hashTags.window(Minutes(1), Seconds(5)).countByValue()
        counts.print()
        counts.foreachRDD(rdd => sink.lock().unwrap().push(sorted(rdd.collect())))
    }
    .unwrap();
    tc.run(10).unwrap();
    let kv = |k: &str, n: i64| (k.to_string(), n);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            vec![kv("#rust", 5), kv("#spark", 10)],
            vec![kv("#rust", 10), kv("#spark", 10)],
        ]
    );
}

#[test]
fn reduce_by_key_and_window_with_an_inverse_function() {
    let tc = TestContext::new();
    let tags = tc.input_stream(vec![vec!["#a", "#b"], vec!["#a"], vec![], vec![]]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    stream! {
        using tags
        val hashTags = tags.map(t => (t.to_string(), 1))
        val counts = hashTags.reduceByKeyAndWindow(_ + _, _ - _, Seconds(2), Seconds(1))
        counts.foreachRDD(rdd => sink.lock().unwrap().push(sorted(rdd.collect())))
    }
    .unwrap();
    tc.run(4).unwrap();
    let got = seen.lock().unwrap().clone();
    let kv = |k: &str, n: i32| (k.to_string(), n);
    assert_eq!(got[0], vec![kv("#a", 1), kv("#b", 1)]);
    assert_eq!(got[1], vec![kv("#a", 2), kv("#b", 1)]);
    // Spark's inverse reduce keeps keys at 0 unless a filter drops them.
    assert_eq!(got[2], vec![kv("#a", 1), kv("#b", 0)]);
    assert_eq!(got[3], vec![kv("#a", 0), kv("#b", 0)]);
}

/// A `val` feeds several operations, as in Spark: the receiver of a windowed or stateful
/// operation is borrowed, not moved, so a later line may use it again.
#[test]
fn a_val_feeds_a_window_a_state_and_an_output() {
    let tc = TestContext::new();
    let tags = tc.input_stream(vec![vec!["#a", "#b"], vec!["#a"], vec![], vec![]]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (s1, s2, s3, s4) = (seen.clone(), seen.clone(), seen.clone(), seen.clone());
    stream! {
        using tags
        val pairs = tags.map(t => (t.to_string(), 1))
        val windowed = pairs.reduceByKeyAndWindow(_ + _, Seconds(2), Seconds(1))
        val inverse = pairs.reduceByKeyAndWindow(_ + _, _ - _, Seconds(2), Seconds(1))
        val grouped = pairs.groupByKeyAndWindow(Seconds(2), Seconds(1))
        val totals = pairs.updateStateByKey((vs: Vec<i32>, s: Option<i32>) => Some(s.unwrap_or(0) + vs.iter().sum::<i32>()))
        val timed = pairs.updateStateByKey((_t: Time, _k: &String, vs: Vec<i32>, s: Option<i32>) => Some(s.unwrap_or(0) + vs.len() as i32), 2)
        val combined = pairs.combineByKey((v: i32) => v, (c: i32, v: i32) => c + v, (a: i32, b: i32) => a + b)
        pairs.foreachRDD(rdd => s1.lock().unwrap().push(("pairs", rdd.count() as i32)))
        windowed.foreachRDD(rdd => s2.lock().unwrap().push(("windowed", rdd.count() as i32)))
        inverse.foreachRDD(rdd => s3.lock().unwrap().push(("inverse", rdd.count() as i32)))
        grouped.foreachRDD(rdd => s4.lock().unwrap().push(("grouped", rdd.count() as i32)))
        totals.print()
        timed.print()
        combined.print()
    }
    .unwrap();
    tc.run(2).unwrap();
    let got = seen.lock().unwrap().clone();
    for (op, first) in [
        ("pairs", 2),
        ("windowed", 2),
        ("inverse", 2),
        ("grouped", 2),
    ] {
        let counts: Vec<i32> = got
            .iter()
            .filter(|(o, _)| *o == op)
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(counts.first(), Some(&first), "{op}: {got:?}");
        assert_eq!(counts.len(), 2, "{op} ran every batch: {got:?}");
    }
}

#[test]
fn update_state_by_key_with_a_typed_update_function() {
    let tc = TestContext::new();
    let tweets = tc.input_stream(vec![
        vec![("ann", 1), ("bob", -1)],
        vec![("ann", 2)],
        vec![],
    ]);
    // State keys are stored in the checkpoint, so they are owned: `String`, not `&str`.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    stream! {
        using tweets
        val moods = tweets.map { case (user, mood) => (user.to_string(), mood) }
            .updateStateByKey((moods: Vec<i32>, mood: Option<i32>) => update_mood(moods, mood))
        moods.foreachRDD(rdd => sink.lock().unwrap().push(sorted(rdd.collect())))
    }
    .unwrap();
    tc.run(3).unwrap();
    let got = seen.lock().unwrap().clone();
    let owned = |v: Vec<(&str, i32)>| -> Vec<(String, i32)> {
        v.into_iter().map(|(k, n)| (k.to_string(), n)).collect()
    };
    assert_eq!(got[1], owned(vec![("ann", 3), ("bob", -1)]));
    assert_eq!(got[2], owned(vec![("ann", 3), ("bob", -1)]));
}

#[test]
fn transform_joins_with_a_static_dataset_and_filters() {
    let tc = TestContext::new();
    let tweets = tc.input_stream(vec![vec![("spammer", "buy now"), ("ann", "#rust")]]);
    let spam_file = Batch::from_vec(vec![("spammer", true)], 1);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    stream! {
        using tweets
        val clean = tweets.transform(tweetsRDD =>
            tweetsRDD.left_outer_join(spam_file.clone(), HashPartitioner::new(2).unwrap())
                .filter(|(_, (_, spam))| spam.is_none())
                .map(|(user, (text, _))| (user, text)))
        clean.foreachRDD(rdd => sink.lock().unwrap().extend(rdd.collect()))
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![("ann", "#rust")]);
}

#[test]
fn page_views_by_url_per_batch_and_over_a_window() {
    let tc = TestContext::new();
    let events = tc.input_stream(
        (0..6)
            .map(|_| vec![("v1", "/home"), ("v2", "/home"), ("v1", "/cart")])
            .collect(),
    );
    let per_batch = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let windowed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, b) = (per_batch.clone(), windowed.clone());
    stream! {
        using events
        val pageViews = events.map { case (visitorId, url) => url.to_string() }
        pageViews.countByValue().foreachRDD(rdd => a.lock().unwrap().push(sorted(rdd.collect())))
        val views = pageViews.countByValueAndWindow(Seconds(30), Seconds(5))
        views.foreachRDD(rdd => b.lock().unwrap().push(sorted(rdd.collect())))
    }
    .unwrap();
    tc.run(6).unwrap();
    let kv = |k: &str, n: i64| (k.to_string(), n);
    assert_eq!(
        per_batch.lock().unwrap()[0],
        vec![kv("/cart", 1), kv("/home", 2)]
    );
    // One window output at 5 s, over the first five batches.
    assert_eq!(
        *windowed.lock().unwrap(),
        vec![vec![kv("/cart", 5), kv("/home", 10)]]
    );
}

#[test]
fn top_pages_through_transform_with_a_sort() {
    let tc = TestContext::new();
    let pages = tc.input_stream(vec![vec!["/a", "/b", "/b", "/c", "/c", "/c"]]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    stream! {
        using pages
        val counts = pages.map(p => (p, 1)).reduceByKey(_ + _)
        val top = counts.map { case (page, n) => (n, page) }
            .transform(rdd => rdd.sort_by_key(false, 1))
        top.foreachRDD(rdd => sink.lock().unwrap().extend(rdd.collect().into_iter().take(2)))
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![(3, "/c"), (2, "/b")]);
}

#[test]
fn current_sessions_joined_with_historical_sessions() {
    let tc = TestContext::new();
    let current = tc.input_stream(vec![vec![("v1", 3), ("v2", 1)]]);
    let historical = tc.input_stream(vec![vec![("v1", 10)]]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    stream! {
        using current, historical
        val currentSessions = current.map(s => s)
        val historicalSessions = historical.map(s => s)
        val joined = currentSessions.join(historicalSessions)
        joined.foreachRDD(rdd => sink.lock().unwrap().extend(rdd.collect()))
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![("v1", (3, 10))]);
}

#[test]
fn a_context_declared_in_the_macro_runs_a_queue_stream() {
    let queue = Queue::finite(vec![vec!["to be", "or not"], vec!["to be"]]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let ssc = stream! {
        val ssc = StreamingContext(Milliseconds(50))
        using queue
        val words = ssc.queueStream(queue).flatMap(_.split(' ').collect::<Vec<_>>())
        words.map(w => (w, 1)).reduceByKey(_ + _).foreachRDD(rdd => sink.lock().unwrap().push(sorted(rdd.collect())))
    }
    .unwrap();
    ssc.run_to_completion().unwrap();
    let got = seen.lock().unwrap().clone();
    assert_eq!(got[0], vec![("be", 1), ("not", 1), ("or", 1), ("to", 1)]);
    assert_eq!(got[1], vec![("be", 1), ("to", 1)]);
}

#[test]
fn words_split_with_text_split_in_the_dsl_are_those_of_str_split() {
    let lines = vec![vec!["to be  or", " not #to be "], vec!["#to"]];
    let queue = Queue::finite(lines.clone());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let ssc = stream! {
        val ssc = StreamingContext(Milliseconds(50))
        using queue
        val words = ssc.queueStream(queue).flatMap(dstream::text::split(_, ' '))
        words.foreachRDD(rdd => sink.lock().unwrap().push(rdd.collect()))
    }
    .unwrap();
    ssc.run_to_completion().unwrap();
    let want: Vec<Vec<&str>> = lines
        .iter()
        .map(|batch| batch.iter().flat_map(|l| l.split(' ')).collect())
        .collect();
    assert_eq!(*seen.lock().unwrap(), want);
    assert_eq!(want[0].len(), 9, "empty words are kept");
}

#[test]
fn a_context_declared_with_its_checkpoint_directory_keeps_state() {
    let dir = std::env::temp_dir().join(format!("dstream-dsl-cp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let queue = Queue::finite(vec![vec!["a", "b"], vec!["a"], vec!["a"]]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let ssc = stream! {
        val ssc = StreamingContext(Milliseconds(50), dir.clone())
        using queue
        val counts = ssc.queueStream(queue).map(w => (w.to_string(), 1))
            .updateStateByKey((new: Vec<i32>, total: Option<i32>) => Some(total.unwrap_or(0) + new.iter().sum::<i32>()))
        counts.foreachRDD(rdd => sink.lock().unwrap().push(sorted(rdd.collect())))
    }
    .unwrap();
    ssc.run_to_completion().unwrap();
    drop(ssc);
    let got = seen.lock().unwrap().clone();
    let kv = |k: &str, n: i32| (k.to_string(), n);
    assert_eq!(got[2], vec![kv("a", 3), kv("b", 1)]);
    assert!(
        dir.join("dstream-checkpoint").is_file(),
        "the checkpoint is in the directory given"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A partition count that is not a literal is checked when the pipeline is built: 0 is
/// Spark's error, returned by the macro (a literal 0 is a compile error, tests/ui).
#[test]
fn a_partition_count_of_zero_is_spark_s_error() {
    let tc = TestContext::new();
    let tags = tc.input_stream(vec![vec!["#a"]]);
    let none = 0usize;
    let e = stream! {
        using tags
        tags.map(t => (t, 1)).reduceByKey(_ + _, none).print()
    }
    .unwrap_err();
    assert_eq!(e.to_string(), "Number of partitions (0) must be positive.");
    let e = stream! {
        using tags
        tags.repartition(none).print()
    }
    .unwrap_err();
    assert_eq!(e.to_string(), "Number of partitions (0) must be positive.");
    let two = 2i64;
    stream! {
        using tags
        tags.map(t => (t, 1)).reduceByKey(_ + _, two).print()
    }
    .unwrap();
}

/// Every source of the context is callable from the DSL under its Spark and Rust names: a
/// bounded file input and an iterator, run as a batch job; Kafka's direct stream.
#[test]
fn the_context_s_sources_under_their_spark_and_rust_names() {
    let dir = std::env::temp_dir().join(format!("dstream-dsl-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), "to be or\nnot to be\n").unwrap();
    let path = dir.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (s1, s2) = (seen.clone(), seen.clone());
    let ssc = stream! {
        val ssc = StreamingContext(Seconds(1))
        val words = ssc.textFiles(path.clone()).flatMap(_.split(' ').map(str::to_string).collect::<Vec<_>>())
        words.map(w => (w, 1)).reduceByKey(_ + _).foreachRDD(rdd => s1.lock().unwrap().extend(rdd.collect()))
        val more = ssc.text_files(path).count()
        more.foreachRDD(rdd => s2.lock().unwrap().extend(rdd.collect().into_iter().map(|n| ("lines".to_string(), n as i32))))
    }
    .unwrap();
    ssc.run_to_completion().unwrap();
    let kv = |k: &str, n: i32| (k.to_string(), n);
    assert_eq!(
        sorted(seen.lock().unwrap().clone()),
        vec![
            kv("be", 2),
            kv("lines", 2),
            kv("not", 1),
            kv("or", 1),
            kv("to", 2)
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);

    let total = std::sync::Arc::new(std::sync::Mutex::new(0u32));
    let t = total.clone();
    let ssc = stream! {
        val ssc = StreamingContext(Seconds(1))
        ssc.iteratorStream(1..=10u32, 3).reduce(_ + _).foreachRDD(rdd => *t.lock().unwrap() += rdd.collect().iter().sum::<u32>())
    }
    .unwrap();
    ssc.run_to_completion().unwrap();
    assert_eq!(*total.lock().unwrap(), 55);

    // Built, not started: no broker is needed to build the pipeline.
    let source = dstream::kafka::KafkaSource::strings("127.0.0.1:9")
        .topics(["tweets"])
        .build()
        .unwrap();
    let ssc = dstream::StreamingContext::new(Seconds(1)).unwrap();
    stream! {
        using ssc
        val tweets = ssc.kafkaStream(source)
        tweets.map(t => t.len()).print()
    }
    .unwrap();
}

/// Spark's `cache()`, `persist(level)` and a stream's `checkpoint(interval)` compile as
/// written: batches stay in memory as long as windows need them, and the interval is checked
/// as Spark checks it.
#[test]
fn cache_persist_and_a_stream_checkpoint_interval_are_accepted() {
    let tc = TestContext::new();
    let tags = tc.input_stream(vec![vec!["#a", "#b"], vec!["#a"]]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    stream! {
        using tags
        val pairs = tags.map(t => (t.to_string(), 1)).cache()
        val totals = pairs.updateStateByKey((vs: Vec<i32>, s: Option<i32>) => Some(s.unwrap_or(0) + vs.iter().sum::<i32>())).checkpoint(Seconds(10)).persist()
        totals.persist(StorageLevel.MEMORY_ONLY_SER).foreachRDD(rdd => sink.lock().unwrap().push(sorted(rdd.collect())))
    }
    .unwrap();
    tc.run(2).unwrap();
    let kv = |k: &str, n: i32| (k.to_string(), n);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            vec![kv("#a", 1), kv("#b", 1)],
            vec![kv("#a", 2), kv("#b", 1)]
        ]
    );
}

/// `dstream::text::split(_, ' ')`, as docs/dsl.md shows it, on a stream of `String`s (what the
/// socket, file and Kafka sources give): owned words, the same pieces as `str::split`.
#[test]
fn text_split_works_on_a_string_stream() {
    let tc = TestContext::new();
    let lines = tc.input_stream(vec![vec!["to be or".to_string(), "not to be".to_string()]]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    stream! {
        using lines
        lines.flatMap(dstream::text::split(_, ' ')).map(w => (w, 1)).reduceByKey(_ + _).foreachRDD(rdd => sink.lock().unwrap().push(sorted(rdd.collect())))
    }
    .unwrap();
    tc.run(1).unwrap();
    let kv = |k: &str, n: i32| (k.to_string(), n);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![vec![kv("be", 2), kv("not", 1), kv("or", 1), kv("to", 2)]]
    );
}

/// The same on a stream of `Text` lines (`text_files_of::<Text>`, `socket_text_stream_of`):
/// the words are `Text`s of the lines' buffers, and count as the `String` words do.
#[test]
fn text_split_works_on_a_text_stream() {
    use dstream::text::Text;
    let tc = TestContext::new();
    let lines = tc.input_stream(vec![Text::lines("to be or\nnot to be")]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    stream! {
        using lines
        lines.flatMap(dstream::text::split(_, ' ')).map(w => (w, 1)).reduceByKey(_ + _).foreachRDD(rdd => sink.lock().unwrap().push(sorted(rdd.collect())))
    }
    .unwrap();
    tc.run(1).unwrap();
    let kv = |k: &str, n: i32| (Text::from(k), n);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![vec![kv("be", 2), kv("not", 1), kv("or", 1), kv("to", 2)]]
    );
}

/// Spark's accessors and overloads a Scala user reaches for: `awaitTerminationOrTimeout` in
/// milliseconds, `time.milliseconds()`, `State` and `StateSpec` from the prelude alone.
#[test]
fn spark_s_await_in_milliseconds_and_time_milliseconds() {
    let q: dstream::Queue<String> = dstream::Queue::new();
    q.push(vec!["a".to_string()]);
    let times = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let t = times.clone();
    let started = std::time::Instant::now();
    let ssc = stream! {
        val ssc = StreamingContext(Milliseconds(100), std::env::temp_dir().join(format!("dstream-dsl-await-{}", std::process::id())))
        val words = ssc.queueStream(q)
        words.map(w => (w, 1)).mapWithState(StateSpec.function((_k: &String, v: Option<i32>, s: &mut State<i32>) => { s.update(v.unwrap_or(0)); v })).print()
        words.foreachRDD((_rdd, time) => t.lock().unwrap().push(time.milliseconds() % 100))
        ssc.start()
        ssc.awaitTerminationOrTimeout(300)
    }
    .unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    ssc.stop();
    let times = times.lock().unwrap().clone();
    assert!(
        !times.is_empty() && times.iter().all(|m| *m == 0),
        "{times:?}"
    );
}

/// Scala inside lambda bodies, as a Spark user writes it: nested placeholders and case
/// functions, `x match`, `if (c) a else b`, interpolation, `Seq(...)`, parenless methods and
/// the RDD methods with Spark's defaults (`sortBy`, `distinct()`, `join`, `countByKey`, `top`).
#[test]
fn scala_in_lambda_bodies_compiles_as_written() {
    let tc = TestContext::new();
    let lines = tc.input_stream(vec![vec![
        "to be or".to_string(),
        "not to be".to_string(),
        "be".to_string(),
    ]]);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (s1, s2, s3, s4, s5, s6, s7) = (
        seen.clone(),
        seen.clone(),
        seen.clone(),
        seen.clone(),
        seen.clone(),
        seen.clone(),
        seen.clone(),
    );
    stream! {
        using lines
        val words = lines.flatMap(dstream::text::split(_, ' '))
        val counts = words.map(w => (w, 1)).reduceByKey(_ + _)
        counts.transform(rdd => rdd.sortBy(_._2, false)).foreachRDD(rdd => { val top = rdd.take(1); s1.lock().unwrap().push(s "top ${top[0]._1} ${top[0]._2}") })
        counts.foreachRDD(rdd => rdd.collect().into_iter().filter(_._2 > 1).for_each(p => s2.lock().unwrap().push(s "${p._1} x${p._2}")))
        counts.map { case (w, n) => if (n > 1) s "$w many" else s "$w one" }.foreachRDD(rdd => s3.lock().unwrap().extend(rdd.collect()))
        counts.map(p => p._2 match { case 1 => "single" case _ => "more" }).transform(rdd => rdd.distinct()).foreachRDD(rdd => s4.lock().unwrap().extend(rdd.collect().into_iter().map(_.toString)))
        counts.transform(rdd => rdd.clone().join(rdd.mapValues(_ * 10))).foreachRDD(rdd => s5.lock().unwrap().extend(rdd.collect().into_iter().filter(_._1 == "be").map(p => s "${p._1} ${p._2._1} ${p._2._2}")))
        words.map(w => (w.length, w)).foreachRDD(rdd => { val byLen = rdd.countByKey(); s6.lock().unwrap().push(s "lengths ${byLen.len()} twos ${byLen[&2]}") })
        words.flatMap(w => Seq(w.toUpperCase, w.toString)).foreachRDD(rdd => s7.lock().unwrap().push(s "top3 ${rdd.top(3).mkString(\",\")} empty ${rdd.isEmpty}"))
    }
    .unwrap();
    tc.run(1).unwrap();
    let got = sorted(seen.lock().unwrap().clone());
    let want = sorted(
        [
            "top be 3",
            "be x3",
            "to x2",
            "be many",
            "to many",
            "or one",
            "not one",
            "single",
            "more",
            "be 3 30",
            "lengths 2 twos 6",
            "top3 to,to,or empty false",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
    );
    assert_eq!(got, want);
}
