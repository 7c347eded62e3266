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

mod common;

use common::{Flags, mix, unit, zipf_cdf, zipf_pick};
use dstream::prelude::*;

const USAGE: &str = "usage: clickstream [--seconds N] [--rate VIEWS_PER_SECOND] [--batch-ms MS] [--window SECONDS] [--slide SECONDS]
                   [--serve [--addr HOST:PORT]]";

/// One page view, as Spark's `PageView` (url, status, zip code, user id) plus the user agent.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PageView {
    pub url: String,
    pub status: u16,
    pub zip_code: u32,
    pub user_id: u64,
    pub user_agent: &'static str,
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
        user_agent,
    }
}

fn main() {
    let flags = Flags::parse(
        &["seconds", "rate", "batch-ms", "window", "slide", "addr"],
        &["serve"],
        USAGE,
    );
    if let Err(e) = run(&flags) {
        eprintln!("clickstream: {e}");
        std::process::exit(1);
    }
}

fn run(flags: &Flags) -> Result<(), Error> {
    let rate = flags.num("rate", 5_000).max(1);
    let batch_ms = flags.num("batch-ms", 1_000).max(1) as i64;
    let (window_s, slide_s) = (
        flags.num("window", 30).max(1) as i64,
        flags.num("slide", 5).max(1) as i64,
    );
    // The window's state lives in RocksDB; generated views cannot be replayed, so a temporary
    // checkpoint (removed at exit) is enough.
    let ssc = StreamingContext::builder(Milliseconds(batch_ms))
        .temporary_checkpoint()
        .status_line(!flags.on("serve"))
        .build()?;
    let dashboard = common::dashboard(&ssc, flags)?;
    if let Some(d) = &dashboard {
        println!(
            "WebSocket feeds: {} and {}",
            d.feed_url("top-pages"),
            d.feed_url("page-views")
        );
    }

    let (cdf, pages) = (
        zipf_cdf(PAGES, 1.05),
        (0..PAGES).map(page_name).collect::<Vec<_>>(),
    );
    let views = ssc
        .rate_stream(rate)
        .map(move |i| page_view(i, rate, &cdf, &pages));
    let max_per_batch = MAX_VIEWS_PER_SECOND * (batch_ms as u64).div_ceil(1000);
    let parallelism = ssc.parallelism();

    stream! {
        using views
        // Bots out: crawlers by their user agent, then any visitor over the rate rule.
        val browsing = views.filter(v => !is_crawler(v)).map(v => (v.user_id, v))
        val tooFast = browsing.map { case (user, _) => (user, 1u64) }
            .reduceByKey(_ + _)
            .filter(_._2 > max_per_batch)
        val humans = browsing.leftOuterJoin(tooFast)
            .filter(_._2._2.is_none())
            .map { case (_, (view, _)) => view }

        // Page views per batch: all, and by humans.
        val tally = views.map(_ => ("all", 1u64)).union(humans.map(_ => ("humans", 1u64)))
            .reduceByKey(_ + _)
        tally.foreachRDD { (rdd, time) =>
            let counts: std::collections::HashMap<_, _> = rdd.collect().into_iter().collect();
            let all = counts.get("all").copied().unwrap_or(0);
            let humans = counts.get("humans").copied().unwrap_or(0);
            println!("{}: {all} page views, {humans} by people ({} bot requests filtered)", common::clock(time), all - humans);
        }
        tally.saveToWebSocket(dashboard, "page-views")

        // Page views per URL over the window, kept up to date incrementally; the top pages.
        val pageCounts = humans.map(v => (v.url, 1i64))
            .reduceByKeyAndWindow(_ + _, _ - _, Seconds(window_s), Seconds(slide_s), parallelism, _._2 > 0)
        val topPages = pageCounts.transform(rdd => Batch::from_vec(rdd.top_by(10, |(url, n)| (*n, std::cmp::Reverse(url.clone()))), 1))
        topPages.foreachRDD { rdd =>
            println!("\nTop pages in the last {window_s} seconds:");
            for (url, n) in rdd.collect() {
                println!("  {url:<24} {n:>8} views");
            }
        }
        topPages.saveToWebSocket(dashboard, "top-pages")

        // Unique visitors over the window: one key per visitor seen, dropped when it leaves.
        val visitors = humans.map(v => (v.user_id, 1i64))
            .reduceByKeyAndWindow(_ + _, _ - _, Seconds(window_s), Seconds(slide_s), parallelism, _._2 > 0)
            .count()
        visitors.foreachRDD { rdd =>
            let n = rdd.first().unwrap_or(0);
            println!("Unique visitors in the last {window_s} seconds: {n}\n");
        }
    }?;

    common::run(&ssc, flags.text("seconds").map(|_| flags.num("seconds", 0)))
}
