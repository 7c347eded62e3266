//! Sources: queue, socket text, text-file directory, rate, push receivers, iterators, and
//! finite pipelines run as batch jobs.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use dstream::prelude::*;
use dstream::testing::TestContext;
use dstream::{FileStreamOptions, ManualClock};

/// Every batch's time in ms and records, as an output saw them.
type Seen<T> = Arc<Mutex<Vec<(i64, Vec<T>)>>>;

fn records<T: dstream::Data>(s: &DStream<T>) -> Seen<T> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    s.foreach_batch(move |b, t| {
        let r = b.collect();
        sink.lock().unwrap().push((t.millis(), r));
    })
    .unwrap();
    seen
}

/// A context of 1 s batches on a manual clock.
fn manual_context() -> (StreamingContext, ManualClock) {
    let clock = ManualClock::new();
    let ssc = StreamingContext::builder(Seconds(1))
        .clock(clock.clone())
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    (ssc, clock)
}

fn wait_for(what: &str, timeout: StdDuration, mut ok: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(StdDuration::from_millis(20));
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dstream-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn queue_stream_one_at_a_time_all_at_once_and_default() {
    let tc = TestContext::new();
    let q1 = Queue::new();
    let q2 = Queue::new();
    let q3: Queue<i32> = Queue::new();
    for b in [vec![1, 2], vec![3], vec![4, 5]] {
        q1.push(b.clone());
        q2.push(b);
    }
    let one = tc.collect(&tc.context().queue_stream(&q1, true)).unwrap();
    let all = tc.collect(&tc.context().queue_stream(&q2, false)).unwrap();
    let dflt = tc
        .collect(
            &tc.context()
                .queue_stream_with_default(&q3, true, Batch::from(vec![-1])),
        )
        .unwrap();
    tc.run(4).unwrap();
    assert_eq!(one.batches(), vec![vec![1, 2], vec![3], vec![4, 5], vec![]]);
    assert_eq!(
        all.batches(),
        vec![vec![1, 2, 3, 4, 5], vec![], vec![], vec![]]
    );
    assert_eq!(dflt.batches(), vec![vec![-1]; 4]);
}

#[test]
fn socket_text_stream_reads_lines_and_reconnects_after_the_server_restarts() {
    // Reserve a free port, then release it: the receiver starts before any server listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ssc = StreamingContext::builder(Milliseconds(100))
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    let seen = records(&ssc.socket_text_stream("127.0.0.1", port));
    ssc.start().unwrap();
    let all_lines = || {
        seen.lock()
            .unwrap()
            .iter()
            .flat_map(|(_, r)| r.clone())
            .collect::<Vec<String>>()
    };

    std::thread::sleep(StdDuration::from_millis(300)); // the receiver is retrying meanwhile
    for round in 0..2 {
        let server = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let (mut conn, _) = server.accept().unwrap();
        write!(conn, "round {round} a\r\nround {round} b\npartial {round}").unwrap();
        drop(conn); // closing ends the last line; the receiver reconnects
        drop(server);
        let want = [
            format!("round {round} a"),
            format!("round {round} b"),
            format!("partial {round}"),
        ];
        wait_for("socket lines", StdDuration::from_secs(10), || {
            want.iter().all(|w| all_lines().contains(w))
        });
    }
    ssc.stop();
    assert_eq!(
        all_lines(),
        vec![
            "round 0 a",
            "round 0 b",
            "partial 0",
            "round 1 a",
            "round 1 b",
            "partial 1"
        ]
    );
}

/// A line longer than 1 MiB is dropped, never held whole, and reading goes on with the next;
/// a last line without its newline at a clean close is a record, as Spark's `readLine` gives
/// it (issue 24, points 2 and 5). The same for lines as `Text` (issue 21).
#[test]
fn socket_text_stream_drops_an_over_long_line_and_keeps_reading() {
    let want = vec![
        "before".to_string(),
        "after".to_string(),
        "\u{fffd}\u{fffd} not utf-8".to_string(),
        "last, unfinished".to_string(),
    ];
    assert_eq!(over_long_line::<String>(), want);
    assert_eq!(over_long_line::<dstream::text::Text>(), want);
}

/// A started context of 100 ms batches reading lines of `L` from a server of the test's: the
/// context, what it saw, and the server's end of the connection.
fn socket_lines<L: dstream::TextRecord>() -> (StreamingContext, Seen<L>, std::net::TcpStream) {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let ssc = StreamingContext::builder(Milliseconds(100))
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    let seen = records(&ssc.socket_text_stream_of::<L>("127.0.0.1", port, 100_000, 64 << 20));
    ssc.start().unwrap();
    let (conn, _) = server.accept().unwrap();
    (ssc, seen, conn)
}

fn over_long_line<L: dstream::TextRecord + std::fmt::Display>() -> Vec<String> {
    let (ssc, seen, mut conn) = socket_lines::<L>();
    conn.write_all(b"before\n").unwrap();
    let long = vec![b'x'; 3 << 20];
    conn.write_all(&long).unwrap();
    conn.write_all(b"\nafter\n\xff\xfe not utf-8\nlast, unfinished")
        .unwrap();
    drop(conn);
    let all_lines = || {
        seen.lock()
            .unwrap()
            .iter()
            .flat_map(|(_, r)| r.iter().map(|l| l.to_string()))
            .collect::<Vec<String>>()
    };
    wait_for(
        "the lines after the long one",
        StdDuration::from_secs(10),
        || all_lines().contains(&"last, unfinished".to_string()),
    );
    ssc.stop();
    all_lines()
}

/// Lines as `Text` from a socket: those of one read share one buffer (issue 21).
#[test]
fn socket_lines_as_text_share_the_buffer_of_their_read() {
    use dstream::text::Text;
    let (ssc, seen, mut conn) = socket_lines::<Text>();
    let sent: Vec<String> = (0..500).map(|i| format!("line {i} é")).collect();
    conn.write_all((sent.join("\r\n") + "\n").as_bytes())
        .unwrap();
    let all_lines = || {
        seen.lock()
            .unwrap()
            .iter()
            .flat_map(|(_, r)| r.clone())
            .collect::<Vec<Text>>()
    };
    wait_for("500 lines", StdDuration::from_secs(10), || {
        all_lines().len() == 500
    });
    ssc.stop();
    let lines = all_lines();
    assert_eq!(lines, sent);
    // 500 lines of about 10 bytes came in a few reads: far fewer buffers than lines.
    let buffers = 1 + lines
        .windows(2)
        .filter(|w| !w[0].shares_buffer_with(&w[1]))
        .count();
    assert!(buffers < 10, "{buffers} buffers for 500 lines");
}

#[test]
fn text_file_stream_reads_each_new_file_once_and_ignores_hidden_and_old_files() {
    let dir = temp_dir("files");
    std::fs::write(dir.join("old.txt"), "existing\n").unwrap();
    let staging = temp_dir("files-staging");
    let (ssc, clock) = manual_context();
    let seen = records(&ssc.text_file_stream(&dir));
    let with_existing = records(&ssc.text_file_stream_with(
        &dir,
        FileStreamOptions {
            include_existing: true,
            ..FileStreamOptions::default()
        },
    ));
    ssc.start().unwrap();

    let step = |n: u64| {
        clock.advance(Seconds(1));
        assert!(ssc.await_batches(n, Seconds(10)));
    };
    // Written elsewhere, moved in atomically, as Spark requires. `mv` keeps the old mtime.
    std::fs::write(staging.join("a.txt"), "a1\na2\n").unwrap();
    std::fs::write(dir.join(".b.txt.tmp"), "in progress\n").unwrap();
    std::fs::rename(staging.join("a.txt"), dir.join("a.txt")).unwrap();
    step(1);
    step(2); // nothing new: the same file is not read twice
    std::fs::write(staging.join("c.txt"), "c1").unwrap();
    std::fs::rename(staging.join("c.txt"), dir.join("c.txt")).unwrap();
    step(3);
    ssc.stop();
    let got: Vec<Vec<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(
        got,
        vec![
            vec!["a1".to_string(), "a2".into()],
            vec![],
            vec!["c1".into()]
        ]
    );
    let first: Vec<String> = with_existing.lock().unwrap()[0].1.clone();
    assert_eq!(first, vec!["a1", "a2", "existing"]);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&staging).unwrap();
}

