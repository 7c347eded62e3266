//! The sessions job of the Spark comparison: click lines `"u<user> /p/<page>"` -> (user, 1) ->
//! per-user sessions (events, first and last batch time in ms; a session idle for more than
//! 30 s ends) -> a count per batch, 1 s batches, input from pre-built in-memory batches: five
//! bands of users, each replayed for 8 s of batches in turn (`dstream_bench::BANDS`), so that
//! about 100,000 users have state and a band's sessions end while it is idle. Finds the maximum
//! sustained rate as `stateless` does; each probe first runs 35 s of batches, for every band
//! to have been seen and the first to time out in the measured batches.
//!
//! `--mode update` (default, the Spark job's peer): `update_state_by_key`, the output is the
//! whole state (the live sessions), counted. `--mode mapws` (dstream only): `map_with_state`
//! with a 30 s timeout, which touches only the users with events; the output is the sessions
//! that ended this batch, counted.
//!
//! ```text
//! cargo run --release -p dstream-bench --bin sessions -- [--mode update|mapws] [--reps 3]
//!     [--start N] [--max N] [--batch-ms 1000] [--judge throughput|latency] [--warmup N]
//!     [--batches N]
//! cargo run --release -p dstream-bench --bin sessions -- --rate 1000000   # one probe
//! cargo run --release -p dstream-bench --bin sessions -- --rate 20000 --check 45
//!     # the live sessions after batch 12, to compare with the Spark job's
//! ```

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use dstream::prelude::*;
use dstream::{State, StateSpec};
use dstream_bench::{
    BAND_SECS, BANDS, Opts, Probe, band_batches, band_pools, report, run_probe, searches,
};
use serde::{Deserialize, Serialize};

/// A session idle for longer than this ends.
const IDLE_MS: i64 = 30_000;

/// Warm-up before measuring, in seconds: every band has been seen after 33 s.
const WARMUP_SECS: u64 = 35;

/// One user's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Session {
    events: i64,
    first_ms: i64,
    last_ms: i64,
}

/// The session after `events` new events at batch time `now`: a session idle for more than
/// 30 s is over (`None` without events; a new one with them).
fn advance(session: Option<Session>, events: i64, now: i64) -> Option<Session> {
    let live = session.filter(|s| now - s.last_ms <= IDLE_MS);
    if events == 0 {
        return live;
    }
    Some(match live {
        Some(s) => Session {
            events: s.events + events,
            first_ms: s.first_ms,
            last_ms: now,
        },
        None => Session {
            events,
            first_ms: now,
            last_ms: now,
        },
    })
}

/// `(user, 1)` per click (Spark's side: `(line.split(" ")(0), 1L)`).
fn events(lines: &DStream<&'static str>) -> DStream<(String, i64)> {
    lines.map(|line: &'static str| {
        let user = line.split_once(' ').map_or(line, |(u, _)| u);
        (user.to_string(), 1i64)
    })
}

/// `update` mode: the live sessions, every batch.
fn live_sessions(lines: &DStream<&'static str>, parallelism: usize) -> DStream<(String, Session)> {
    events(lines).update_state_by_key_with(
        |t: Time, _: &String, vs: Vec<i64>, s: Option<Session>| {
            advance(s, vs.iter().sum(), t.millis())
        },
        HashPartitioner::new(parallelism).expect("parallelism > 0"),
        None,
    )
}

/// `mapws` mode: the sessions that ended, every batch, and the stream of the state.
fn ended_sessions(
    lines: &DStream<&'static str>,
    parallelism: usize,
) -> dstream::MapWithStateStream<String, Session, Session> {
    let spec = StateSpec::function(
        |t: Time, _: &String, v: Option<i64>, st: &mut State<Session>| {
            if st.is_timing_out() {
                return st.get().cloned();
            }
            if let Some(s) = advance(st.get().cloned(), v.unwrap_or(0), t.millis()) {
                st.update(s);
            }
            None
        },
    )
    .timeout(Seconds(IDLE_MS / 1000))
    .num_partitions(parallelism);
    events(lines).map_with_state(spec)
}

