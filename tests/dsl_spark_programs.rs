//! Spark Streaming programs as Scala users write them (the programming guide's examples, the
//! talks' pipelines, one per construct), in the `stream!` DSL: each compiles as written apart
//! from Rust types on lambda parameters where inference needs them, and from its input, which is
//! embedded data (`using`) instead of a socket or Kafka. Each runs on the testing harness
//! (batches of 1 s) with its output checked.

// The programs are kept as Scala users write them.
#![allow(clippy::redundant_closure, non_snake_case)]

use std::sync::{Arc, Mutex};

use dstream::prelude::*;
use dstream::testing::TestContext;

mod support;
/// The talks' `getTags(status)`, under its Scala name.
use support::get_tags as getTags;

/// Where a program's `foreachRDD` puts each batch, sorted.
#[derive(Clone, Default)]
struct Out<T>(Arc<Mutex<Vec<Vec<T>>>>);

impl<T: Ord + Clone + Send + Sync + 'static> Out<T> {
    fn push(&self, mut records: Vec<T>) {
        records.sort();
        self.0.lock().unwrap().push(records);
    }
    fn get(&self) -> Vec<Vec<T>> {
        self.0.lock().unwrap().clone()
    }
}

/// Three batches of lines: the input of most programs below.
fn lines(tc: &TestContext) -> DStream<&'static str> {
    tc.input_stream(vec![vec!["a b a", "c"], vec!["b c"], vec![]])
}

fn kv<K: ToString, V>(k: K, v: V) -> (String, V) {
    (k.to_string(), v)
}

// 1. The guide's NetworkWordCount.
#[test]
fn network_word_count() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        val words = lines.flatMap(_.split(" "))
        val pairs = words.map(word => (word.to_string(), 1))
        val wordCounts = pairs.reduceByKey(_ + _)
        wordCounts.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(3).unwrap();
    assert_eq!(
        out.get(),
        vec![
            vec![kv("a", 2), kv("b", 1), kv("c", 1)],
            vec![kv("b", 1), kv("c", 1)],
            vec![]
        ]
    );
}

// 2. The guide's windowed word count.
#[test]
fn windowed_word_count() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        val pairs = lines.flatMap(_.split(" ")).map(word => (word.to_string(), 1))
        val windowedWordCounts = pairs.reduceByKeyAndWindow((a: i32, b: i32) => a + b, Seconds(2), Seconds(1))
        windowedWordCounts.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(3).unwrap();
    assert_eq!(
        out.get(),
        vec![
            vec![kv("a", 2), kv("b", 1), kv("c", 1)],
            vec![kv("a", 2), kv("b", 2), kv("c", 2)],
            vec![kv("b", 1), kv("c", 1)]
        ]
    );
}

// 3. The same window with an inverse function (Spark keeps keys that fall to 0).
#[test]
fn windowed_word_count_with_an_inverse_function() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        val pairs = lines.flatMap(_.split(" ")).map(word => (word.to_string(), 1))
        val counts = pairs.reduceByKeyAndWindow(_ + _, _ - _, Seconds(2), Seconds(1))
        counts.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(3).unwrap();
    assert_eq!(out.get()[2], vec![kv("a", 0), kv("b", 1), kv("c", 1)]);
}

/// The guide's `def updateFunction(newValues: Seq[Int], runningCount: Option[Int])`.
fn updateFunction(newValues: Vec<i32>, runningCount: Option<i32>) -> Option<i32> {
    Some(newValues.iter().sum::<i32>() + runningCount.unwrap_or(0))
}

// 4. StatefulNetworkWordCount with updateStateByKey: a function val, and the guide's `def`.
#[test]
fn stateful_word_count_with_update_state_by_key() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let (out, guide) = (Out::default(), Out::default());
    let (o, g) = (out.clone(), guide.clone());
    stream! {
        using lines
        val updateFunc = (values: Vec<i32>, state: Option<i32>) => {
            val currentCount = values.sum;
            val previousCount = state.getOrElse(0);
            Some(currentCount + previousCount)
        }
        val wordDstream = lines.flatMap(_.split(" ")).map(x => (x.to_string(), 1))
        val stateDstream = wordDstream.updateStateByKey(updateFunc)
        val guideStyle = wordDstream.updateStateByKey(updateFunction _)
        guideStyle.foreachRDD(rdd => g.push(rdd.collect()))
        stateDstream.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(3).unwrap();
    let all = vec![kv("a", 2), kv("b", 2), kv("c", 2)];
    assert_eq!(
        out.get(),
        vec![vec![kv("a", 2), kv("b", 1), kv("c", 1)], all.clone(), all]
    );
    assert_eq!(guide.get(), out.get());
}

