//! Output operations: what turns a DStream into effects, one job per batch (Spark's
//! `foreachRDD`, `print`, `saveAsTextFiles`). A stream with no batch at some time (Spark's
//! `None` RDD) runs no job then.
//!
//! Delivery: `print` and `foreach_batch` run at least once per batch (after recovery a batch may
//! run again); `save_as_text_files` is exactly-once, because each batch's directory appears
//! atomically under a name fixed by its batch time, and a replayed batch that finds it keeps it.

mod custom;
mod text_files;

pub(crate) use custom::SinkControl;
pub use custom::{Sink, SinkContext};

use std::io::Write;
use std::sync::Arc;

use crate::batch::{Batch, Data};
use crate::dstream::{AnyNode, DStream};
use crate::error::{Error, OutputError, Result};
use crate::show::Show;
use crate::time::Time;

pub(crate) type Job = Box<dyn FnOnce() -> Result<()> + Send>;

/// An output operation as the scheduler sees it.
pub(crate) trait OutputOp: Send + Sync {
    fn node(&self) -> Arc<dyn AnyNode>;
    /// What it is, for metrics: "print of map #3".
    fn describe(&self) -> String;
    /// The job of batch `t`, or `None` when the stream has no batch at `t`.
    fn generate(&self, t: Time) -> Result<Option<Job>>;
}

type BatchFn<T> = Arc<dyn Fn(Batch<T>, Time) -> Result<()> + Send + Sync>;

struct ForEach<T> {
    kind: &'static str,
    stream: DStream<T>,
    f: BatchFn<T>,
}

impl<T: Data> OutputOp for ForEach<T> {
    fn node(&self) -> Arc<dyn AnyNode> {
        self.stream.any()
    }

    fn describe(&self) -> String {
        let base = self.stream.node.base();
        format!("{} of {} #{}", self.kind, base.name, base.id)
    }

    fn generate(&self, t: Time) -> Result<Option<Job>> {
        let Some(batch) = self.stream.get_or_compute(t)? else {
            return Ok(None);
        };
        let f = self.f.clone();
        Ok(Some(Box::new(move || f(batch, t))))
    }
}

/// What an output function may return: `()`, or a `Result` whose error fails the batch.
pub trait OutputResult {
    /// The outcome for the batch at `time`.
    fn into_result(self, time: Time) -> Result<()>;
}

impl OutputResult for () {
    fn into_result(self, _: Time) -> Result<()> {
        Ok(())
    }
}

impl<E: std::fmt::Display> OutputResult for std::result::Result<(), E> {
    fn into_result(self, time: Time) -> Result<()> {
        self.map_err(|e| Error::user(time, e))
    }
}

/// The text `print` writes for a batch, as Spark's `DStream.print` does.
pub(crate) fn print_text<T: Show>(time: Time, first: &[T], num: usize) -> String {
    let mut s = String::new();
    s.push_str("-------------------------------------------\n");
    s.push_str(&format!("Time: {time}\n"));
    s.push_str("-------------------------------------------\n");
    for r in first.iter().take(num) {
        r.show_to(&mut s);
        s.push('\n');
    }
    if first.len() > num {
        s.push_str("...\n");
    }
    s.push('\n');
    s
}

impl<T: Data> DStream<T> {
    /// Runs `f` on every batch with its time (Spark's `foreachRDD`). `f` may return `()` or a
    /// `Result`; an error (or a panic) fails that batch only. Fails if the context has started
    /// or stopped, as Spark does.
    pub fn foreach_batch<R: OutputResult>(
        &self,
        f: impl Fn(Batch<T>, Time) -> R + Send + Sync + 'static,
    ) -> Result<()> {
        self.output("foreach_batch", f)
    }

    /// An output operation of `kind` running `f` on every batch.
    pub(crate) fn output<R: OutputResult>(
        &self,
        kind: &'static str,
        f: impl Fn(Batch<T>, Time) -> R + Send + Sync + 'static,
    ) -> Result<()> {
        let ctx = self.context()?;
        let op = ForEach {
            kind,
            stream: self.clone(),
            f: Arc::new(move |b, t| f(b, t).into_result(t)),
        };
        ctx.register_output(self, Arc::new(op))
    }

    /// Prints the first ten records of every batch under Spark's header.
    ///
    /// ```text
    /// -------------------------------------------
    /// Time: 1000 ms
    /// -------------------------------------------
    /// (a,2)
    /// (b,1)
    /// ```
    pub fn print(&self) -> Result<()>
    where
        T: Show,
    {
        self.print_n(10)
    }

    /// Prints the first `num` records of every batch (and `...` when there are more).
    pub fn print_n(&self, num: usize) -> Result<()>
    where
        T: Show,
    {
        self.output("print", move |b, t| -> Result<()> {
            let first = b.take(num + 1);
            let mut out = std::io::stdout().lock();
            out.write_all(print_text(t, &first, num).as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| OutputError::Stdout(Arc::new(e)).into())
        })
    }

    /// Writes every batch as text, one record per line, into the directory
    /// `"{prefix}-{time in ms}"` (plus `".{suffix}"` when `suffix` is not empty), as Spark
    /// names them, with one `part-NNNNN` file per partition and a `_SUCCESS` marker. Each
    /// directory appears atomically; a batch whose directory already exists is not written
    /// again (exactly-once on replay).
    pub fn save_as_text_files(&self, prefix: impl Into<String>, suffix: &str) -> Result<()>
    where
        T: Show,
    {
        let prefix = prefix.into();
        let suffix = suffix.to_string();
        self.output("save_as_text_files", move |b, t| {
            text_files::save_batch(&b, &text_files::batch_dir(&prefix, &suffix, t))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn print_format_matches_spark() {
        let t = Time::from_millis(1000);
        assert_eq!(
            print_text(t, &[("a", 1), ("b", 2)], 10),
            "-------------------------------------------\nTime: 1000 ms\n-------------------------------------------\n(a,1)\n(b,2)\n\n"
        );
        assert_eq!(
            print_text(t, &[1, 2, 3], 2),
            "-------------------------------------------\nTime: 1000 ms\n-------------------------------------------\n1\n2\n...\n\n"
        );
    }
}