#[test]
fn an_unreadable_directory_fails_the_batch_with_its_path_and_recovers() {
    let dir = temp_dir("gone");
    let (ssc, clock) = manual_context();
    let seen = records(&ssc.text_file_stream(&dir));
    ssc.start().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    clock.advance(Seconds(1));
    assert!(ssc.await_batches(1, Seconds(10)));
    let failures = ssc.failures();
    assert_eq!(failures.len(), 1);
    let msg = failures[0].1.to_string();
    assert!(
        msg.starts_with("cannot read") && msg.contains(dir.to_str().unwrap()),
        "{msg}"
    );
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("x"), "back\n").unwrap();
    clock.advance(Seconds(1));
    assert!(ssc.await_batches(2, Seconds(10)));
    ssc.stop();
    assert_eq!(
        seen.lock().unwrap().clone(),
        vec![(2000, vec!["back".to_string()])]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn rate_stream_gives_exact_counts_per_batch() {
    let tc = TestContext::with(Milliseconds(300), 2);
    let out = tc.collect(&tc.context().rate_stream(10)).unwrap();
    tc.run(4).unwrap();
    let b = out.batches();
    // 10/s at 300 ms: 3, 3, 3 then 3 (carry 0.9 s -> 9, 1.2 s -> 12 records in all).
    assert_eq!(b.iter().map(Vec::len).sum::<usize>(), 12);
    assert_eq!(b.concat(), (0..12).collect::<Vec<u64>>());
}

#[test]
fn receiver_buffer_is_bounded_and_loses_nothing() {
    let (ssc, clock) = manual_context();
    let max_buffered = Arc::new(AtomicUsize::new(0));
    let pushed = Arc::new(AtomicUsize::new(0));
    let (m, p) = (max_buffered.clone(), pushed.clone());
    let stream = ssc.receiver_stream("numbers", 10, move |h| {
        for i in 0..1000u32 {
            m.fetch_max(h.buffered(), Ordering::SeqCst);
            if !h.push(i) {
                return;
            }
            p.fetch_add(1, Ordering::SeqCst);
        }
    });
    let seen = records(&stream);
    ssc.start().unwrap();
    // With the clock stopped nothing is consumed: the producer must block at the capacity.
    wait_for(
        "the receiver to fill its buffer",
        StdDuration::from_secs(10),
        || pushed.load(Ordering::SeqCst) >= 10,
    );
    std::thread::sleep(StdDuration::from_millis(200));
    assert_eq!(
        pushed.load(Ordering::SeqCst),
        10,
        "push did not block on a full buffer"
    );
    let mut n = 0;
    while pushed.load(Ordering::SeqCst) < 1000 {
        n += 1;
        clock.advance(Seconds(1));
        assert!(ssc.await_batches(n, Seconds(10)));
    }
    ssc.stop_gracefully();
    assert!(max_buffered.load(Ordering::SeqCst) <= 10);
    let all: Vec<u32> = seen
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, r)| r.clone())
        .collect();
    assert_eq!(
        all,
        (0..1000).collect::<Vec<_>>(),
        "records lost or reordered"
    );
}

