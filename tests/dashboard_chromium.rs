//! The dashboard as a user sees it: the `clickstream` example runs with `--serve`, headless
//! Chromium (Debian's `chromium`, no GPU, no network beyond 127.0.0.1) opens the page, the test
//! waits through the DevTools protocol until the live charts show a non-zero input rate and the
//! batch table has filled, and takes a screenshot (`target/tmp/dashboard.png`; with
//! `DSTREAM_UPDATE_SCREENSHOT=1` also `docs/dashboard.png`, the README's picture).
//!
//! Chromium is installed by `.ci/run`; elsewhere, without it, the test says so and passes
//! (under `CI` it fails).

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::Message;

/// Kills the process when dropped (a failed test leaves nothing running).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> Option<PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join(name))
                    .find(|p| p.is_file())
            })
        })
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    // Chromium keeps the connection open: read the head, then Content-Length bytes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "the DevTools server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if body.len() >= len {
                return body.to_string();
            }
        }
    }
}

/// A DevTools protocol session with one page.
struct Cdp {
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next: u64,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        let started = Instant::now();
        loop {
            self.next += 1;
            let id = self.next;
            let msg = json!({"id": id, "method": method, "params": params}).to_string();
            self.ws.send(Message::text(msg)).unwrap();
            let v = loop {
                if let Message::Text(t) = self.ws.read().unwrap() {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["id"] == json!(id) {
                        break v;
                    }
                }
            };
            // A page still loading (a slow machine) has no execution context yet: ask again.
            let loading = v["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Cannot find default execution context"));
            if loading && started.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            assert!(v.get("error").is_none(), "{method}: {v}");
            return v["result"].clone();
        }
    }

    /// Evaluates `expr` in the page; the whole answer (its value, or the exception).
    fn evaluate(&mut self, expr: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        )
    }

    /// Evaluates `expr` in the page; its value.
    fn eval(&mut self, expr: &str) -> Value {
        self.evaluate(expr)["result"]["value"].clone()
    }
}

/// Decodes standard base64 (the screenshot).
fn base64(text: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= u32::from(val(*c)) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// What the page shows now.
const PROBE: &str = r##"JSON.stringify({
  live: document.getElementById("conn").textContent,
  points: Number(document.getElementById("chart-rate").dataset.points || 0),
  maxRate: Number(document.getElementById("chart-rate").dataset.max || 0),
  procPoints: Number(document.getElementById("chart-proc").dataset.points || 0),
  rows: [...document.querySelectorAll("#batches tbody tr")].filter(r => !r.querySelector(".empty")).length,
  firstRow: (document.querySelector("#batches tbody tr") || {}).innerText || "",
  operators: document.querySelectorAll("#operators tbody tr td:nth-child(2)").length,
  states: [...document.querySelectorAll("#state tbody tr")].filter(r => !r.querySelector(".empty")).length,
  feeds: [...document.querySelectorAll("#feeds tbody tr td:first-child")].map(td => td.textContent),
  results: [...document.querySelectorAll("#result-cards .result")].map(c => [c.id, c.dataset.kind || "", Number(c.dataset.records || 0)]),
  bars: document.querySelectorAll("#result-cards .hbar").length,
})"##;

