//! A program that uses the `log` crate, and no `tracing` subscriber, still gets the engine's
//! warnings: the library writes `tracing` events, which become `log` records when no
//! subscriber takes them. The library installs no logger of its own.

use std::sync::Mutex;

use stream_core::RecordErrors;
use stream_core::testing::TestContext;

static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        RECORDS
            .lock()
            .unwrap()
            .push((record.level(), record.args().to_string()));
    }
    fn flush(&self) {}
}

#[test]
fn log_users_get_the_engine_s_warnings() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    let tc = TestContext::new();
    let numbers = tc
        .input_stream(vec![vec!["1", "x"]])
        .map(|s: &str| s.parse::<i32>().expect("a number"))
        .on_record_error(RecordErrors::skip());
    let out = tc.collect(&numbers).unwrap();
    tc.run(1).unwrap();
    assert_eq!(out.batch(0), vec![1]);
    let records = RECORDS.lock().unwrap().clone();
    assert!(
        records.iter().any(|(level, msg)| *level == log::Level::Warn
            && msg.contains("panicked on a record of the batch at 1000 ms and skipped it")),
        "{records:?}"
    );
}
