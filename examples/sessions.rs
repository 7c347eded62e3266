//! Session tracking on a clickstream, as in the talks' "live sessions joined with their
//! history": each visitor's clicks build a live session in `mapWithState`; a session with no
//! click for `--idle` seconds times out and is emitted with its page count and duration; the
//! live sessions are joined with a historical-sessions dataset (a stream-static join) to flag
//! returning visitors.
//!
//! Runs on an embedded generator of visits (visitors arrive at a steady pace, stay 10 to 90
//! seconds, `--stay` the longest, clicking through pages with a Zipf skew, then leave), so
//! nothing else is needed:
//!
//! ```text
//! cargo run --release --example sessions                         # until Ctrl-C (graceful stop)
//! cargo run --release --example sessions -- --seconds 60 --rate 2000 --idle 5
//! cargo run --release --example sessions -- --serve              # + dashboard on 127.0.0.1:4040
//! ```

mod common;

use common::{mix, zipf_cdf, zipf_pick};
use dstream::kafka::KafkaStreams;
use dstream::prelude::*;
use dstream::{Batch, State};

/// Visitors' sessions (a session ends after --idle seconds without a click), from generated
/// clicks or a Kafka topic of `visitor url time_ms` lines.
#[derive(clap::Parser, Debug)]
#[command(name = "sessions")]
struct Args {
    /// Generated clicks a second
    #[arg(long, default_value_t = 300, value_name = "CLICKS_PER_SECOND", value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// New visitors a second
    #[arg(long, default_value_t = 20, value_name = "VISITORS_PER_SECOND", value_parser = clap::value_parser!(u64).range(1..))]
    arrivals: u64,
    /// The longest a generated visitor stays, in seconds
    #[arg(long, default_value_t = 90, value_name = "LONGEST_SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    stay: u64,
    /// Seconds without a click that end a session
    #[arg(long, default_value_t = 10, value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    idle: i64,
    #[command(flatten)]
    common: common::Common,
}

/// One click of the stream: who, where, when (ms since the epoch).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Click {
    pub visitor: String,
    pub url: String,
    pub time_ms: i64,
}

/// A live session: the state kept per visitor.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub landing: String,
    pub first_ms: i64,
    pub last_ms: i64,
    pub pages: u32,
}

/// A session that ended (no click for the idle timeout).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClosedSession {
    pub visitor: String,
    pub landing: String,
    pub pages: u32,
    pub duration_ms: i64,
}

/// What the historical dataset knows of a visitor: earlier visits.
#[derive(Debug, Clone, serde::Serialize)]
pub struct History {
    pub earlier_visits: u32,
}

/// The session function of `mapWithState`: a click extends (or opens) the visitor's session;
/// a timeout closes it and emits it.
#[allow(clippy::ptr_arg)] // mapWithState hands the key over as `&K`, here `&String`
fn track(
    visitor: &String,
    click: Option<Click>,
    state: &mut State<Session>,
) -> Option<ClosedSession> {
    if state.is_timing_out() {
        let s = state.get()?;
        return Some(ClosedSession {
            visitor: visitor.clone(),
            landing: s.landing.clone(),
            pages: s.pages,
            duration_ms: s.last_ms - s.first_ms,
        });
    }
    let click = click?;
    let session = match state.get() {
        Some(s) => Session {
            last_ms: s.last_ms.max(click.time_ms),
            first_ms: s.first_ms.min(click.time_ms),
            pages: s.pages + 1,
            landing: s.landing.clone(),
        },
        None => Session {
            landing: click.url,
            first_ms: click.time_ms,
            last_ms: click.time_ms,
            pages: 1,
        },
    };
    state.update(session);
    None
}

const PAGES: usize = 500;
/// Visitors the historical dataset covers (a third of them visited before).
const HISTORY_VISITORS: u64 = 300_000;

fn page_name(k: usize) -> String {
    match k {
        0 => "/".into(),
        1 => "/pricing".into(),
        2 => "/docs".into(),
        k if k % 2 == 0 => format!("/docs/page-{k}"),
        k => format!("/blog/post-{k}"),
    }
}

