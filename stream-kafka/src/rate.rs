//! Backpressure: the input rate adapted to how fast batches are processed, with the PID
//! controller Spark Streaming uses (`spark.streaming.backpressure.*`, the `pid` estimator).

/// Spark's PID rate estimator: after each batch, from how many records it held, how long it
/// took and how long it waited, the rate (records/s) the input should take in next.
///
/// The error is the gap between the current rate and the rate processing achieved; the
/// "historical" error is the backlog (scheduling delay) turned into records; the new rate is the
/// current one corrected by `proportional * error + integral * historical + derivative * d(error)`,
/// never below `min_rate`.
#[derive(Debug, Clone)]
pub struct PidRateEstimator {
    batch_ms: f64,
    proportional: f64,
    integral: f64,
    derivative: f64,
    min_rate: f64,
    first: bool,
    latest_time: i64,
    latest_rate: f64,
    latest_error: f64,
}

impl PidRateEstimator {
    /// Spark's defaults: proportional 1.0, integral 0.2, derivative 0.0, min rate 100/s.
    pub fn new(batch_ms: i64) -> Self {
        Self::with_gains(batch_ms, 1.0, 0.2, 0.0, 100.0)
    }

    /// With other gains and floor.
    pub fn with_gains(
        batch_ms: i64,
        proportional: f64,
        integral: f64,
        derivative: f64,
        min_rate: f64,
    ) -> Self {
        PidRateEstimator {
            batch_ms: batch_ms.max(1) as f64,
            proportional,
            integral,
            derivative,
            min_rate,
            first: true,
            latest_time: -1,
            latest_rate: -1.0,
            latest_error: -1.0,
        }
    }

    /// Feeds a completed batch (its time in ms, records, processing and scheduling delay in ms);
    /// returns the new rate when there is one. The first usable batch only sets the baseline.
    pub fn compute(
        &mut self,
        time_ms: i64,
        records: u64,
        processing_ms: i64,
        scheduling_ms: i64,
    ) -> Option<f64> {
        if time_ms <= self.latest_time || records == 0 || processing_ms <= 0 {
            return None;
        }
        let since_update = (time_ms - self.latest_time) as f64 / 1000.0;
        let processing_rate = records as f64 / processing_ms as f64 * 1000.0;
        let error = self.latest_rate - processing_rate;
        let historical = scheduling_ms.max(0) as f64 * processing_rate / self.batch_ms;
        let d_error = (error - self.latest_error) / since_update;
        let new_rate = (self.latest_rate
            - self.proportional * error
            - self.integral * historical
            - self.derivative * d_error)
            .max(self.min_rate);
        self.latest_time = time_ms;
        if self.first {
            self.latest_rate = processing_rate;
            self.latest_error = 0.0;
            self.first = false;
            None
        } else {
            self.latest_rate = new_rate;
            self.latest_error = error;
            Some(new_rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_batch_sets_the_baseline_only() {
        let mut e = PidRateEstimator::new(1000);
        assert_eq!(e.compute(1000, 1000, 500, 0), None);
        // Processing keeps up at 2000/s with no backlog: the rate moves to it.
        let r = e.compute(2000, 1000, 500, 0).unwrap();
        assert!((r - 2000.0).abs() < 1e-9, "{r}");
    }

    #[test]
    fn a_backlog_lowers_the_rate_below_what_processing_achieves() {
        let mut e = PidRateEstimator::new(1000);
        e.compute(1000, 10_000, 1000, 0);
        // Same processing rate, but 2 s of scheduling delay: drain the backlog.
        let r = e.compute(2000, 10_000, 1000, 2000).unwrap();
        assert!(r < 10_000.0, "{r}");
        assert!((r - (10_000.0 - 0.2 * 20_000.0)).abs() < 1e-6, "{r}");
    }

    #[test]
    fn never_below_the_floor_and_ignores_empty_batches() {
        let mut e = PidRateEstimator::new(1000);
        e.compute(1000, 100, 1000, 0);
        assert_eq!(e.compute(2000, 0, 1000, 0), None);
        let r = e.compute(3000, 10, 1000, 100_000).unwrap();
        assert_eq!(r, 100.0);
    }
}
