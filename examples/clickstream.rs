//! Clickstream analytics, as in Spark Streaming's `PageViewStream` example and the talks: page
//! views per batch, page views per URL over a sliding window, the top pages, and unique visitors
//! per window, with bot traffic filtered out by a rule you can read (below, `is_crawler` and
//! `MAX_VIEWS_PER_SECOND`).
//!
//! Runs on an embedded generator of page views (visitors drifting through the site, pages with a
//! Zipf skew, crawlers that announce themselves and a scraper that does not):
//!
//! ```text
//! cargo run --release --example clickstream                      # until Ctrl-C (graceful stop)
//! cargo run --release --example clickstream -- --serve           # + dashboard on 127.0.0.1:4040
//! cargo run --release --example clickstream -- --seconds 20 --rate 20000 --window 10 --slide 2
//! ```
//!
//! With `--serve`, the live dashboard is at http://127.0.0.1:4040/ (`--addr HOST:PORT` to move
//! it) and two WebSocket feeds carry the results to browsers: `ws://.../feeds/top-pages` (the
//! top 10 pages of the window, every slide) and `ws://.../feeds/page-views` (the counts of every
//! batch).
//!
//! With `--kafka BROKERS --topic T` the page views are read from a topic (one view per record,
//! `url status zip user agent...`); `--feed-only` writes generated views into it. With
//! `--app NAME` as well, the process is one instance of a scaled-out application: run it several
//! times with the same name and the topic's partitions are spread over the instances (see
//! docs/scaling.md). The pipeline is the same in both modes: `repartitionByKey` brings a
//! visitor's views (and a page's counts) to one task, `global` brings each task's part of the
//! tallies and top pages to one task, which prints them.

mod common;

use std::borrow::Cow;

use common::{mix, unit, zipf_cdf, zipf_pick};
use dstream::Dashboard;
use dstream::kafka::KafkaStreams;
use dstream::prelude::*;

/// The talks' clickstream: page views per URL and the top pages over a sliding window, from
/// generated views or a Kafka topic of `url status zip user agent...` lines.
#[derive(clap::Parser, Debug)]
#[command(name = "clickstream")]
struct Args {
    /// Generated page views a second
    #[arg(long, default_value_t = 5_000, value_name = "VIEWS_PER_SECOND", value_parser = clap::value_parser!(u64).range(1..))]
    rate: u64,
    /// The window, in seconds
    #[arg(long, default_value_t = 30, value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    window: i64,
    /// The window's slide, in seconds
    #[arg(long, default_value_t = 5, value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(1..))]
    slide: i64,
    #[command(flatten)]
    common: common::Common,
}

/// One page view, as Spark's `PageView` (url, status, zip code, user id) plus the user agent
/// (the generator's are borrowed from its tables; those read from Kafka are owned).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PageView {
    pub url: String,
    pub status: u16,
    pub zip_code: u32,
    pub user_id: u64,
    pub user_agent: Cow<'static, str>,
}

impl PageView {
    /// The view as a line of the topic: `url status zip user agent...`.
    fn line(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.url, self.status, self.zip_code, self.user_id, self.user_agent
        )
    }

    /// A line of the topic; `None` (the line is skipped and counted) when it is not a view.
    fn parse(line: &str) -> Option<PageView> {
        let mut it = line.splitn(5, ' ');
        Some(PageView {
            url: it.next()?.to_string(),
            status: it.next()?.parse().ok()?,
            zip_code: it.next()?.parse().ok()?,
            user_id: it.next()?.parse().ok()?,
            user_agent: Cow::Owned(it.next()?.to_string()),
        })
    }
}

/// The bot rule, part 1: a crawler announces itself in its user agent.
fn is_crawler(view: &PageView) -> bool {
    let agent = view.user_agent.to_ascii_lowercase();
    ["bot", "spider", "crawl"].iter().any(|w| agent.contains(w))
}

/// The bot rule, part 2: no human reads this many pages a second, whatever the user agent says.
const MAX_VIEWS_PER_SECOND: u64 = 10;

const PAGES: usize = 1000;
const BROWSERS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1) Mobile/15E148",
];
const CRAWLERS: &[&str] = &[
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0)",
    "Baiduspider/2.0",
];