/// How long visitor `v` stays, in seconds: from a ninth of `longest` to `longest`.
fn stay(v: u64, longest: u64) -> u64 {
    let shortest = (longest / 9).max(1);
    shortest + mix(v ^ 0xabc) % (longest.max(shortest) - shortest + 1)
}

/// The visits the generator makes: clicks and new visitors per second, the longest stay.
#[derive(Clone, Copy)]
struct Visits {
    rate: u64,
    arrivals: u64,
    longest: u64,
    start_ms: i64,
}

/// The generator: click `i` of the visits. A click goes to a visitor who has arrived and not
/// yet left.
fn click(i: u64, visits: Visits, cdf: &[f64], pages: &[String]) -> Click {
    let Visits {
        rate,
        arrivals,
        longest,
        start_ms,
    } = visits;
    let second = i / rate;
    let arrived = (second + 1) * arrivals; // visitors 0..arrived have arrived
    let mut h = mix(i);
    let mut visitor = arrived - 1 - h % arrivals; // a fallback: one who just came
    for _ in 0..8 {
        let back = h % (longest * arrivals).min(arrived);
        let v = arrived - 1 - back;
        if v / arrivals + stay(v, longest) > second {
            visitor = v;
            break;
        }
        h = mix(h);
    }
    Click {
        visitor: format!("v{visitor}"),
        url: pages[zipf_pick(cdf, mix(i ^ 0x77))].clone(),
        time_ms: start_ms + (i * 1000 / rate) as i64,
    }
}

/// The historical sessions: earlier visits of the visitors seen before (a third of them).
fn history(ssc: &StreamingContext) -> Batch<(String, History)> {
    let known: Vec<(String, History)> = (0..HISTORY_VISITORS)
        .filter(|v| mix(v ^ 0x1157).is_multiple_of(3))
        .map(|v| {
            (
                format!("v{v}"),
                History {
                    earlier_visits: 1 + (mix(v) % 20) as u32,
                },
            )
        })
        .collect();
    Batch::from_vec(known, ssc.parallelism())
}

fn duration_text(ms: i64) -> String {
    let s = ms / 1000;
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Click {
    /// The line a click travels as in Kafka: `visitor url time_ms`.
    fn line(&self) -> String {
        format!("{} {} {}", self.visitor, self.url, self.time_ms)
    }

    /// A line of the topic; one that does not parse is skipped and reported.
    fn read(line: &str) -> Option<Click> {
        let click = Click::parse(line);
        if click.is_none() {
            common::report_skipped("sessions", line);
        }
        click
    }

    fn parse(line: &str) -> Option<Click> {
        let mut it = line.split(' ');
        let (visitor, url, time) = (it.next()?, it.next()?, it.next()?);
        Some(Click {
            visitor: visitor.to_string(),
            url: url.to_string(),
            time_ms: time.parse().ok()?,
        })
    }
}

fn main() {
    common::init_logging();
    let args = <Args as clap::Parser>::parse();
    common::run_mode("sessions", &args, &args.common, feed, scale_out, run);
}

/// The generated visits, from the flags.
fn visits(flags: &Args) -> (Visits, Vec<f64>, Vec<String>) {
    let visits = Visits {
        rate: flags.rate,
        arrivals: flags.arrivals,
        longest: flags.stay,
        start_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64),
    };
    (
        visits,
        zipf_cdf(PAGES, 1.1),
        (0..PAGES).map(page_name).collect::<Vec<_>>(),
    )
}

/// Writes generated clicks into the topic at `--rate` per second, unkeyed: a visitor's clicks
/// land in every partition, so the sessions need `repartitionByKey`.
fn feed(flags: &Args, brokers: &str, topic: &str) -> Result<(), Error> {
    let (visits, cdf, pages) = visits(flags);
    let seconds = flags.common.seconds;
    common::feed("sessions", brokers, topic, visits.rate, seconds, |j| {
        click(j, visits, &cdf, &pages).line()
    })
}

