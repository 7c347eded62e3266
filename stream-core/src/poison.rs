//! Poison records: what happens to a record on which a user function panics.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};

use crate::context::ContextInner;
use crate::error::panic_message;
use crate::time::Time;

/// The policy for a record on which a user function panics (a "poison record").
///
/// Spark fails the task, then the job, and a restarted streaming job replays the record and
/// fails again; Kafka Streams lets the application choose, with its deserialization and
/// processing exception handlers, between failing (`FAIL`), logging and going on (`CONTINUE`),
/// and a dead-letter queue. The same three choices here, per pipeline
/// ([`StreamingContextBuilder::on_record_error`](crate::StreamingContextBuilder::on_record_error))
/// or per operator ([`DStream::on_record_error`](crate::DStream::on_record_error)):
///
/// - [`RecordErrors::fail`] (the default, Spark's): the batch fails with the panic's message.
/// - [`RecordErrors::skip`]: the record is dropped, counted, and logged (the first, then at
///   each power of two); the batch completes and state advances.
/// - [`RecordErrors::dead_letter`]: as `skip`, and the record goes with the error to a function
///   of yours (a file, a topic: `stream_kafka::dead_letter_topic` writes a Kafka topic).
///
/// The operators that call a user function once per record or per key are guarded: `map`,
/// `flat_map`, `filter`, `map_values`, `flat_map_values`, `update_state_by_key` in its per-key
/// forms and `map_with_state`. For the stateful ones the record's key keeps the state it had
/// before the call. Functions over a whole partition or batch (`map_partitions`, `transform`,
/// reduce and combine functions) have no record to skip: a panic there fails the batch.
#[derive(Clone, Default)]
pub struct RecordErrors {
    kind: Kind,
}

#[derive(Clone, Default)]
enum Kind {
    #[default]
    Fail,
    Skip,
    DeadLetter(Arc<dyn Fn(&DeadLetter) + Send + Sync>),
}

impl RecordErrors {
    /// The batch fails (Spark's behaviour, and the default).
    pub fn fail() -> Self {
        RecordErrors { kind: Kind::Fail }
    }

    /// The record is dropped and counted; the batch goes on.
    pub fn skip() -> Self {
        RecordErrors { kind: Kind::Skip }
    }

    /// The record is dropped, counted and handed to `to` with its error; the batch goes on.
    ///
    /// `to` runs on the worker thread that met the record, possibly on several at once. It is
    /// called again for the same record when a batch is computed again (after a restart from a
    /// checkpoint, or when an unpersisted stream is read by two outputs): dead letters are
    /// at-least-once. A panic inside `to` fails the batch.
    pub fn dead_letter(to: impl Fn(&DeadLetter) + Send + Sync + 'static) -> Self {
        RecordErrors {
            kind: Kind::DeadLetter(Arc::new(to)),
        }
    }

    fn is_fail(&self) -> bool {
        matches!(self.kind, Kind::Fail)
    }
}

impl fmt::Debug for RecordErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Fail => "RecordErrors::fail()",
            Kind::Skip => "RecordErrors::skip()",
            Kind::DeadLetter(_) => "RecordErrors::dead_letter(..)",
        })
    }
}

/// A record on which a user function panicked, handed to a [`RecordErrors::dead_letter`]
/// function.
pub struct DeadLetter {
    /// The batch the record belonged to.
    pub batch_time: Time,
    /// The operator whose function panicked, with its id ("map#3").
    pub operator: String,
    /// The panic's message.
    pub error: String,
    record: Box<dyn Any + Send>,
    type_name: &'static str,
}

impl DeadLetter {
    /// The record as the operator received it, if it is an `R`: for `update_state_by_key` a
    /// `(K, Vec<V>)` (the key and its values of the batch), for `map_with_state` a `(K, V)`.
    pub fn record<R: 'static>(&self) -> Option<&R> {
        self.record.downcast_ref()
    }

    /// The record's Rust type.
    pub fn record_type(&self) -> &'static str {
        self.type_name
    }

    /// The record as text, for the types sources and text pipelines carry: strings, byte
    /// vectors (lossily), numbers and pairs of those; other types give `<their type name>`
    /// (use [`record`](Self::record) for them).
    pub fn record_text(&self) -> String {
        text_of(self.record.as_ref()).unwrap_or_else(|| format!("<{}>", self.type_name))
    }
}

impl fmt::Debug for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeadLetter")
            .field("batch_time", &self.batch_time)
            .field("operator", &self.operator)
            .field("error", &self.error)
            .field("record", &self.record_text())
            .finish()
    }
}