#[test]
fn headless_chromium_sees_live_charts_and_the_batch_table() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed (.ci/run installs it)"
        );
        eprintln!("skipped: no chromium on PATH (apt install chromium)");
        return;
    };
    let mut app = Command::new(support::example("clickstream"))
        .args([
            "--serve",
            "--addr",
            "127.0.0.1:0",
            "--rate",
            "3000",
            "--batch-ms",
            "500",
        ])
        .args(["--window", "10", "--slide", "1", "--seconds", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = app.stdout.take().unwrap();
    let _app = Killed(app);
    let mut lines = BufReader::new(stdout).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("Dashboard: ").map(str::to_string))
        .expect("the example prints its dashboard's URL");
    // Keep reading what it prints, so that it never writes into a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));

    let profile = std::env::temp_dir().join(format!("dstream-chromium-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&profile);
    let chrome = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--window-size=1400,1180",
            "--remote-debugging-port=0",
            // No network: every name but the loopback address fails to resolve.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(&url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _chrome = Killed(chrome);

    // Chromium writes its DevTools port into the profile.
    let started = Instant::now();
    let port: u16 = loop {
        if let Ok(text) = std::fs::read_to_string(profile.join("DevToolsActivePort"))
            && let Some(Ok(p)) = text.lines().next().map(str::parse)
        {
            break p;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "chromium did not start"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let page = loop {
        let list: Value = serde_json::from_str(&http_get(port, "/json/list")).unwrap();
        let found = list.as_array().and_then(|l| {
            l.iter()
                .find(|t| {
                    t["type"] == "page" && t["url"].as_str().is_some_and(|u| u.starts_with(&url))
                })
                .map(|t| t["webSocketDebuggerUrl"].as_str().unwrap().to_string())
        });
        if let Some(ws) = found {
            break ws;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no page for {url}: {list}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (ws, _) = tungstenite::connect(page.as_str()).unwrap();
    let mut cdp = Cdp { ws, next: 0 };

    // Wait for live data: a few batches in the table, a non-zero input rate on the chart.
    let waiting = Instant::now();
    let mut loaded = Instant::now();
    let seen = loop {
        let raw = cdp.evaluate(PROBE);
        let seen: Value =
            serde_json::from_str(raw["result"]["value"].as_str().unwrap_or("{}")).unwrap();
        let results_shown = seen["results"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|c| c[2].as_u64() > Some(0)));
        if seen["rows"].as_u64() >= Some(8) && seen["maxRate"].as_f64() > Some(0.0) && results_shown
        {
            break seen;
        }
        if waiting.elapsed() >= Duration::from_secs(90) {
            let page = cdp.eval("location.href + ' ' + document.readyState + ' ' + document.title");
            panic!("the dashboard did not fill: {seen}; the page: {page}; the probe: {raw}");
        }
        // Not the dashboard after 15 s (a first load that failed, on a loaded machine): load
        // it again.
        if raw["result"]["value"].is_null() && loaded.elapsed() >= Duration::from_secs(15) {
            cdp.call("Page.navigate", json!({"url": url}));
            loaded = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(seen["live"], json!("live"), "{seen}");
    // 3000 views/s: the chart's points are input rates of about that.
    let max_rate = seen["maxRate"].as_f64().unwrap();
    assert!((2000.0..=4000.0).contains(&max_rate), "{seen}");
    assert!(
        seen["points"].as_u64() >= Some(8) && seen["procPoints"].as_u64() >= Some(8),
        "{seen}"
    );
    assert!(
        seen["firstRow"].as_str().unwrap().contains("succeeded"),
        "{seen}"
    );
    assert!(seen["operators"].as_u64() >= Some(15), "{seen}");
    assert_eq!(seen["states"], json!(2), "two windows keep state: {seen}");
    assert_eq!(seen["feeds"], json!(["page-views", "top-pages"]), "{seen}");
    // The results view: both feeds carry (key, number) pairs, drawn as bars; the page views
    // are two ("all", "humans"), the top pages ten at most.
    let results = seen["results"].as_array().unwrap();
    assert_eq!(results[0][0], json!("result-page-views"), "{seen}");
    assert_eq!(results[0][1], json!("bars"), "{seen}");
    assert_eq!(results[0][2], json!(2), "{seen}");
    assert_eq!(results[1][0], json!("result-top-pages"), "{seen}");
    assert_eq!(results[1][1], json!("bars"), "{seen}");
    assert!(
        (1..=10).contains(&results[1][2].as_u64().unwrap()),
        "{seen}"
    );
    assert_eq!(
        seen["bars"].as_u64(),
        Some(2 + results[1][2].as_u64().unwrap()),
        "{seen}"
    );

    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 30_000,
        "a {} byte screenshot is too plain",
        png.len()
    );
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::write(dir.join("dashboard.png"), &png).unwrap();
    if std::env::var_os("DSTREAM_UPDATE_SCREENSHOT").is_some() {
        std::fs::write(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/dashboard.png"),
            &png,
        )
        .unwrap();
    }
    let _ = std::fs::remove_dir_all(&profile);
}
