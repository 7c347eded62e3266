//! Clocks that drive batch generation: the system clock in production, a manual clock in tests
//! (Spark's `ManualClock`), so that a test decides exactly when each batch is due.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::time::Time;

/// A source of time for the batch scheduler.
pub trait Clock: Send + Sync + 'static {
    /// The current time in milliseconds.
    fn now(&self) -> Time;

    /// Blocks until the clock reads at least `target` or `interrupted()` becomes true. Returns the
    /// time read last. Implementations must re-check `interrupted` at least every 50 ms.
    fn wait_until(&self, target: Time, interrupted: &dyn Fn() -> bool) -> Time;
}

/// Wall-clock time since the Unix epoch.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Time::from_millis(ms)
    }

    fn wait_until(&self, target: Time, interrupted: &dyn Fn() -> bool) -> Time {
        loop {
            let now = self.now();
            if now >= target || interrupted() {
                return now;
            }
            let left = (target - now).millis().clamp(1, 50);
            std::thread::sleep(std::time::Duration::from_millis(left as u64));
        }
    }
}

/// A clock that only moves when told to, for deterministic tests.
///
/// ```
/// use stream_core::{Clock, ManualClock, Seconds};
/// let clock = ManualClock::new();
/// clock.advance(Seconds(3));
/// assert_eq!(clock.now().millis(), 3000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    inner: Arc<(Mutex<i64>, Condvar)>,
}

impl ManualClock {
    /// A manual clock at time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward by `d` and wakes whoever waits on it.
    pub fn advance(&self, d: crate::time::Duration) {
        let (lock, cv) = &*self.inner;
        let mut now = lock.lock().unwrap_or_else(|e| e.into_inner());
        *now += d.millis();
        cv.notify_all();
    }

    /// Sets the clock to `t` (never backwards).
    pub fn set(&self, t: Time) {
        let (lock, cv) = &*self.inner;
        let mut now = lock.lock().unwrap_or_else(|e| e.into_inner());
        *now = (*now).max(t.millis());
        cv.notify_all();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Time {
        Time::from_millis(*self.inner.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn wait_until(&self, target: Time, interrupted: &dyn Fn() -> bool) -> Time {
        let (lock, cv) = &*self.inner;
        let mut now = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *now < target.millis() && !interrupted() {
            now = cv
                .wait_timeout(now, std::time::Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        Time::from_millis(*now)
    }
}