/// Scale-out: this process is one instance of application `--app`; each partition of the topic
/// is a task, run by whichever instance the group gives it to.
fn scale_out(flags: &Args, brokers: &str, topic: &str) -> Result<(), Error> {
    let idle_s = flags.idle;
    common::run_scaled_out(
        "sessions",
        &flags.common,
        brokers,
        topic,
        move |ssc, b, t| {
            let source = dstream::kafka::KafkaSource::strings(b)
                .topics([t])
                .build()?;
            let clicks = ssc
                .kafka_stream(source)
                .flat_map(|l: String| Click::read(&l));
            sessions(ssc, clicks, idle_s, None)
        },
    )
}

fn run(flags: &Args) -> Result<(), Error> {
    let idle_s = flags.idle;
    let batch_ms = flags.common.batch_ms;
    // Sessions live in RocksDB; generated clicks cannot be replayed, so a temporary checkpoint
    // (removed at exit) is enough.
    let ssc = StreamingContext::builder(Milliseconds(batch_ms))
        .temporary_checkpoint()
        .build()?;
    let dashboard = common::dashboard(&ssc, &flags.common)?;
    if let Some(d) = &dashboard {
        println!("WebSocket feed: {}", d.feed_url("closed-sessions"));
    }
    let clicks = match (&flags.common.kafka, &flags.common.topic) {
        (Some(b), Some(t)) => {
            let source = dstream::kafka::KafkaSource::strings(b)
                .topics([t.as_str()])
                .build()?;
            ssc.kafka_stream(source)
                .flat_map(|l: String| Click::read(&l))
        }
        _ => {
            let (visits, cdf, pages) = visits(flags);
            ssc.rate_stream(visits.rate)
                .map(move |i| click(i, visits, &cdf, &pages))
        }
    };
    // A clone: the dashboard serves until its last handle goes, at the end of the run.
    sessions(&ssc, clicks, idle_s, dashboard.clone())?;
    common::run(&ssc, flags.common.seconds)
}

/// The pipeline. In one process the exchanges change nothing; scaled out, `repartitionByKey`
/// brings a visitor's clicks to the task of the visitor, and `global` brings each task's
/// counts and closed sessions to one task, which prints them.
fn sessions(
    ssc: &StreamingContext,
    clicks: DStream<Click>,
    idle_s: i64,
    dashboard: Option<dstream::Dashboard>,
) -> Result<(), Error> {
    // The history, and the partitioner of the joins, for each of the two lambdas that use them.
    let (history, by_visitor) = (history(ssc), HashPartitioner::new(ssc.parallelism())?);
    let (known, by_visitor2) = (history.clone(), by_visitor.clone());

    stream! {
        using clicks
        val sessions = clicks.map(c => (c.visitor.clone(), c))
            .repartitionByKey()
            .mapWithState(StateSpec.function(track).timeout(Seconds(idle_s)))
        val closed = sessions.flatMap(c => c)

        // Live sessions joined with the historical dataset: who is back?
        val live = sessions.stateSnapshots()
            .transform(rdd => rdd.left_outer_join(history.clone(), by_visitor.clone()))
            .map { case (_, (_, past)) => (1i64, past.is_some() as i64) }
            .global()
        live.foreachRDD { (rdd, time) =>
            let (all, returning) = rdd.collect().into_iter().fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            println!("{}: {all} live sessions, {returning} of returning visitors", common::clock(time));
        }

        // Closed sessions, with what the history says of their visitor.
        val ended = closed.map(c => (c.visitor.clone(), c))
            .transform(rdd => rdd.left_outer_join(known.clone(), by_visitor2.clone()))
            .map { case (_, (session, past)) => (session, past.map(|h| h.earlier_visits)) }
            .global()
        ended.foreachRDD { rdd =>
            let mut ended = rdd.collect();
            if !ended.is_empty() {
                ended.sort_by_key(|(s, _)| std::cmp::Reverse(s.pages));
                println!("  {} sessions closed (idle {idle_s} s); the longest:", ended.len());
                for (s, past) in ended.iter().take(3) {
                    let who = match past {
                        Some(n) => format!("returning visitor, {n} earlier visits"),
                        None => "first visit".to_string(),
                    };
                    println!(
                        "    {} ({who}): {} pages in {}, landed on {}",
                        s.visitor, s.pages, duration_text(s.duration_ms), s.landing
                    );
                }
            }
        }
        ended.saveToWebSocket(dashboard, "closed-sessions")
    }
}
