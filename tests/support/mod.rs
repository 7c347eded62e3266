//! What the example and DSL tests share.

// Each test binary uses part of this module.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The built example `name` (`cargo test` builds the examples).
pub fn example(name: &str) -> PathBuf {
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

/// Runs example `name` with `args` to completion; returns stdout, after checking it exited
/// with success within `limit`.
pub fn run_example(name: &str, args: &[&str], limit: Duration) -> String {
    let child = Command::new(example(name))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let out = match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{name} {args:?} did not finish within {limit:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Sends SIGINT (Ctrl-C) to a process.
pub fn interrupt(pid: u32) {
    let ok = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -INT {pid}");
}

/// The talks' `getTags(status)`: the hashtags of a tweet.
pub fn get_tags(status: &str) -> Vec<String> {
    status
        .split(' ')
        .filter(|w| w.starts_with('#'))
        .map(str::to_string)
        .collect()
}