// 5. StatefulNetworkWordCount with mapWithState (Spark 1.6).
#[test]
fn stateful_word_count_with_map_with_state() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        val wordDstream = lines.flatMap(_.split(" ")).map(x => (x.to_string(), 1))
        val mappingFunc = (word: &String, one: Option<i32>, state: &mut State<i32>) => {
            val sum = one.getOrElse(0) + state.getOption.getOrElse(0);
            val output = (word.clone(), sum);
            state.update(sum);
            output
        }
        val stateDstream = wordDstream.mapWithState(StateSpec.function(mappingFunc))
        stateDstream.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(
        out.get(),
        vec![
            vec![kv("a", 1), kv("a", 2), kv("b", 1), kv("c", 1)],
            vec![kv("b", 2), kv("c", 2)]
        ]
    );
}

// 6. The guide's transform: a join with a static dataset to drop spam.
#[test]
fn transform_drops_words_of_a_spam_list() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let spamInfoRDD = Batch::from(vec![(String::from("b"), true)]);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        val wordCounts = lines.flatMap(_.split(" ")).map(w => (w.to_string(), 1)).reduceByKey(_ + _)
        val cleanedDStream = wordCounts.transform(rdd => {
            rdd.leftOuterJoin(spamInfoRDD.clone()).filter(_._2._2.isEmpty).map { case (w, (n, _)) => (w, n) }
        })
        cleanedDStream.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(
        out.get(),
        vec![vec![kv("a", 2), kv("c", 1)], vec![kv("c", 1)]]
    );
}

// 7. foreachRDD with a foreach over the records (the guide's "design patterns").
#[test]
fn foreach_rdd_with_foreach_over_the_records() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let sent = Arc::new(Mutex::new(Vec::new()));
    let s = sent.clone();
    stream! {
        using lines
        lines.foreachRDD(rdd => rdd.foreach(record => s.lock().unwrap().push(record.to_string())))
    }
    .unwrap();
    tc.run(3).unwrap();
    let mut got = sent.lock().unwrap().clone();
    got.sort();
    assert_eq!(got, ["a b a", "b c", "c"]);
}

// 8. countByValue.
#[test]
fn count_by_value() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        lines.flatMap(_.split(" ")).countByValue().foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(out.get(), vec![vec![("a", 2i64), ("b", 1), ("c", 1)]]);
}

// 9. countByWindow.
#[test]
fn count_by_window() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        lines.flatMap(_.split(" ")).countByWindow(Seconds(2), Seconds(1)).foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(3).unwrap();
    assert_eq!(out.get(), vec![vec![4i64], vec![6], vec![2]]);
}

// 10. countByValueAndWindow (keys whose count falls to 0 are dropped).
#[test]
fn count_by_value_and_window() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        lines.flatMap(_.split(" ")).map(_.to_string()).countByValueAndWindow(Seconds(2), Seconds(1)).foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(3).unwrap();
    assert_eq!(out.get()[2], vec![kv("b", 1i64), kv("c", 1)]);
}

// 11. reduceByWindow.
#[test]
fn reduce_by_window() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        lines.map(_.length).reduceByWindow(_ + _, Seconds(2), Seconds(1)).foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(3).unwrap();
    assert_eq!(out.get(), vec![vec![6usize], vec![9], vec![3]]);
}

