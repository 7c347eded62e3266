//! A minimal stderr logger for warnings and errors, installed when the program has no logger of
//! its own, so that source failures and batch errors are seen (Spark logs them to the console).
//! Programs that install their own `log` backend first keep it. `RUST_LOG` set to a level
//! (`error`, `warn`, `info`, `debug`, `trace`) changes the level, `warn` by default.

struct StderrLogger;

/// The level `RUST_LOG` names, if it is just a level.
fn level() -> log::LevelFilter {
    std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(log::LevelFilter::Warn)
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("{} {}: {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

pub(crate) fn install_default() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level());
    }
}