fn scalar_text(r: &dyn Any) -> Option<String> {
    macro_rules! try_types {
        ($($t:ty),*) => {
            $(if let Some(v) = r.downcast_ref::<$t>() { return Some(v.to_string()); })*
        };
    }
    try_types!(
        String,
        &'static str,
        std::sync::Arc<str>,
        i64,
        i32,
        u64,
        u32,
        usize,
        f64,
        bool,
        char
    );
    r.downcast_ref::<Vec<u8>>()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

fn text_of(r: &dyn Any) -> Option<String> {
    if let Some(s) = scalar_text(r) {
        return Some(s);
    }
    macro_rules! pairs {
        ($($k:ty),*) => {
            $(
                if let Some((k, v)) = r.downcast_ref::<($k, String)>() { return Some(format!("({k}, {v})")); }
                if let Some((k, v)) = r.downcast_ref::<($k, &'static str)>() { return Some(format!("({k}, {v})")); }
                if let Some((k, v)) = r.downcast_ref::<($k, i64)>() { return Some(format!("({k}, {v})")); }
                if let Some((k, v)) = r.downcast_ref::<($k, i32)>() { return Some(format!("({k}, {v})")); }
                if let Some((k, v)) = r.downcast_ref::<($k, u64)>() { return Some(format!("({k}, {v})")); }
                if let Some((k, v)) = r.downcast_ref::<($k, Vec<i64>)>() { return Some(format!("({k}, {v:?})")); }
                if let Some((k, v)) = r.downcast_ref::<($k, Vec<i32>)>() { return Some(format!("({k}, {v:?})")); }
                if let Some((k, v)) = r.downcast_ref::<($k, Vec<String>)>() { return Some(format!("({k}, {v:?})")); }
            )*
        };
    }
    pairs!(String, &'static str, i64, i32, u64);
    None
}

/// What a guarded operator did with poison records, for `status`, `/metrics` and the
/// dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordErrorCount {
    /// The operator, with its id ("map#3"), or the source ("kafka decoder (group g)").
    pub operator: String,
    /// Records dropped under `skip` or `dead_letter` (or that a source could not decode) since
    /// the context started.
    pub skipped: u64,
    /// Of those, records handed to the dead-letter function.
    pub dead_lettered: u64,
}

/// A function reporting the records a source or operator dropped (see
/// [`StreamingContext::add_record_error_status`](crate::StreamingContext::add_record_error_status)).
pub type RecordErrorStatusFn = Arc<dyn Fn() -> Vec<RecordErrorCount> + Send + Sync>;

/// The per-pipeline policy, every guarded operator's counts, and the sources' reports.
#[derive(Default)]
pub(crate) struct RecordErrorsCell {
    /// Set when the context is built, never changed.
    policy: RecordErrors,
    guards: std::sync::Mutex<Vec<Arc<RecordGuard>>>,
    reports: std::sync::Mutex<Vec<RecordErrorStatusFn>>,
}

impl RecordErrorsCell {
    pub(crate) fn new(policy: RecordErrors) -> Self {
        RecordErrorsCell {
            policy,
            guards: Default::default(),
            reports: Default::default(),
        }
    }

    pub(crate) fn add_report(&self, f: RecordErrorStatusFn) {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(f);
    }

    /// The sources' reports, then every guarded operator's counts.
    pub(crate) fn counts(&self) -> Vec<RecordErrorCount> {
        let reports = self
            .reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut counts: Vec<RecordErrorCount> = reports.iter().flat_map(|f| f()).collect();
        let guards = self.guards.lock().unwrap_or_else(|e| e.into_inner());
        // The operators under `skip` or `dead_letter` (those under `fail` drop nothing).
        counts.extend(
            guards
                .iter()
                .filter(|g| !g.policy().is_fail())
                .map(|g| RecordErrorCount {
                    operator: g.label(),
                    skipped: g.skipped.load(Ordering::Relaxed),
                    dead_lettered: g.dead_lettered.load(Ordering::Relaxed),
                }),
        );
        counts
    }
}

/// The guard of one operator's user function: its own policy if set, else the context's.
pub(crate) struct RecordGuard {
    name: String,
    id: OnceLock<usize>,
    ctx: OnceLock<Weak<ContextInner>>,
    own: RwLock<Option<RecordErrors>>,
    skipped: AtomicU64,
    dead_lettered: AtomicU64,
}

impl RecordGuard {
    pub(crate) fn new(name: &str) -> Arc<Self> {
        Arc::new(RecordGuard {
            name: name.to_string(),
            id: OnceLock::new(),
            ctx: OnceLock::new(),
            own: RwLock::new(None),
            skipped: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
        })
    }

    /// Ties the guard to its node (`id`) and context, where its counts are reported.
    pub(crate) fn attach(self: &Arc<Self>, id: usize, ctx: &Weak<ContextInner>) {
        let _ = self.id.set(id);
        let _ = self.ctx.set(ctx.clone());
        if let Some(c) = ctx.upgrade() {
            c.record_errors
                .guards
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(self.clone());
        }
    }

    pub(crate) fn set(&self, policy: RecordErrors) {
        *self.own.write().unwrap_or_else(|e| e.into_inner()) = Some(policy);
    }

    fn label(&self) -> String {
        match self.id.get() {
            Some(id) => format!("{}#{id}", self.name),
            None => self.name.clone(),
        }
    }

    /// The policy in force: its own, else its context's, else (detached) `fail`.
    fn policy(&self) -> RecordErrors {
        let own = self.own.read().unwrap_or_else(|e| e.into_inner()).clone();
        own.or_else(|| {
            let ctx = self.ctx.get()?.upgrade()?;
            Some(ctx.record_errors.policy.clone())
        })
        .unwrap_or_default()
    }

    /// The policy in force for the batch at `time`: `None` when panics fail the batch, so that
    /// the operator runs its function unguarded, as fast as without a policy.
    pub(crate) fn for_batch(self: &Arc<Self>, time: Time) -> Option<Guarded> {
        let policy = self.policy();
        (!policy.is_fail()).then(|| Guarded {
            guard: self.clone(),
            policy,
            time,
        })
    }
}

/// A guard with its policy resolved for one batch.
#[derive(Clone)]
pub(crate) struct Guarded {
    guard: Arc<RecordGuard>,
    policy: RecordErrors,
    time: Time,
}

impl Guarded {
    /// `f(x)`, or `None` when it panics (the record counted, logged and dead-lettered).
    pub(crate) fn call<A: Clone + Send + 'static, R>(
        &self,
        x: A,
        f: impl FnOnce(A) -> R,
    ) -> Option<R> {
        let kept = self.keeps_records().then(|| x.clone());
        match self.catch(|| f(x)) {
            Ok(r) => Some(r),
            Err(e) => {
                self.failed(e, kept);
                None
            }
        }
    }

    /// `f()`, or the panic's message.
    pub(crate) fn catch<R>(&self, f: impl FnOnce() -> R) -> Result<R, String> {
        catch_unwind(AssertUnwindSafe(f)).map_err(|p| panic_message(&*p))
    }

    /// Counts, logs and dead-letters a record whose call panicked with `error`; `record` is the
    /// copy kept for a dead letter.
    pub(crate) fn failed<A: Send + 'static>(&self, error: String, record: Option<A>) {
        let g = &self.guard;
        let n = g.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        let operator = g.label();
        if n.is_power_of_two() {
            tracing::warn!(
                "{operator} panicked on a record of the batch at {} and skipped it ({n} skipped so far): {error}",
                self.time
            );
        }
        if let (Kind::DeadLetter(to), Some(record)) = (&self.policy.kind, record) {
            to(&DeadLetter {
                batch_time: self.time,
                operator,
                error,
                record: Box::new(record),
                type_name: std::any::type_name::<A>(),
            });
            g.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Whether records must be kept for dead letters (a copy before each call).
    pub(crate) fn keeps_records(&self) -> bool {
        matches!(self.policy.kind, Kind::DeadLetter(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(record: Box<dyn Any + Send>, type_name: &'static str) -> DeadLetter {
        DeadLetter {
            batch_time: Time::from_millis(1000),
            operator: "map#1".into(),
            error: "boom".into(),
            record,
            type_name,
        }
    }

    #[test]
    fn dead_letters_render_text_records_and_name_other_types() {
        assert_eq!(
            letter(Box::new("a b".to_string()), "String").record_text(),
            "a b"
        );
        assert_eq!(
            letter(
                Box::new(("k".to_string(), vec![1i64, 2])),
                "(String, Vec<i64>)"
            )
            .record_text(),
            "(k, [1, 2])"
        );
        let other = letter(
            Box::new(
                vec![1u8, 2]
                    .into_iter()
                    .map(|b| b as u16)
                    .collect::<Vec<u16>>(),
            ),
            "Vec<u16>",
        );
        assert_eq!(other.record_text(), "<Vec<u16>>");
        assert_eq!(other.record::<Vec<u16>>(), Some(&vec![1u16, 2]));
    }

    #[test]
    fn an_unattached_guard_fails_and_a_set_policy_skips() {
        let g = RecordGuard::new("map");
        assert!(g.for_batch(Time::from_millis(0)).is_none());
        g.set(RecordErrors::skip());
        let b = g.for_batch(Time::from_millis(0)).expect("skip is in force");
        assert_eq!(b.call(2, |x: i32| x + 1), Some(3));
        assert_eq!(b.call(2, |_: i32| -> i32 { panic!("poison") }), None);
        assert_eq!(g.skipped.load(Ordering::Relaxed), 1);
    }
}