/// A keyed stream of ad events.
type Ads = DStream<(&'static str, i32)>;

/// Two keyed streams: clicks and impressions of ads.
fn ads(tc: &TestContext) -> (Ads, Ads) {
    (
        tc.input_stream(vec![vec![("ad1", 1), ("ad2", 2)], vec![("ad1", 3)]]),
        tc.input_stream(vec![vec![("ad1", 10)], vec![("ad3", 30)]]),
    )
}

// 12. union.
#[test]
fn union_of_two_streams() {
    let tc = TestContext::new();
    let (clicks, views) = ads(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using clicks, views
        clicks.union(views).foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(
        out.get(),
        vec![
            vec![("ad1", 1), ("ad1", 10), ("ad2", 2)],
            vec![("ad1", 3), ("ad3", 30)]
        ]
    );
}

// 13. A stream-stream join.
#[test]
fn stream_stream_join() {
    let tc = TestContext::new();
    let (clicks, views) = ads(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using clicks, views
        val joinedStream = clicks.join(views)
        joinedStream.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(out.get(), vec![vec![("ad1", (1, 10))], vec![]]);
}

// 14. leftOuterJoin of streams.
#[test]
fn stream_stream_left_outer_join() {
    let tc = TestContext::new();
    let (clicks, views) = ads(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using clicks, views
        clicks.leftOuterJoin(views).foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(
        out.get(),
        vec![vec![("ad1", (1, Some(10))), ("ad2", (2, None))]]
    );
}

// 15. cogroup of streams.
#[test]
fn stream_stream_cogroup() {
    let tc = TestContext::new();
    let (clicks, views) = ads(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using clicks, views
        clicks.cogroup(views).foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(
        out.get()[1],
        vec![("ad1", (vec![3], vec![])), ("ad3", (vec![], vec![30]))]
    );
}

// 16. The guide's window join: a windowed stream joined with another.
#[test]
fn windowed_stream_join() {
    let tc = TestContext::new();
    let (clicks, views) = ads(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using clicks, views
        val windowedStream1 = clicks.window(Seconds(2))
        val joinedStream = windowedStream1.join(views)
        joinedStream.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(out.get(), vec![vec![("ad1", (1, 10))], vec![]]);
}

/// The talks' tweets.
fn tweets(tc: &TestContext) -> DStream<&'static str> {
    tc.input_stream(vec![
        vec!["#spark is fast", "#rust #spark"],
        vec!["#rust", "#rust now"],
    ])
}

// 17. The talks' top hashtags over a window.
#[test]
fn top_hashtags_over_a_window() {
    let tc = TestContext::new();
    let tweets = tweets(&tc);
    let top = Arc::new(Mutex::new(Vec::new()));
    let t = top.clone();
    stream! {
        using tweets
        val hashTags = tweets.flatMap(status => getTags(status))
        val topCounts = hashTags.map((_, 1)).reduceByKeyAndWindow(_ + _, Seconds(2), Seconds(1))
            .map { case (topic, count) => (count, topic) }
            .transform(_.sortByKey(false))
        topCounts.foreachRDD(rdd => {
            val topList = rdd.take(10);
            t.lock().unwrap().push(topList.iter().map { case (count, tag) => s "$tag ($count tweets)" }.collect::<Vec<_>>().mkString(", "));
        })
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(
        *top.lock().unwrap(),
        [
            "#spark (2 tweets), #rust (1 tweets)",
            "#rust (3 tweets), #spark (2 tweets)"
        ]
    );
}

// 18. The talks' page views by URL.
#[test]
fn page_views_by_url() {
    let tc = TestContext::new();
    let views = tc.input_stream(vec![vec![("/home", "u1"), ("/home", "u2"), ("/buy", "u1")]]);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using views
        val pageCounts = views.map(view => view._1).countByValue()
        pageCounts.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(out.get(), vec![vec![("/buy", 1i64), ("/home", 2)]]);
}

// 19. Unique visitors per page: groupByKey, then a set's size.
#[test]
fn unique_visitors_per_page() {
    let tc = TestContext::new();
    let views = tc.input_stream(vec![vec![
        ("/home", "u1"),
        ("/home", "u1"),
        ("/home", "u2"),
        ("/buy", "u1"),
    ]]);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using views
        val visitors = views.groupByKey().mapValues(_.iter().collect::<std::collections::HashSet<_>>().len())
        visitors.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(out.get(), vec![vec![("/buy", 1usize), ("/home", 2)]]);
}

// 20. repartition, then a count.
#[test]
fn repartition_then_count() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        lines.flatMap(_.split(" ")).repartition(4).count().foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(out.get(), vec![vec![4i64], vec![2]]);
}

// 21. A filter with a case function, as Scala users write it.
#[test]
fn filter_with_a_case_function() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using lines
        val counts = lines.flatMap(_.split(" ")).map((_, 1)).reduceByKey(_ + _)
        counts.filter { case (_, n) => *n > 1 }.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(out.get(), vec![vec![("a", 2)]]);
}

// 22. mapValues and flatMapValues.
#[test]
fn map_values_and_flat_map_values() {
    let tc = TestContext::new();
    let (clicks, _) = ads(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using clicks
        clicks.mapValues(_ * 10).flatMapValues(v => Seq(v, v + 1)).foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(
        out.get(),
        vec![vec![("ad1", 10), ("ad1", 11), ("ad2", 20), ("ad2", 21)]]
    );
}

// 23. transformWith over two streams.
#[test]
fn transform_with_two_streams() {
    let tc = TestContext::new();
    let (clicks, views) = ads(&tc);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using clicks, views
        clicks.transformWith(views, (c, v) => c.union(v).map(_._1).distinct()).foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(out.get(), vec![vec!["ad1", "ad2"]]);
}

// 24. saveAsTextFiles, Spark's file naming: prefix-TIME_IN_MS.suffix.
#[test]
fn save_as_text_files() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let dir = std::env::temp_dir().join(format!("dstream-programs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = dir.join("words").to_string_lossy().into_owned();
    stream! {
        using lines
        lines.flatMap(_.split(" ")).saveAsTextFiles(prefix.as_str(), "txt")
    }
    .unwrap();
    tc.run(1).unwrap();
    let written: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert!(
        written[0].starts_with("words-") && written[0].ends_with(".txt"),
        "{written:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// 25. foreachRDD with the batch time, and Scala's collection methods on the records.
#[test]
fn foreach_rdd_with_the_batch_time() {
    let tc = TestContext::new();
    let lines = lines(&tc);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    stream! {
        using lines
        lines.map(_.length).foreachRDD((rdd, time) => {
            val lengths = rdd.collect();
            if (lengths.nonEmpty) s.lock().unwrap().push(s "${time.milliseconds / 1000}: ${lengths.sum} in ${lengths.size}") else s.lock().unwrap().push(s "${time.milliseconds / 1000}: empty")
        })
    }
    .unwrap();
    tc.run(3).unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        ["1: 6 in 2", "2: 3 in 1", "3: empty"]
    );
}

// 26. reduce and print(n) on a stream of numbers.
#[test]
fn reduce_a_stream_of_numbers() {
    let tc = TestContext::new();
    let numbers = tc.input_stream(vec![vec![1, 2, 3], vec![4]]);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using numbers
        val total = numbers.reduce(_ + _)
        total.print(5)
        total.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(out.get(), vec![vec![6], vec![4]]);
}

// 27. Sessions: a visitor's pages kept in mapWithState, with Scala's match in the function.
#[test]
fn sessions_with_map_with_state() {
    let tc = TestContext::new();
    let click = |v: &str, p: &str| (v.to_string(), p.to_string());
    let clicks = tc.input_stream(vec![
        vec![click("v1", "/home"), click("v2", "/home")],
        vec![click("v1", "/buy")],
    ]);
    let out = Out::default();
    let o = out.clone();
    stream! {
        using clicks
        val sessions = clicks.mapWithState(StateSpec.function((visitor: &String, page: Option<String>, state: &mut State<Vec<String>>) => {
            val pages = state.getOption.getOrElse(Vec::new());
            val next = page match {
                case Some(p) => { let mut n = pages.clone(); n.push(p); n }
                case None => pages
            };
            state.update(next.clone());
            (visitor.to_string(), next.size)
        }))
        sessions.foreachRDD(rdd => o.push(rdd.collect()))
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(
        out.get(),
        vec![vec![kv("v1", 1usize), kv("v2", 1)], vec![kv("v1", 2)]]
    );
}

// 28. The top counts with Spark's `top(n)(Ordering.by(f))`.
#[test]
fn top_n_by_an_ordering() {
    let tc = TestContext::new();
    let tweets = tweets(&tc);
    let top = Arc::new(Mutex::new(Vec::new()));
    let t = top.clone();
    stream! {
        using tweets
        val counts = tweets.flatMap(status => getTags(status)).map((_, 1)).reduceByKey(_ + _)
        counts.foreachRDD(rdd => t.lock().unwrap().push(rdd.top(1)(Ordering.by(_._2))))
    }
    .unwrap();
    tc.run(2).unwrap();
    assert_eq!(
        *top.lock().unwrap(),
        vec![vec![kv("#spark", 2)], vec![kv("#rust", 2)]]
    );
}

// 29. Rust's `join` on a vector of strings beside Spark's `join` of batches, in one body.
#[test]
fn rust_s_join_and_spark_s_join_in_one_body() {
    let tc = TestContext::new();
    let (clicks, views) = ads(&tc);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    stream! {
        using clicks, views
        clicks.transformWith(views, (c, v) => c.join(v)).foreachRDD(rdd => {
            val ads = rdd.collect().into_iter().map(p => s "${p._1}:${p._2._1}+${p._2._2}").collect::<Vec<_>>();
            s.lock().unwrap().push(ads.join(" "))
        })
    }
    .unwrap();
    tc.run(1).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["ad1:1+10"]);
}
