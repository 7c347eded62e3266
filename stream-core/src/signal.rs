//! Ctrl-C and SIGTERM stop running contexts gracefully (Spark's
//! `spark.streaming.stopGracefullyOnShutdown`). Handlers are installed once per process, the
//! first time a context that asks for it starts. While no such context runs, the signals keep
//! their default action; a second signal during a graceful stop terminates the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use crate::context::{ContextInner, StreamingContext};

struct Signals {
    received: Arc<AtomicBool>,
    default_action: Arc<AtomicBool>,
    contexts: Mutex<Vec<Weak<ContextInner>>>,
}

fn install() -> &'static Signals {
    static SIGNALS: OnceLock<Signals> = OnceLock::new();
    SIGNALS.get_or_init(|| {
        let s = Signals {
            received: Arc::new(AtomicBool::new(false)),
            default_action: Arc::new(AtomicBool::new(true)),
            contexts: Mutex::new(Vec::new()),
        };
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            let installed =
                signal_hook::flag::register_conditional_default(sig, s.default_action.clone())
                    .and_then(|_| signal_hook::flag::register(sig, s.received.clone()));
            if let Err(e) = installed {
                tracing::warn!("cannot install the handler of signal {sig} for graceful stop: {e}");
            }
        }
        let spawned = std::thread::Builder::new()
            .name("dstream-signals".into())
            .spawn(watch_loop);
        if let Err(e) = spawned {
            tracing::warn!("cannot start the signal watcher thread: {e}");
        }
        s
    })
}

fn watch_loop() {
    let s = install();
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if !s.received.swap(false, Ordering::SeqCst) {
            continue;
        }
        // A second signal while we stop gracefully terminates the process.
        s.default_action.store(true, Ordering::SeqCst);
        let contexts: Vec<_> = s
            .contexts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for inner in contexts.into_iter().filter_map(|w| w.upgrade()) {
            tracing::warn!("signal received: stopping the StreamingContext gracefully");
            let ctx = StreamingContext { inner };
            std::thread::spawn(move || ctx.stop_gracefully());
        }
    }
}

/// Makes Ctrl-C / SIGTERM stop `inner` gracefully while it runs.
pub(crate) fn watch(inner: &Arc<ContextInner>) {
    let s = install();
    let mut contexts = s.contexts.lock().unwrap_or_else(|e| e.into_inner());
    contexts.push(Arc::downgrade(inner));
    s.default_action.store(false, Ordering::SeqCst);
}

/// Stops watching `id`; with no context left, signals take their default action again.
pub(crate) fn unwatch(id: usize) {
    let s = install();
    let mut contexts = s.contexts.lock().unwrap_or_else(|e| e.into_inner());
    contexts.retain(|w| w.upgrade().is_some_and(|c| c.id != id));
    if contexts.is_empty() {
        s.default_action.store(true, Ordering::SeqCst);
    }
}
