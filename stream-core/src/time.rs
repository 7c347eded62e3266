//! Batch times and durations, in milliseconds as Spark Streaming counts them.
//!
//! `Time` is a point on the streaming clock (batch `i` of a context whose zero time is 0 and whose
//! batch interval is 1 s has time `i * 1000 ms`); `Duration` is a span. Both print as Spark prints
//! them (`1000 ms`), which is what appears in `print()` headers and error messages.

use std::fmt;
use std::ops::{Add, Div, Mul, Sub};

/// A point in time on the streaming clock, in milliseconds.
///
/// ```
/// use stream_core::{Seconds, Time};
/// let t = Time::from_millis(1000) + Seconds(2);
/// assert_eq!(t.to_string(), "3000 ms");
/// ```
#[derive(Copy, Clone, Eq, PartialEq, Ord, PartialOrd, Hash, Debug, Default)]
pub struct Time(i64);

impl Time {
    /// The time `ms` milliseconds after the clock's origin.
    pub const fn from_millis(ms: i64) -> Self {
        Time(ms)
    }

    /// Milliseconds since the clock's origin.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// [`millis`](Self::millis), under Spark's name (`time.milliseconds`).
    pub const fn milliseconds(self) -> i64 {
        self.0
    }

    /// True when `self - zero` is a whole number of `interval`s (Spark's `isMultipleOf`).
    pub fn is_multiple_of(self, zero: Time, interval: Duration) -> bool {
        interval.0 > 0 && (self.0 - zero.0).rem_euclid(interval.0) == 0
    }

    /// The latest time `<= self` that is a multiple of `interval` after `zero` (Spark's `floor`).
    pub fn floor(self, zero: Time, interval: Duration) -> Time {
        if interval.0 <= 0 {
            return self;
        }
        Time(zero.0 + (self.0 - zero.0).div_euclid(interval.0) * interval.0)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// A span of time, in milliseconds: batch intervals, windows, slides, timeouts.
///
/// ```
/// use stream_core::{Duration, Minutes, Seconds};
/// assert_eq!(Minutes(1), Seconds(60));
/// assert!(Seconds(30).is_multiple_of(Seconds(5)));
/// assert_eq!(Duration::from_millis(500).to_string(), "500 ms");
/// ```
#[derive(Copy, Clone, Eq, PartialEq, Ord, PartialOrd, Hash, Debug, Default)]
pub struct Duration(i64);

impl Duration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: i64) -> Self {
        Duration(ms)
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: i64) -> Self {
        Duration(s * 1000)
    }

    /// The length in milliseconds.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// [`millis`](Self::millis), under Spark's name (`duration.milliseconds`).
    pub const fn milliseconds(self) -> i64 {
        self.0
    }

    /// True when this duration is a whole, positive multiple of `other` (Spark's `isMultipleOf`).
    pub fn is_multiple_of(self, other: Duration) -> bool {
        other.0 > 0 && self.0 % other.0 == 0
    }

    /// The same span as a `std::time::Duration` (negative spans become zero).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// `Milliseconds(n)`, as in Spark's Scala API.
#[allow(non_snake_case)]
pub const fn Milliseconds(n: i64) -> Duration {
    Duration(n)
}

/// `Seconds(n)`, as in Spark's Scala API.
#[allow(non_snake_case)]
pub const fn Seconds(n: i64) -> Duration {
    Duration(n * 1000)
}

/// `Minutes(n)`, as in Spark's Scala API.
#[allow(non_snake_case)]
pub const fn Minutes(n: i64) -> Duration {
    Duration(n * 60_000)
}

/// `Hours(n)`: not in Spark's API, but in the talks' Scala and natural next to `Minutes`.
#[allow(non_snake_case)]
pub const fn Hours(n: i64) -> Duration {
    Duration(n * 3_600_000)
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0 + d.0)
    }
}

impl Sub<Duration> for Time {
    type Output = Time;
    fn sub(self, d: Duration) -> Time {
        Time(self.0 - d.0)
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, t: Time) -> Duration {
        Duration(self.0 - t.0)
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, d: Duration) -> Duration {
        Duration(self.0 + d.0)
    }
}

impl Sub for Duration {
    type Output = Duration;
    fn sub(self, d: Duration) -> Duration {
        Duration(self.0 - d.0)
    }
}

impl Mul<i64> for Duration {
    type Output = Duration;
    fn mul(self, n: i64) -> Duration {
        Duration(self.0 * n)
    }
}

impl Div for Duration {
    type Output = i64;
    fn div(self, d: Duration) -> i64 {
        self.0 / d.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spark_style_constructors_and_arithmetic() {
        assert_eq!(Seconds(1).millis(), 1000);
        assert_eq!(Minutes(2), Seconds(120));
        assert_eq!(Hours(1), Minutes(60));
        assert_eq!(
            Time::from_millis(1000) + Seconds(1),
            Time::from_millis(2000)
        );
        assert_eq!(
            Time::from_millis(3000) - Time::from_millis(1000),
            Seconds(2)
        );
        assert_eq!(Seconds(6) / Seconds(2), 3);
        assert!(Time::from_millis(3000).is_multiple_of(Time::from_millis(0), Seconds(1)));
        assert!(!Time::from_millis(3500).is_multiple_of(Time::from_millis(0), Seconds(1)));
        assert_eq!(
            Time::from_millis(3500)
                .floor(Time::from_millis(0), Seconds(1))
                .millis(),
            3000
        );
        assert!(!Seconds(5).is_multiple_of(Duration::from_millis(0)));
    }
}
