//! The `sessions` example, run as a user runs it: live sessions with returning visitors flagged
//! by the join with the history, and closed sessions with their pages and duration.

mod support;

use std::time::Duration;

#[test]
fn prints_live_sessions_and_closed_ones() {
    let out = support::run_example(
        "sessions",
        &[
            "--seconds",
            "6",
            "--batch-ms",
            "250",
            "--rate",
            "2000",
            "--arrivals",
            "50",
            "--stay",
            "3",
            "--idle",
            "1",
        ],
        Duration::from_secs(60),
    );
    let live: Vec<(u64, u64)> = out
        .lines()
        .filter_map(|l| l.split_once(": ")?.1.strip_suffix(" of returning visitors"))
        .map(|l| {
            let (all, returning) = l.split_once(" live sessions, ").unwrap();
            (all.parse().unwrap(), returning.parse().unwrap())
        })
        .collect();
    assert!(live.len() >= 18, "a line per 250 ms batch:\n{out}");
    let (all, returning) = *live.last().unwrap();
    // 50 visitors a second staying 1 to 3 s: about 100 live; a third of them came before.
    assert!((40..=200).contains(&all), "{all} live:\n{out}");
    assert!(
        returning > 0 && returning < all,
        "{returning} of {all}:\n{out}"
    );

    let closed: u64 = out
        .lines()
        .filter_map(|l| l.trim().split_once(" sessions closed (idle 1 s)"))
        .map(|(n, _)| n.parse::<u64>().unwrap())
        .sum();
    assert!(closed >= 50, "{closed} closed:\n{out}");
    let details: Vec<&str> = out.lines().filter(|l| l.contains(" pages in ")).collect();
    assert!(!details.is_empty());
    for d in &details {
        let pages: u64 = d
            .split("): ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(pages >= 1, "{d}");
        assert!(d.contains("landed on /"), "{d}");
    }
    assert!(
        details.iter().any(|d| d.contains("returning visitor, "))
            && details.iter().any(|d| d.contains("first visit")),
        "{details:#?}"
    );
}