/// Live sessions, their events, and the 3 largest by (events, user) with their span in ms.
fn summary(sessions: &[(String, Session)]) -> String {
    let events: i64 = sessions.iter().map(|(_, s)| s.events).sum();
    let mut top: Vec<&(String, Session)> = sessions.iter().collect();
    top.sort_by(|a, b| (b.1.events, &b.0).cmp(&(a.1.events, &a.0)));
    let top: Vec<String> = top
        .iter()
        .take(3)
        .map(|(u, s)| format!("{u}:{}:{}", s.events, s.last_ms - s.first_ms))
        .collect();
    format!(
        "live {} events {} top3 {}",
        sessions.len(),
        events,
        top.join(" ")
    )
}

fn probe(pools: &[Vec<&'static str>], rate: u64, batches: (usize, usize), o: &Opts) -> Probe {
    let input = band_batches(pools, o.per_batch(rate), o.parallelism);
    let p = o.parallelism;
    let mapws = o.mode == "mapws";
    run_probe(input, o.batches_in(BAND_SECS), rate, batches, o, |lines| {
        if mapws {
            ended_sessions(lines, p).foreach_batch(|b, _| {
                std::hint::black_box(b.count());
            })
        } else {
            live_sessions(lines, p).foreach_batch(|b, _| {
                std::hint::black_box(b.count());
            })
        }
    })
}

/// Runs `n` batches at `rate` and prints the sessions after batch `n`, and what they must be,
/// computed directly from the two replayed batches.
fn check(pools: &[Vec<&'static str>], rate: u64, n: usize, o: &Opts) {
    let batches = band_batches(pools, o.per_batch(rate), o.parallelism);
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let out = seen.clone();
    let p = o.parallelism;
    let mapws = o.mode == "mapws";
    let run = o.batches_in(BAND_SECS);
    run_probe(batches.clone(), run, rate, (0, n), o, |lines| {
        let record = move |b: Batch<(String, Session)>, _| {
            out.lock().unwrap().push(summary(&b.collect()));
        };
        if mapws {
            let s = ended_sessions(lines, p);
            s.foreach_batch(|b, _| {
                std::hint::black_box(b.count());
            })?;
            s.state_snapshots().foreach_batch(record)
        } else {
            live_sessions(lines, p).foreach_batch(record)
        }
    });
    let seen = seen.lock().unwrap();
    println!(
        "sessions after batch {n} at {rate} events/s ({}): {}",
        o.mode,
        seen[n - 1]
    );
    // Batch k (1-based), at time k * batch_ms, replays band (k - 1) / run % BANDS.
    let mut direct: HashMap<String, Session> = HashMap::new();
    for k in 1..=n {
        let mut per_user: HashMap<&str, i64> = HashMap::new();
        for line in batches[(k - 1) / run % BANDS].collect() {
            *per_user.entry(line.split(' ').next().unwrap()).or_default() += 1;
        }
        let mut users: HashSet<String> = direct.keys().cloned().collect();
        users.extend(per_user.keys().map(|u| u.to_string()));
        for u in users {
            let c = per_user.get(u.as_str()).copied().unwrap_or(0);
            if let Some(s) = advance(direct.remove(&u), c, (k as u64 * o.batch_ms) as i64) {
                direct.insert(u, s);
            }
        }
    }
    let direct: Vec<(String, Session)> = direct.into_iter().collect();
    println!(
        "direct computation of the same:            {}",
        summary(&direct)
    );
}

fn main() {
    let mut defaults = Opts::new(7_000_000, "update");
    // The input of every band is generated up to this rate before the searches.
    defaults.max = 11_000_000;
    let o = Opts::parse("sessions", defaults);
    if o.mode != "update" && o.mode != "mapws" {
        eprintln!("sessions: --mode is update or mapws");
        std::process::exit(2);
    }
    let pools = band_pools(o.per_batch(o.ceiling()));
    if let (Some(n), Some(rate)) = (o.check, o.rate) {
        check(&pools, rate, n, &o);
        return;
    }
    let results = searches(&o, WARMUP_SECS, |r, batches| probe(&pools, r, batches, &o));
    let (job, description) = if o.mode == "mapws" {
        (
            "sessions-mapws",
            "(user, 1) -> mapWithState(sessions, 30 s timeout) -> count ended",
        )
    } else {
        (
            "sessions",
            "(user, 1) -> updateStateByKey(sessions, drop after 30 s idle) -> count",
        )
    };
    report(job, description, "events", &results, &o);
}