fn page_name(k: usize) -> String {
    match k {
        0 => "/".into(),
        1 => "/products".into(),
        2 => "/cart".into(),
        3 => "/checkout".into(),
        k if k % 3 == 0 => format!("/blog/post-{k}"),
        k => format!("/products/item-{k}"),
    }
}

/// The generator: page view `i` of a stream of `rate` views per second. Visitors arrive at a
/// steady pace and stay about a minute and a half (the active ids drift by `rate / 50` a
/// second); 5% of views are crawlers, 4% one scraper with a browser's user agent.
fn page_view(i: u64, rate: u64, cdf: &[f64], pages: &[String]) -> PageView {
    let h = mix(i);
    let second = i / rate.max(1);
    let active = (rate * 2).max(100);
    let (user_id, user_agent) = match h % 100 {
        0..=4 => (1_000_000_000 + h % 3, CRAWLERS[(h % 3) as usize]),
        5..=8 => (1_000_000_100, BROWSERS[0]),
        _ => {
            let user = second * (active / 100).max(1) + mix(h) % active;
            (user, BROWSERS[(mix(user) % BROWSERS.len() as u64) as usize])
        }
    };
    let r = unit(mix(h ^ 0x5bd1));
    PageView {
        url: pages[zipf_pick(cdf, mix(h ^ 0x1234))].clone(),
        status: if r < 0.005 {
            500
        } else if r < 0.025 {
            404
        } else {
            200
        },
        zip_code: 94000 + (mix(user_id) % 200) as u32,
        user_id,
        user_agent: Cow::Borrowed(user_agent),
    }
}

fn main() {
    common::init_logging();
    let args = <Args as clap::Parser>::parse();
    common::run_mode("clickstream", &args, &args.common, feed, scale_out, run);
}

/// The window and its slide, in seconds, from the flags.
fn window(flags: &Args) -> (i64, i64) {
    (flags.window, flags.slide)
}

/// The generator's page view `i` at `rate` views a second.
fn generator(rate: u64) -> impl Fn(u64) -> PageView + Send + Sync + Clone + 'static {
    let (cdf, pages) = (
        zipf_cdf(PAGES, 1.05),
        (0..PAGES).map(page_name).collect::<Vec<_>>(),
    );
    let (cdf, pages) = (std::sync::Arc::new(cdf), std::sync::Arc::new(pages));
    move |i| page_view(i, rate, &cdf, &pages)
}

/// `--feed-only`: writes generated page views into the topic at `--rate`.
fn feed(flags: &Args, brokers: &str, topic: &str) -> Result<(), Error> {
    let rate = flags.rate;
    let view = generator(rate);
    let seconds = flags.common.seconds;
    common::feed("clickstream", brokers, topic, rate, seconds, |i| {
        view(i).line()
    })
}

/// Page views read from `topic`. A record that is not a view is skipped and reported on
/// stderr (`common::report_skipped`).
fn from_kafka(
    ssc: &StreamingContext,
    brokers: &str,
    topic: &str,
) -> Result<DStream<PageView>, Error> {
    let source = dstream::kafka::KafkaSource::strings(brokers)
        .topics([topic])
        .build()?;
    Ok(ssc.kafka_stream(source).flat_map(|l: String| {
        let view = PageView::parse(&l);
        if view.is_none() {
            common::report_skipped("clickstream", &l);
        }
        view
    }))
}

fn run(flags: &Args) -> Result<(), Error> {
    let rate = flags.rate;
    let batch_ms = flags.common.batch_ms;
    // The window's state lives in RocksDB; generated views cannot be replayed, so a temporary
    // checkpoint (removed at exit) is enough.
    let ssc = StreamingContext::builder(Milliseconds(batch_ms))
        .temporary_checkpoint()
        .status_line(!flags.common.serve)
        .build()?;
    let dashboard = common::dashboard(&ssc, &flags.common)?;
    if let Some(d) = &dashboard {
        println!(
            "WebSocket feeds: {} and {}",
            d.feed_url("top-pages"),
            d.feed_url("page-views")
        );
    }
    let views = match (&flags.common.kafka, &flags.common.topic) {
        (Some(b), Some(t)) => from_kafka(&ssc, b, t)?,
        _ => {
            let view = generator(rate);
            ssc.rate_stream(rate).map(view)
        }
    };
    // A clone: the dashboard serves until its last handle goes, at the end of the run.
    clickstream(&ssc, views, window(flags), dashboard.clone())?;
    common::run(&ssc, flags.common.seconds)
}

