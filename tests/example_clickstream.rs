//! The `clickstream` example, run as a user runs it: page views per batch with bots filtered,
//! the top pages and the unique visitors of the window; Ctrl-C stops it gracefully.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

/// (all, by people, filtered) of each "page views" line.
fn tallies(stdout: &str) -> Vec<(u64, u64, u64)> {
    stdout
        .lines()
        .filter(|l| l.contains(" page views, "))
        .map(|l| {
            let nums: Vec<u64> = l.split([' ', '(']).filter_map(|w| w.parse().ok()).collect();
            (nums[0], nums[1], nums[2])
        })
        .collect()
}

#[test]
fn prints_page_views_top_pages_and_unique_visitors() {
    let out = support::run_example(
        "clickstream",
        &[
            "--seconds",
            "4",
            "--batch-ms",
            "250",
            "--rate",
            "4000",
            "--window",
            "2",
            "--slide",
            "1",
        ],
        Duration::from_secs(60),
    );
    let t = tallies(&out);
    assert!(t.len() >= 12, "a line per 250 ms batch:\n{out}");
    for (all, people, filtered) in &t {
        // 1000 views per batch; 5% crawlers and a 4% scraper go.
        assert_eq!(*all, 1000, "{out}");
        assert_eq!(all - people, *filtered);
        assert!((50..=150).contains(filtered), "{filtered} filtered:\n{out}");
    }
    let blocks: Vec<&str> = out
        .split("Top pages in the last 2 seconds:")
        .skip(1)
        .collect();
    assert!(blocks.len() >= 3, "a top-pages block every second:\n{out}");
    for b in &blocks {
        let counts: Vec<u64> = b
            .lines()
            .filter(|l| l.ends_with(" views"))
            .map(|l| l.split_whitespace().nth(1).unwrap().parse().unwrap())
            .collect();
        assert_eq!(counts.len(), 10, "{b}");
        assert!(
            counts.windows(2).all(|w| w[0] >= w[1]),
            "sorted: {counts:?}"
        );
        assert!(
            b.lines().nth(1).unwrap().trim_start().starts_with("/ "),
            "{b}"
        );
        let visitors: u64 = b
            .lines()
            .find_map(|l| l.strip_prefix("Unique visitors in the last 2 seconds: "))
            .expect("a unique visitors line")
            .parse()
            .unwrap();
        // About 7000 human views over 2 s from a pool of 8000 drifting visitors.
        assert!((1000..=8000).contains(&visitors), "{visitors}");
    }
}

#[test]
fn ctrl_c_stops_it_gracefully() {
    let mut child = Command::new(support::example("clickstream"))
        .args(["--batch-ms", "200", "--rate", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("page views"), "{first}");
    support::interrupt(child.id());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {rest:?}");
}
