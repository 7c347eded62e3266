//! A rate generator: a fixed number of records per second, numbered from 0, for demos and
//! benchmarks (what Spark's `rate` source gives Structured Streaming).

use super::{Source, SourceContext};
use crate::batch::Batch;
use crate::context::StreamingContext;
use crate::dstream::DStream;
use crate::error::Result;
use crate::time::Time;

struct RateSource {
    per_second: u64,
    next: u64,
    carry_millis: u64,
}

impl Source<u64> for RateSource {
    fn name(&self) -> String {
        format!("rateStream({}/s)", self.per_second)
    }

    fn capture(&mut self, _: Time, ctx: &SourceContext) -> Result<Option<Batch<u64>>> {
        // Exact over time even when the batch interval does not divide a second evenly.
        let total = self
            .per_second
            .saturating_mul(ctx.batch_duration.millis().max(0) as u64)
            .saturating_add(self.carry_millis);
        let n = total / 1000;
        self.carry_millis = total % 1000;
        let start = self.next;
        self.next += n;
        Ok(Some(Batch::from_vec(
            (start..start + n).collect(),
            ctx.parallelism,
        )))
    }
}

impl StreamingContext {
    /// `records_per_second` records per second of batch time, numbered 0, 1, 2, ...
    pub fn rate_stream(&self, records_per_second: u64) -> DStream<u64> {
        self.input_stream(RateSource {
            per_second: records_per_second,
            next: 0,
            carry_millis: 0,
        })
    }
}
