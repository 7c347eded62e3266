//! The `hashtags` example, run as a user runs it: real output, Ctrl-C/SIGTERM stopping it
//! gracefully, and bad arguments answered with a clear message.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn example(name: &str) -> PathBuf {
    // Test binaries live in target/<profile>/deps; cargo builds examples in target/<profile>/examples.
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is not built (cargo test builds examples)",
        path.display()
    );
    path
}

/// The blocks of "Popular topics" output: (total, [(tag, count)]).
fn blocks(stdout: &str) -> Vec<(u64, Vec<(String, u64)>)> {
    let mut out = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("Popular topics in last ") {
            let total = rest
                .split('(')
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            out.push((total, Vec::new()));
        } else if let Some((tag, count)) = line
            .strip_suffix(" tweets)")
            .and_then(|l| l.split_once(" ("))
        {
            out.last_mut()
                .expect("a tag line before any header")
                .1
                .push((tag.to_string(), count.parse().unwrap()));
        }
    }
    out
}

#[test]
fn prints_the_top_ten_tags_every_batch() {
    let out = Command::new(example("hashtags"))
        .args([
            "--seconds",
            "3",
            "--batch-ms",
            "250",
            "--rate",
            "8000",
            "--window",
            "2",
            "--slide",
            "1",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let blocks = blocks(&stdout);
    assert!(
        blocks.len() >= 2,
        "expected a block per 1 s slide over 3 s:\n{stdout}"
    );
    for (total, top) in &blocks[1..] {
        assert_eq!(top.len(), 10, "{stdout}");
        assert!(*total >= 10);
        assert!(top.iter().all(|(t, c)| t.starts_with('#') && *c > 0));
        assert!(
            top.windows(2).all(|w| w[0].1 >= w[1].1),
            "not sorted by count: {top:?}"
        );
    }
    assert!(stdout.contains("Popular topics in last 2 seconds ("));
    // A 2 s window of 8000 tweets/s holds far more of the top tag than one 250 ms batch could.
    assert!(blocks[1].1[0].1 > 500, "{stdout}");
}

#[test]
fn sigterm_stops_it_gracefully() {
    let mut child = Command::new(example("hashtags"))
        .args([
            "--batch-ms",
            "200",
            "--rate",
            "5000",
            "--window",
            "2",
            "--slide",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Wait for the first batch to be printed, then ask it to stop as a service manager would.
    loop {
        let line = lines
            .next()
            .expect("the example ended before printing")
            .unwrap();
        if line.starts_with("Popular topics") {
            break;
        }
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the example did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        exit.success(),
        "a graceful stop exits 0, got {exit:?}: {stderr}"
    );
    assert!(
        stderr.contains("stopping the StreamingContext gracefully"),
        "{stderr}"
    );
}

#[test]
fn bad_arguments_get_a_clear_message() {
    let out = Command::new(example("hashtags"))
        .args(["--rate", "fast"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("--rate takes a whole number, not \"fast\"") && stderr.contains("usage:"),
        "{stderr}"
    );
}
