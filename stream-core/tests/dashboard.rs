//! The dashboard's HTTP endpoints and WebSocket feeds, used as a client would: a WebSocket
//! client on a feed receives each batch as JSON; `/ws` sends the status live; `/metrics` is
//! Prometheus text; `/api/status` JSON.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};
use stream_core::Dashboard;
use stream_core::testing::TestContext;
use tungstenite::Message;

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn connect(url: &str) -> Ws {
    let (ws, _) = tungstenite::connect(url).unwrap_or_else(|e| panic!("connect {url}: {e}"));
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    ws
}

/// The next text message, as JSON.
fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws.read().expect("a message before the timeout") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(_) => panic!("the server closed the WebSocket"),
            _ => {}
        }
    }
}

/// A plain HTTP GET: status code and body.
fn get(d: &Dashboard, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(d.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// Asserts that each of `lines` is a line of the `/metrics` text `metrics`.
fn assert_metrics<S: AsRef<str>>(metrics: &str, lines: impl IntoIterator<Item = S>) {
    for line in lines {
        let line = line.as_ref();
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in\n{metrics}"
        );
    }
}

/// `/api/status`, as JSON.
fn status(d: &Dashboard) -> Value {
    serde_json::from_str(&get(d, "/api/status").1).unwrap()
}

#[test]
fn a_websocket_client_receives_every_batch_as_json() {
    let tc = TestContext::new();
    let dashboard = tc.context().serve_dashboard("127.0.0.1:0").unwrap();
    let words = tc.input_stream(vec![vec!["a", "b", "a"], vec!["c"], vec![]]);
    let counts = words
        .map(|w: &str| (w.to_string(), 1))
        .reduce_by_key(|a, b| a + b);
    counts.save_to_websocket(&dashboard, "counts").unwrap();
    let mut feed = connect(&dashboard.feed_url("counts"));
    tc.run(3).unwrap();

    let mut got = Vec::new();
    for _ in 0..3 {
        let mut m = next_json(&mut feed);
        // Records come in partition order; sort them to compare.
        m["records"]
            .as_array_mut()
            .unwrap()
            .sort_by_key(|r| r[0].as_str().unwrap().to_string());
        got.push(m);
    }
    assert_eq!(
        got,
        vec![
            json!({"feed": "counts", "time": 1000, "count": 2, "records": [["a", 2], ["b", 1]]}),
            json!({"feed": "counts", "time": 2000, "count": 1, "records": [["c", 1]]}),
            json!({"feed": "counts", "time": 3000, "count": 0, "records": []}),
        ]
    );
    let stats = dashboard.feeds();
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].messages, stats[0].dropped), (3, 0));
}

#[test]
fn the_status_websocket_and_endpoints_report_the_batches() {
    let tc = TestContext::new();
    let dashboard = tc.context().serve_dashboard("127.0.0.1:0").unwrap();
    let words = tc.input_stream(vec![vec!["x", "y"], vec!["z", "x", "x"]]);
    let state = words
        .map(|w: &str| (w.to_string(), 1))
        .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| Some(s.unwrap_or(0) + vs.len() as i64));
    state.foreach_batch(|_, _| ()).unwrap();
    let mut status = connect(&format!("ws://{}/ws", dashboard.addr()));
    // The status on connection: nothing completed yet.
    assert_eq!(next_json(&mut status)["batches_completed"], json!(0));
    tc.run(2).unwrap();
    let first = next_json(&mut status);
    assert_eq!(first["batches_completed"], json!(1));
    let second = next_json(&mut status);
    assert_eq!(second["batches_completed"], json!(2));
    assert_eq!(second["records_total"], json!(5));
    assert_eq!(second["batches"][1]["records"], json!(3));
    assert_eq!(second["state_stores"][0]["keys"], json!(3));
    let ops = second["operators"].as_array().unwrap();
    let names: Vec<&str> = ops.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["testInputStream", "map", "updateStateByKey"]);
    assert_eq!(ops[1]["records_total"], json!(5));

    let (code, page) = get(&dashboard, "/");
    assert_eq!(code, 200);
    assert!(page.contains("<canvas id=\"chart-rate\">"), "{page}");
    let (code, metrics) = get(&dashboard, "/metrics");
    assert_eq!(code, 200);
    assert_metrics(
        &metrics,
        [
            "dstream_batches_completed_total 2",
            "dstream_input_records_total 5",
            "dstream_operator_records_total{id=\"1\",operator=\"map\"} 5",
        ],
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("dstream_state_keys{operator=\"#0 updateStateByKey")
                && l.ends_with(" 3")
        ),
        "{metrics}"
    );
    let (code, json) = get(&dashboard, "/api/status");
    assert_eq!(code, 200);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["batches_completed"], json!(2));
    assert_eq!(get(&dashboard, "/nothing").0, 404);
    assert_eq!(
        get(&dashboard, "/feeds/counts").0,
        426,
        "a feed is a WebSocket"
    );
}

