//! The `hashtags` example, run as a user runs it: real output, Ctrl-C/SIGTERM stopping it
//! gracefully, and bad arguments answered with a clear message.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};
use support::{example, run_example};

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

/// Runs the example for 3 s with 250 ms batches and a 2 s window sliding every second, plus
/// `args`; returns what it printed.
fn run_for_3s(args: &[&str]) -> String {
    let out = Command::new(example("hashtags"))
        .args([
            "--seconds",
            "3",
            "--batch-ms",
            "250",
            "--window",
            "2",
            "--slide",
            "1",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn prints_the_top_ten_tags_every_batch() {
    let stdout = run_for_3s(&["--rate", "8000"]);
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
    // The status line, on stderr while it ran.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("[dstream] batch ") && l.contains(" records (")),
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
        stderr.contains("invalid value 'fast' for '--rate <TWEETS_PER_SECOND>'")
            && stderr.contains("--help"),
        "{stderr}"
    );
}

/// A Kafka-protocol broker: `KAFKA_BROKERS`, or tansu started by `scripts/kafka-broker.sh` in a
/// directory of this test (stopped when the test ends, or by itself after two minutes).
struct Broker {
    brokers: String,
    own: Option<PathBuf>,
}

impl Broker {
    fn get() -> Broker {
        if let Ok(b) = std::env::var("KAFKA_BROKERS")
            && !b.is_empty()
        {
            return Broker {
                brokers: b,
                own: None,
            };
        }
        // A directory per broker: the tests of this file run at once, and a second copy of
        // the binary onto one that runs fails ("Text file busy").
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "dstream-example-kafka-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-broker.sh");
        // The binary is fetched once, into the repository's target/kafka.
        let bin = Command::new("bash")
            .arg(&script)
            .arg("install")
            .output()
            .unwrap();
        assert!(
            bin.status.success(),
            "{}",
            String::from_utf8_lossy(&bin.stderr)
        );
        let bin = PathBuf::from(String::from_utf8(bin.stdout).unwrap().trim());
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::copy(&bin, dir.join("bin/tansu")).unwrap();
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .env("DSTREAM_KAFKA_DIR", &dir)
            .env("BROKER_TTL", "120")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let brokers = stdout
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_BROKERS="))
            .expect("the script prints the address")
            .to_string();
        Broker {
            brokers,
            own: Some(dir),
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(dir) = &self.own {
            let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/kafka-broker.sh");
            let _ = Command::new("bash")
                .arg(&script)
                .arg("stop")
                .env("DSTREAM_KAFKA_DIR", dir)
                .output();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn reads_tweets_from_a_kafka_topic() {
    let broker = Broker::get();
    let topic = format!("example-tweets-{}", std::process::id());
    dstream::kafka::admin::create_topic(&broker.brokers, &topic, 2).unwrap();
    // Tags #k1..#k12, #k1 in 12 tweets down to #k12 in 1.
    let mut tweets = Vec::new();
    for k in 1..=12u32 {
        for i in 0..(13 - k) {
            tweets.push(dstream::kafka::OutRecord::new(format!(
                "tweet {i} about #k{k} today"
            )));
        }
    }
    dstream::kafka::admin::produce(&broker.brokers, &topic, tweets).unwrap();
    let stdout = run_for_3s(&["--kafka", &broker.brokers, "--topic", &topic]);
    let expected: Vec<(String, u64)> = (1..=10u64).map(|k| (format!("#k{k}"), 13 - k)).collect();
    assert!(
        blocks(&stdout)
            .iter()
            .any(|(total, top)| *total == 12 && *top == expected),
        "no window showed the topic's 12 tags with their counts:\n{stdout}"
    );
}

/// Scale-out: two instances of the example share the topic's 6 partitions; the tags' counts
/// meet in one task per tag (`repartitionByKey`) and the top 10 in the first task (`global`),
/// so the instance that runs it prints the top 10 one process prints for the same tweets.
/// On a real Kafka broker when `DSTREAM_REAL_KAFKA` names one (CI starts it), else on the
/// test broker.
#[test]
fn scaled_out_instances_print_the_top_ten_of_one_process() {
    let local;
    let brokers = match std::env::var("DSTREAM_REAL_KAFKA") {
        Ok(b) if !b.is_empty() => b,
        _ => {
            local = Broker::get();
            local.brokers.clone()
        }
    };
    let topic = format!("example-scaled-{}", std::process::id());
    dstream::kafka::admin::create_topic(&brokers, &topic, 6).unwrap();
    // #k1 in 24 tweets down to #k12 in 2, each tweet keyed on its own (spread over partitions).
    let mut tweets = Vec::new();
    for k in 1..=12u32 {
        for i in 0..(26 - 2 * k) {
            tweets.push(
                dstream::kafka::OutRecord::new(format!("tweet {i} about #k{k} today"))
                    .key(format!("{k}-{i}")),
            );
        }
    }
    dstream::kafka::admin::produce(&brokers, &topic, tweets).unwrap();
    let expected: Vec<(String, u64)> = (1..=10u64)
        .map(|k| (format!("#k{k}"), 26 - 2 * k))
        .collect();

    // One process.
    let one = run_example(
        "hashtags",
        &[
            "--kafka",
            &brokers,
            "--topic",
            &topic,
            "--seconds",
            "4",
            "--batch-ms",
            "500",
            "--window",
            "30",
            "--slide",
            "1",
        ],
        Duration::from_secs(60),
    );
    let last_one = blocks(&one).pop().expect("one process printed a top 10");
    assert_eq!(last_one, (12, expected.clone()), "{one}");

    // Two instances of application `app`, each with its own state directory.
    let app = format!("example-app-{}", std::process::id());
    let dirs: Vec<PathBuf> = (0..2)
        .map(|i| std::env::temp_dir().join(format!("{app}-{i}")))
        .collect();
    let start = |dir: &PathBuf| {
        Command::new(example("hashtags"))
            .args([
                "--kafka",
                &brokers,
                "--topic",
                &topic,
                "--app",
                &app,
                "--checkpoint",
            ])
            .arg(dir)
            .args(["--batch-ms", "500", "--window", "60", "--slide", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Each instance's output as it comes.
    let collect = |child: &mut std::process::Child| {
        let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let text = text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut t = text.lock().unwrap();
                    t.push_str(&line);
                    t.push('\n');
                }
            });
        }
        text
    };
    let mut first = start(&dirs[0]);
    let first_out = collect(&mut first);
    std::thread::sleep(Duration::from_secs(3));
    let mut second = start(&dirs[1]);
    let second_out = collect(&mut second);
    let outputs = [first_out, second_out];
    let both_ran = || {
        outputs
            .iter()
            .all(|o| o.lock().unwrap().contains("this instance runs tasks [\""))
    };
    // Once both run tasks, the instance running the first task prints the top 10 of every
    // tweet, as one process does.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut agreed = false;
    while Instant::now() < deadline && !agreed {
        std::thread::sleep(Duration::from_millis(500));
        agreed = both_ran()
            && outputs.iter().any(|o| {
                blocks(&o.lock().unwrap())
                    .last()
                    .is_some_and(|b| *b == (12, expected.clone()))
            });
    }
    for mut c in [first, second] {
        support::interrupt(c.id());
        let _ = c.wait();
    }
    for d in &dirs {
        let _ = std::fs::remove_dir_all(d);
    }
    assert!(
        agreed,
        "within 120 s, both instances ran tasks and one printed the top 10 one process prints ({last_one:?}):\n{}\n---\n{}",
        outputs[0].lock().unwrap(),
        outputs[1].lock().unwrap()
    );
}
