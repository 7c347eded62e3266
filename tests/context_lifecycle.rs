//! The StreamingContext life cycle, with Spark's rules and messages.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use dstream::prelude::*;
use dstream::testing::TestContext;
use dstream::{BatchInfo, ManualClock, StreamingContextState, StreamingListener};

fn manual(batch: Duration) -> (StreamingContext, ManualClock) {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(batch)
        .parallelism(2)
        .clock(clock.clone())
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    (ssc, clock)
}

#[test]
fn start_without_outputs_is_refused_with_sparks_message() {
    let (ssc, _) = manual(Seconds(1));
    let _unused = ssc.queue_stream(&Queue::<i32>::new(), true).map(|x| x + 1);
    let err = ssc.start().unwrap_err();
    assert_eq!(
        err.to_string(),
        "No output operations registered, so nothing to execute"
    );
    // As Spark: a context that failed to start is marked stopped.
    assert_eq!(ssc.state(), StreamingContextState::Stopped);
    assert_eq!(
        ssc.start().unwrap_err().to_string(),
        "StreamingContext has already been stopped"
    );
}

#[test]
fn outputs_cannot_be_added_after_start_or_stop_and_no_restart() {
    let (ssc, _) = manual(Seconds(1));
    let s = ssc.queue_stream(&Queue::<i32>::new(), true);
    s.foreach_batch(|_, _| ()).unwrap();
    ssc.start().unwrap();
    assert_eq!(ssc.state(), StreamingContextState::Active);
    // Starting twice is a warning in Spark, not an error.
    ssc.start().unwrap();
    assert_eq!(
        s.map(|x| x * 2).print().unwrap_err().to_string(),
        "Adding new inputs, transformations, and output operations after starting a context is not supported"
    );
    // A stream created after start is detached: its output fails the same way.
    let late = ssc.queue_stream(&Queue::<i32>::new(), true);
    assert!(late.foreach_batch(|_, _| ()).is_err());
    ssc.stop();
    assert_eq!(ssc.state(), StreamingContextState::Stopped);
    assert_eq!(
        s.print().unwrap_err().to_string(),
        "Adding new inputs, transformations, and output operations after stopping a context is not supported"
    );
    assert_eq!(
        ssc.start().unwrap_err().to_string(),
        "StreamingContext has already been stopped"
    );
    // Stopping twice is harmless.
    ssc.stop();
}

#[test]
fn stop_before_start_makes_the_context_unusable() {
    let (ssc, _) = manual(Seconds(1));
    ssc.queue_stream(&Queue::<i32>::new(), true)
        .foreach_batch(|_, _| ())
        .unwrap();
    ssc.stop();
    assert_eq!(
        ssc.start().unwrap_err().to_string(),
        "StreamingContext has already been stopped"
    );
}

#[test]
fn invalid_settings_are_refused() {
    assert!(
        StreamingContext::new(Milliseconds(0))
            .unwrap_err()
            .to_string()
            .contains("Batch duration must be positive")
    );
    assert!(
        StreamingContext::builder(Seconds(1))
            .parallelism(0)
            .build()
            .is_err()
    );
    assert_eq!(
        HashPartitioner::new(0).unwrap_err().to_string(),
        "Number of partitions (0) cannot be negative or zero."
    );
}

#[test]
fn streams_of_different_contexts_cannot_be_combined() {
    let (a, _) = manual(Seconds(1));
    let (b, _) = manual(Seconds(1));
    let sa = a.queue_stream(&Queue::<i32>::new(), true);
    let sb = b.queue_stream(&Queue::<i32>::new(), true);
    let err = sa.union(&sb).foreach_batch(|_, _| ()).unwrap_err();
    assert!(err.to_string().contains("different contexts"), "{err}");
}

#[test]
fn a_failed_batch_is_reraised_by_await_termination_and_the_stream_goes_on() {
    let (ssc, clock) = manual(Seconds(1));
    let q = Queue::new();
    for b in [vec![1, 2], vec![0], vec![3]] {
        q.push(b);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    ssc.queue_stream(&q, true)
        .map(|x: i32| 10 / x) // 10 / 0 panics in batch 2
        .foreach_batch(move |b, t| {
            // The map runs lazily, inside this output job: collect before taking the lock.
            let records = b.collect();
            sink.lock().unwrap().push((t.millis(), records));
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(Seconds(3));
    assert!(ssc.await_batches(3, Seconds(10)));
    let err = ssc.await_termination().unwrap_err();
    assert!(
        err.to_string().contains("2000 ms") && err.to_string().contains("panicked"),
        "{err}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec![(1000, vec![10, 5]), (3000, vec![3])]
    );
    assert_eq!(ssc.failures().len(), 1);
    ssc.stop();
}

#[test]
fn an_output_returning_err_fails_only_its_batch() {
    let tc = TestContext::new();
    let s = tc.input_stream(vec![vec![1], vec![2], vec![3]]);
    s.foreach_batch(|b, _| {
        if b.collect() == vec![2] {
            Err("two is not allowed")
        } else {
            Ok(())
        }
    })
    .unwrap();
    let out = tc.collect(&s).unwrap();
    let report = tc.run(3).unwrap();
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].0, Time::from_millis(2000));
    assert!(
        report.failures[0]
            .1
            .to_string()
            .contains("two is not allowed")
    );
    assert_eq!(out.batches(), vec![vec![1], vec![2], vec![3]]);
}

#[test]
fn await_termination_or_timeout_reports_whether_stopped() {
    let (ssc, _) = manual(Seconds(1));
    ssc.queue_stream(&Queue::<i32>::new(), true)
        .foreach_batch(|_, _| ())
        .unwrap();
    // Before start it waits, as Spark's does (for a start and a stop from elsewhere).
    assert!(!ssc.await_termination_or_timeout(Milliseconds(50)).unwrap());
    ssc.start().unwrap();
    assert!(!ssc.await_termination_or_timeout(Milliseconds(50)).unwrap());
    let stopper = ssc.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        stopper.stop();
    });
    assert!(ssc.await_termination_or_timeout(Seconds(10)).unwrap());
}