#[test]
fn an_unknown_feed_is_refused_and_a_stopped_dashboard_closes() {
    let tc = TestContext::new();
    let dashboard = tc.context().serve_dashboard("127.0.0.1:0").unwrap();
    let s = tc.input_stream(vec![vec![1, 2]]);
    s.save_to_websocket(&dashboard, "numbers").unwrap();
    assert!(s.save_to_websocket(&dashboard, "a/b").is_err());
    let err = tungstenite::connect(dashboard.feed_url("other")).unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
    let mut ws = connect(&dashboard.feed_url("numbers"));
    dashboard.stop();
    // The server closes the feed's WebSocket, and accepts no more connections.
    let closed = loop {
        match ws.read() {
            Ok(Message::Close(_)) | Err(_) => break true,
            Ok(_) => {}
        }
    };
    assert!(closed);
    std::thread::sleep(Duration::from_millis(200));
    assert!(TcpStream::connect(dashboard.addr()).is_err() || get_fails(&dashboard));
}

/// A request to a stopped dashboard gets no answer or a 503.
fn get_fails(d: &Dashboard) -> bool {
    let Ok(mut s) = TcpStream::connect(d.addr()) else {
        return true;
    };
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = write!(s, "GET / HTTP/1.1\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.is_empty() || text.starts_with("HTTP/1.1 503")
}

#[test]
fn records_dropped_by_an_error_policy_are_on_the_status_and_metrics() {
    let tc = TestContext::new();
    let dashboard = tc.context().serve_dashboard("127.0.0.1:0").unwrap();
    let lines = tc.input_stream(vec![vec!["1", "x", "2"], vec!["y", "3"]]);
    let letters = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let l = letters.clone();
    let numbers = lines
        .map(|s: &str| s.parse::<i64>().expect("a number"))
        .on_record_error(stream_core::RecordErrors::dead_letter(move |d| {
            l.lock().unwrap().push(d.record_text())
        }));
    let sums = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = sums.clone();
    numbers
        .foreach_batch(move |b, _| s.lock().unwrap().push(b.collect().iter().sum::<i64>()))
        .unwrap();
    let report = tc.run(2).unwrap();
    assert_eq!(*sums.lock().unwrap(), vec![3, 3]);
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(*letters.lock().unwrap(), vec!["x", "y"]);

    let (_, metrics) = get(&dashboard, "/metrics");
    assert_metrics(
        &metrics,
        [
            "dstream_records_skipped_total{operator=\"map#1\"} 2",
            "dstream_dead_letters_total{operator=\"map#1\"} 2",
        ],
    );
    assert_eq!(
        status(&dashboard)["record_errors"],
        json!([{"operator": "map#1", "skipped": 2, "dead_lettered": 2}])
    );
}

/// A receiver's buffer, the socket's warnings not logged, and its over-long lines dropped are
/// on `/metrics` and in the status.
#[test]
fn a_socket_s_buffer_and_dropped_lines_are_on_the_metrics() {
    use std::io::Write;
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let sender = std::thread::spawn(move || {
        let (mut conn, _) = server.accept().unwrap();
        let long = format!("{}\n", "x".repeat(1_200_000));
        // Two lines over 1 MiB (the second's warning is not logged), then three lines.
        conn.write_all(long.as_bytes()).unwrap();
        conn.write_all(long.as_bytes()).unwrap();
        conn.write_all(b"one\ntwo\nthree\n").unwrap();
        std::thread::sleep(Duration::from_secs(5));
    });
    let tc = TestContext::new();
    let ssc = tc.context();
    let dashboard = ssc.serve_dashboard("127.0.0.1:0").unwrap();
    ssc.socket_text_stream("127.0.0.1", port)
        .foreach_batch(|b, _| drop(b.collect()))
        .unwrap();
    // Started, but the test clock does not move: the lines wait in the receiver's buffer.
    ssc.start().unwrap();
    let input = format!("socketTextStream(127.0.0.1:{port})");
    let started = std::time::Instant::now();
    let metrics = loop {
        let (_, m) = get(&dashboard, "/metrics");
        if m.contains(&format!(
            "dstream_input_buffered_records{{input=\"{input}\"}} 3"
        )) {
            break m;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{m}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_metrics(
        &metrics,
        [
            format!("dstream_input_buffered_bytes{{input=\"{input}\"}} 11"),
            format!("dstream_input_warnings_suppressed_total{{input=\"{input}\"}} 1"),
            format!("dstream_records_skipped_total{{operator=\"{input} lines over 1 MiB\"}} 2"),
        ],
    );
    assert_eq!(
        status(&dashboard)["input_buffers"],
        json!([{"input": input, "records": 3, "bytes": 11, "warnings_suppressed": 1}])
    );
    ssc.stop();
    sender.join().unwrap();
}