/// Scale-out: this process is one instance of application `--app`; each partition of the topic
/// is a task, run by whichever instance the group gives it to.
fn scale_out(flags: &Args, brokers: &str, topic: &str) -> Result<(), Error> {
    let window = window(flags);
    common::run_scaled_out(
        "clickstream",
        &flags.common,
        brokers,
        topic,
        move |ssc, b, t| {
            let views = from_kafka(ssc, b, t)?;
            clickstream(ssc, views, window, None)
        },
    )
}

/// The top 10 of `pages` by views, the most viewed first (ties by URL).
fn top10(pages: Vec<(String, i64)>) -> Vec<(String, i64)> {
    let mut pages = pages;
    pages.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    pages.truncate(10);
    pages
}

/// The pipeline. In one process the exchanges change nothing; scaled out, `repartitionByKey`
/// brings a visitor's views to the task of the visitor (the bot rule and the unique visitors
/// count per visitor) and a page's views to the task of the page, and `global` brings each
/// task's tallies and top pages to one task, which prints them.
fn clickstream(
    ssc: &StreamingContext,
    views: DStream<PageView>,
    (window_s, slide_s): (i64, i64),
    dashboard: Option<Dashboard>,
) -> Result<(), Error> {
    let batch_ms = ssc.batch_duration().millis();
    let max_per_batch = MAX_VIEWS_PER_SECOND * (batch_ms as u64).div_ceil(1000);
    let parallelism = ssc.parallelism();

    stream! {
        using views
        // Bots out: crawlers by their user agent, then any visitor over the rate rule.
        val browsing = views.filter(v => !is_crawler(v)).map(v => (v.user_id, v)).repartitionByKey()
        val tooFast = browsing.map { case (user, _) => (user, 1u64) }
            .reduceByKey(_ + _)
            .filter(_._2 > max_per_batch)
        val humans = browsing.leftOuterJoin(tooFast)
            .filter(_._2._2.is_none())
            .map { case (_, (view, _)) => view }

        // Page views per batch, all and by people: each task's counts, added up on one.
        val tally = views.count().map(n => (true, n)).union(humans.count().map(n => (false, n)))
            .global()
            .reduceByKey(_ + _)
        tally.foreachRDD { (rdd, time) =>
            let counts: std::collections::HashMap<bool, i64> = rdd.collect().into_iter().collect();
            let all = counts.get(&true).copied().unwrap_or(0);
            let humans = counts.get(&false).copied().unwrap_or(0);
            println!("{}: {all} page views, {humans} by people ({} bot requests filtered)", common::clock(time), all - humans);
        }
        tally.map { case (all, n) => (if all { "all" } else { "humans" }, n) }.saveToWebSocket(dashboard, "page-views")

        // Page views per URL over the window, kept up to date incrementally; the top pages:
        // each task's top 10, then the top 10 of those.
        val pageCounts = humans.map(v => (v.url, 1i64)).repartitionByKey()
            .reduceByKeyAndWindow(_ + _, _ - _, Seconds(window_s), Seconds(slide_s), parallelism, _._2 > 0)
        val topPages = pageCounts.transform(rdd => Batch::from_vec(top10(rdd.collect()), 1))
            .global()
            .transform(rdd => Batch::from_vec(top10(rdd.collect()), 1))
        topPages.foreachRDD { rdd =>
            println!("\nTop pages in the last {window_s} seconds:");
            for (url, n) in rdd.collect() {
                println!("  {url:<24} {n:>8} views");
            }
        }
        topPages.saveToWebSocket(dashboard, "top-pages")

        // Unique visitors over the window: one key per visitor seen (on the visitor's task),
        // dropped when it leaves; each task's count, added up on one.
        val visitors = humans.map(v => (v.user_id, 1i64))
            .reduceByKeyAndWindow(_ + _, _ - _, Seconds(window_s), Seconds(slide_s), parallelism, _._2 > 0)
            .count()
            .global()
            .reduce(_ + _)
        visitors.foreachRDD { rdd =>
            let n = rdd.first().unwrap_or(0);
            println!("Unique visitors in the last {window_s} seconds: {n}\n");
        }
    }?;
    Ok(())
}