#[test]
fn graceful_stop_processes_every_generated_batch() {
    let (ssc, clock) = manual(Seconds(1));
    let q = Queue::new();
    for i in 0..20 {
        q.push(vec![i]);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    ssc.queue_stream(&q, true)
        .foreach_batch(move |b, _| {
            std::thread::sleep(std::time::Duration::from_millis(10));
            sink.lock().unwrap().extend(b.collect());
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(Seconds(20));
    // Wait until the generator has queued all 20 batches (the queue is drained), then stop.
    while !q.is_empty() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    ssc.stop_gracefully();
    assert_eq!(*seen.lock().unwrap(), (0..20).collect::<Vec<_>>());
    // The 20 batches, and the one a graceful stop generates for what arrived since (empty here).
    assert_eq!(ssc.completed_batches(), 21);
}

#[test]
fn stop_from_inside_a_batch_does_not_deadlock() {
    let (ssc, clock) = manual(Seconds(1));
    let handle = ssc.clone();
    ssc.queue_stream(&Queue::<i32>::new(), true)
        .foreach_batch(move |_, _| handle.stop())
        .unwrap();
    ssc.start().unwrap();
    clock.advance(Seconds(1));
    assert!(ssc.await_termination_or_timeout(Seconds(10)).unwrap());
    assert_eq!(ssc.state(), StreamingContextState::Stopped);
}

#[test]
fn a_parent_read_by_two_children_is_computed_once_per_batch() {
    let tc = TestContext::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let shared = tc
        .input_stream(vec![vec![1, 2, 3, 4], vec![5, 6]])
        .map(move |x| {
            c.fetch_add(1, Ordering::SeqCst);
            x * 10
        });
    let evens = tc.collect(&shared.filter(|x| x % 20 == 0)).unwrap();
    let plus = tc.collect(&shared.map(|x| x + 1)).unwrap();
    tc.run(2).unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        6,
        "the shared map ran more than once per record"
    );
    assert_eq!(evens.batches(), vec![vec![20, 40], vec![60]]);
    assert_eq!(plus.batches(), vec![vec![11, 21, 31, 41], vec![51, 61]]);
}

#[test]
fn listeners_see_every_batch_with_its_input_size() {
    struct Recorder(Mutex<Vec<BatchInfo>>);
    impl StreamingListener for Recorder {
        fn on_batch_completed(&self, info: &BatchInfo) {
            self.0.lock().unwrap().push(info.clone());
        }
    }
    let tc = TestContext::new();
    let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
    tc.context().add_streaming_listener(rec.clone());
    tc.collect(&tc.input_stream(vec![vec![1, 2, 3], vec![], vec![4]]))
        .unwrap();
    tc.run(3).unwrap();
    let infos = rec.0.lock().unwrap().clone();
    assert_eq!(
        infos.iter().map(|i| i.num_records).collect::<Vec<_>>(),
        vec![3, 0, 1]
    );
    assert_eq!(
        infos
            .iter()
            .map(|i| i.batch_time.millis())
            .collect::<Vec<_>>(),
        vec![1000, 2000, 3000]
    );
    assert!(
        infos
            .iter()
            .all(|i| i.failure.is_none() && i.processing_time.is_some())
    );
    assert_eq!(tc.context().recent_batches().len(), 3);
}

#[test]
fn graceful_stop_processes_what_arrived_since_the_last_batch() {
    let (ssc, clock) = manual(Seconds(1));
    let q = Queue::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    ssc.queue_stream(&q, false)
        .foreach_batch(move |b, _| sink.lock().unwrap().extend(b.collect()))
        .unwrap();
    ssc.start().unwrap();
    clock.advance(Seconds(1));
    assert!(ssc.await_batches(1, Seconds(10)));
    q.push(vec![7, 8]); // arrives mid-interval, before the next batch is due
    ssc.stop_gracefully();
    assert_eq!(*seen.lock().unwrap(), vec![7, 8]);
}

#[test]
fn run_to_completion_needs_a_fresh_context() {
    let (ssc, _) = manual(Seconds(1));
    ssc.queue_stream(&Queue::<i32>::new(), true)
        .foreach_batch(|_, _| ())
        .unwrap();
    ssc.start().unwrap();
    let err = ssc.run_to_completion().unwrap_err();
    assert!(err.to_string().contains("already running"), "{err}");
    ssc.stop();
    assert!(ssc.run_to_completion().is_err());
}

#[test]
fn a_panicking_listener_does_not_stop_the_scheduler() {
    struct Boom;
    impl StreamingListener for Boom {
        fn on_batch_started(&self, _: &BatchInfo) {
            panic!("listener bug");
        }
        fn on_batch_completed(&self, _: &BatchInfo) {
            panic!("listener bug");
        }
    }
    let ssc = StreamingContext::builder(Seconds(1))
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    ssc.add_streaming_listener(Arc::new(Boom));
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    let lines = ssc.iterator_stream(0..10, 3);
    lines
        .foreach_batch(move |b, _| sink.lock().unwrap().extend(b.collect()))
        .unwrap();
    ssc.run_to_completion().unwrap();
    assert_eq!(*out.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

#[test]
fn stop_from_code_running_on_the_worker_pool_does_not_deadlock() {
    let (ssc, clock) = manual(Seconds(1));
    let q = Queue::new();
    q.push((0..1000).collect::<Vec<i32>>());
    let handle = ssc.clone();
    ssc.queue_stream(&q, true)
        .foreach_batch(move |b, _| {
            b.foreach(|x| {
                if x == 999 {
                    handle.stop()
                }
            })
        })
        .unwrap();
    ssc.start().unwrap();
    clock.advance(Seconds(1));
    assert!(ssc.await_termination_or_timeout(Seconds(10)).unwrap());
}

#[test]
fn deeply_shared_graphs_are_walked_once_per_node() {
    let tc = TestContext::new();
    let mut s = tc.input_stream(vec![vec![1]]);
    // 40 levels of two children joined again: 2^40 paths to the input, 81 nodes, and the data
    // stays one record (the left side is kept).
    for _ in 0..40 {
        s = s.transform_with(&s.map(|x| x), |a, _b| a);
    }
    let started = std::time::Instant::now();
    let out = tc.collect(&s.count()).unwrap();
    tc.run(1).unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.batches(), vec![vec![1i64]]);
}

/// Spark's `DStream.checkpoint(interval)`: accepted as it is in Spark programs, checked as
/// Spark checks it (issue 23, point 5).
#[test]
fn dstream_checkpoint_is_accepted_and_checked_as_spark_checks_it() {
    let tc = TestContext::new();
    let s = tc.input_stream(vec![vec![1, 2], vec![3]]);
    let kept = tc.collect(&s.checkpoint(Seconds(10))).unwrap();
    let low = s
        .checkpoint(Milliseconds(500))
        .print()
        .unwrap_err()
        .to_string();
    assert!(
        low.contains("has been set to 500 ms which is lower than its slide time (1000 ms)"),
        "{low}"
    );
    let odd = s
        .checkpoint(Milliseconds(2500))
        .print()
        .unwrap_err()
        .to_string();
    assert!(
        odd.contains("which not a multiple of its slide time (1000 ms)"),
        "{odd}"
    );
    tc.run(2).unwrap();
    assert_eq!(kept.batches(), vec![vec![1, 2], vec![3]]);
}

/// Spark's `RDD.saveAsTextFile` on a batch inside `foreach_batch`: a directory per call with a
/// part file per partition and `_SUCCESS`; a directory that exists is an error (issue 23,
/// point 5).
#[test]
fn a_batch_saves_itself_as_a_text_file_inside_foreach_batch() {
    let root = std::env::temp_dir().join(format!("dstream-save-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let tc = TestContext::new();
    let s = tc.input_stream(vec![vec![("a", 1), ("b", 2)], vec![("c", 3)]]);
    let dirs = Arc::new(Mutex::new(Vec::new()));
    let (r, seen) = (root.clone(), dirs.clone());
    s.foreach_batch(move |b, t| {
        let dir = r.join(format!("out-{}", t.millis()));
        b.save_as_text_file(&dir).unwrap();
        let again = b.save_as_text_file(&dir).unwrap_err().to_string();
        assert!(again.contains("already exists"), "{again}");
        seen.lock().unwrap().push(dir);
    })
    .unwrap();
    tc.run(2).unwrap();
    let dirs = dirs.lock().unwrap().clone();
    assert_eq!(dirs.len(), 2);
    let read = |d: &std::path::Path| -> String {
        (0..2)
            .map(|i| std::fs::read_to_string(d.join(format!("part-{i:05}"))).unwrap())
            .collect()
    };
    assert_eq!(read(&dirs[0]), "(a,1)\n(b,2)\n");
    assert_eq!(read(&dirs[1]), "(c,3)\n");
    assert!(dirs[1].join("_SUCCESS").exists());
    let _ = std::fs::remove_dir_all(&root);
}