#[test]
fn finite_inputs_run_as_a_batch_job_and_stop_by_themselves() {
    let dir = temp_dir("batchjob");
    std::fs::write(dir.join("1.txt"), "#rust is fast\n#spark is #rust\n").unwrap();
    std::fs::write(dir.join("2.txt"), "no tags here\n#rust").unwrap();
    // The same pipeline code over a directory of existing files and over an iterator.
    fn tag_counts(lines: DStream<String>) -> DStream<(String, i64)> {
        lines
            .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .filter(|w| w.starts_with('#'))
            .count_by_value()
    }
    let ssc = StreamingContext::new(Seconds(1)).unwrap();
    let from_files = records(&tag_counts(ssc.text_files(&dir)));
    let lines = vec!["#a b".to_string(), "#a #b".into(), "c".into()];
    let from_iter = records(&tag_counts(ssc.iterator_stream(lines.into_iter(), 2)));
    let started = Instant::now();
    ssc.run_to_completion().unwrap();
    assert!(
        started.elapsed() < StdDuration::from_secs(5),
        "a batch job must not wait for the clock"
    );
    assert_eq!(ssc.state(), dstream::StreamingContextState::Stopped);
    let mut files: Vec<(String, i64)> = from_files
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, r)| r.clone())
        .collect();
    files.sort();
    assert_eq!(files, vec![("#rust".to_string(), 3), ("#spark".into(), 1)]);
    let per_batch: Vec<Vec<(String, i64)>> = from_iter
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| {
            let mut r = r.clone();
            r.sort();
            r
        })
        .collect();
    assert_eq!(per_batch[0], vec![("#a".to_string(), 2), ("#b".into(), 1)]);
    assert!(per_batch[1..].iter().all(Vec::is_empty));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn save_as_text_files_writes_one_directory_per_batch_as_spark_names_them() {
    let dir = temp_dir("save");
    let tc = TestContext::new();
    let s = tc.input_stream(vec![vec!["a", "b", "a"], vec![], vec!["c"]]);
    s.map(|w| (w.to_string(), 1))
        .reduce_by_key(|a, b| a + b)
        .save_as_text_files(dir.join("counts").to_str().unwrap(), "txt")
        .unwrap();
    tc.run(3).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["counts-1000.txt", "counts-2000.txt", "counts-3000.txt"]
    );
    let read = |name: &str| {
        let mut lines = Vec::new();
        for e in std::fs::read_dir(dir.join(name)).unwrap() {
            let p = e.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("part-")
            {
                lines.extend(
                    std::fs::read_to_string(p)
                        .unwrap()
                        .lines()
                        .map(str::to_string),
                );
            }
        }
        lines.sort();
        assert!(dir.join(name).join("_SUCCESS").exists());
        lines
    };
    assert_eq!(read("counts-1000.txt"), vec!["(a,2)", "(b,1)"]);
    assert!(read("counts-2000.txt").is_empty());
    assert_eq!(read("counts-3000.txt"), vec!["(c,1)"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_failing_receiver_keeps_what_it_pushed_and_the_pipeline_goes_on() {
    let tc = TestContext::new();
    let s = tc.context().receiver_stream("flaky", 100, |h| {
        h.push(1);
        h.push(2);
        panic!("device unplugged");
    });
    let out = tc.collect(&s).unwrap();
    // Give the receiver thread time to push and fail before the batch is captured.
    let started = std::thread::spawn(|| std::thread::sleep(StdDuration::from_millis(200)));
    tc.context().start().unwrap();
    started.join().unwrap();
    tc.clock().advance(Seconds(2));
    assert!(tc.context().await_batches(2, Seconds(10)));
    tc.context().stop();
    assert_eq!(out.batches(), vec![vec![1, 2], vec![]]);
}

#[test]
fn a_finite_input_that_cannot_be_read_fails_and_the_job_still_ends() {
    let ssc = StreamingContext::builder(Seconds(1))
        .stop_gracefully_on_signal(false)
        .build()
        .unwrap();
    let missing = std::env::temp_dir().join(format!("dstream-no-such-dir-{}", std::process::id()));
    ssc.text_files(&missing).foreach_batch(|_, _| ()).unwrap();
    let err = ssc.run_to_completion().unwrap_err();
    assert!(
        err.to_string().contains("cannot read") && err.to_string().contains("dstream-no-such-dir"),
        "{err}"
    );
    assert_eq!(ssc.state(), dstream::StreamingContextState::Stopped);
}

/// Issue 21: the file source's lines as `Text`, sharing each file's buffer, through words,
/// windows with an inverse and state (keys in RocksDB and its cache) give what `String` lines
/// give.
#[test]
fn text_lines_share_their_file_and_count_as_string_lines_do() {
    use dstream::text::{self, Text};
    let dir = temp_dir("text-records");
    let input = temp_dir("text-records-in");
    std::fs::write(input.join("1.txt"), "#rust is fast\r\n#spark is #rust\n").unwrap();
    std::fs::write(input.join("2.txt"), "no tags here\n#rust é #dstream").unwrap();
    macro_rules! counts {
        ($ty:ty, $name:literal) => {{
            let ssc = StreamingContext::builder(Seconds(1))
                .checkpoint(dir.join($name))
                .build()
                .unwrap();
            let lines = ssc.text_files_of::<$ty>(&input);
            let words = lines.flat_map(|l: $ty| text::split(l, ' ').collect::<Vec<$ty>>());
            let pairs = words.map(|w| (w, 1i64));
            let windowed = pairs
                .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, Seconds(2), Seconds(1))
                .map(|(k, v)| (k.to_string(), v));
            let totals = pairs
                .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| {
                    Some(s.unwrap_or(0) + vs.iter().sum::<i64>())
                })
                .map(|(k, v)| (k.to_string(), v));
            let seen = (records(&windowed), records(&totals), records(&lines));
            ssc.run_to_completion().unwrap();
            seen
        }};
    }
    let (text_windows, text_totals, text_lines) = counts!(Text, "text");
    let (string_windows, string_totals, string_lines) = counts!(String, "string");
    let sorted = |s: &Seen<(String, i64)>| {
        let mut v: Vec<(i64, Vec<(String, i64)>)> = s.lock().unwrap().clone();
        v.iter_mut().for_each(|(_, r)| r.sort());
        v.into_iter().map(|(_, r)| r).collect::<Vec<_>>()
    };
    assert_eq!(sorted(&text_windows), sorted(&string_windows));
    assert_eq!(sorted(&text_totals), sorted(&string_totals));
    let totals = sorted(&text_totals);
    assert!(totals[0].contains(&("#rust".to_string(), 3)), "{totals:?}");
    assert!(totals[0].contains(&("é".to_string(), 1)), "{totals:?}");
    // The same lines; those of one file share its buffer.
    let lines: Vec<Text> = text_lines.lock().unwrap()[0].1.clone();
    let strings: Vec<String> = string_lines.lock().unwrap()[0].1.clone();
    assert_eq!(lines, strings);
    assert_eq!(lines[0], "#rust is fast");
    assert!(lines[0].shares_buffer_with(&lines[1]));
    assert!(!lines[0].shares_buffer_with(&lines[2]));
    for d in [dir, input] {
        std::fs::remove_dir_all(d).unwrap();
    }
}
