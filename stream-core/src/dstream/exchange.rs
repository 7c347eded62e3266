//! Exchanges: records that move between the tasks of a scaled-out application.
//!
//! In one process an exchange changes nothing: every record is already where every key's state
//! is. In a task of a scaled-out application (see [`TaskScope`]) a task holds one partition of
//! the input, so a keyed operation needs the records of its keys from every task first:
//!
//! - [`DStream::repartition_by_key`] sends each record to the task of its key, the partition
//!   [`kafka_partition`](crate::kafka_partition) gives for the postcard encoding of the key, over
//!   the application's task count;
//! - [`DStream::global`] sends every record to the application's first task, for results over
//!   all keys (a count, a top 10): downstream of it, only that task computes; the others' batches
//!   of it do not exist (their outputs of it do nothing).
//!
//! Each batch, a task sends its records of the batch (or only "nothing from me" to each
//! destination) and then waits until every task has sent the batch: the tasks of an application
//! go on in step, as one process would, and a batch's records are those of the same batch time
//! on every task. What a task received up to is kept with its batch in the checkpoint (and so
//! in its changelog), so that the task resumes exactly there, on any instance.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::DStream;
use crate::batch::{Batch, Data, Key};
use crate::checkpoint::keyed::{encode_into, time_bytes, time_from_bytes};
use crate::checkpoint::{CommitBatch, Durable, Store};
use crate::error::{CheckpointError, ContextError, Error, Result};
use crate::task::{Exchange, TaskScope};
use crate::time::{Duration, Time};

/// Records go to the exchange in chunks of about this many bytes.
const CHUNK_BYTES: usize = 256 << 10;
/// `sent` -> the last batch time this task sent (big-endian i64 millis).
const KEY_SENT: &[u8] = b"sent";
/// `r <time>` -> where reading resumes after the batch of `time` (big-endian i64).
const TAG_RESUME: u8 = b'r';

fn resume_key(t: Time) -> Vec<u8> {
    let mut k = vec![TAG_RESUME];
    k.extend_from_slice(&time_bytes(t.millis()));
    k
}

fn be_i64(what: &str, b: &[u8]) -> Result<i64> {
    <[u8; 8]>::try_from(b).map(i64::from_be_bytes).map_err(|_| {
        CheckpointError::Encode {
            what: what.to_string(),
            message: format!("{} bytes, not 8", b.len()),
        }
        .into()
    })
}

/// How records find their destination.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Route {
    ByKey,
    Global,
}

impl Route {
    /// The operation's name (Spark-style, as the DSL and the shape write it).
    fn name(self) -> &'static str {
        match self {
            Route::ByKey => "repartitionByKey",
            Route::Global => "global",
        }
    }
}

/// The durable side of an exchange: the last batch sent, and where reading resumes after each
/// recent batch (windows may compute a past batch again after a restart).
struct ExchangeOp {
    id: usize,
    route: Route,
    records: &'static str,
    /// How far back batches are read again (the node's remember duration, plus slack).
    keep: Arc<std::sync::atomic::AtomicI64>,
    slide: Duration,
    staged: Mutex<Staged>,
}

#[derive(Default)]
struct Staged {
    sent: Option<Time>,
    resume: BTreeMap<Time, i64>,
}

impl ExchangeOp {
    fn staged(&self) -> std::sync::MutexGuard<'_, Staged> {
        self.staged.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last batch this task sent, committed or staged.
    fn sent_through(&self, store: &Store) -> Result<Option<Time>> {
        if let Some(t) = self.staged().sent {
            return Ok(Some(t));
        }
        match store
            .db()
            .get_cf(store.cf(self.id)?, KEY_SENT)
            .map_err(|e| store.error(e))?
        {
            Some(b) => Ok(Some(Time::from_millis(be_i64(
                "the exchange's last batch",
                &b,
            )?))),
            None => Ok(None),
        }
    }

    /// Where reading resumes for the batch at `t`: the position kept after the latest batch
    /// before `t`, staged or committed.
    fn resume_before(&self, store: &Store, t: Time) -> Result<Option<i64>> {
        let staged = self
            .staged()
            .resume
            .range(..t)
            .next_back()
            .map(|(k, v)| (*k, *v));
        let mut it = store.db().raw_iterator_cf(store.cf(self.id)?);
        it.seek_for_prev(resume_key(t - Duration::from_millis(1)));
        let committed = match (it.key(), it.value()) {
            (Some(k), Some(v)) if k.first() == Some(&TAG_RESUME) => {
                match time_from_bytes(&k[1..]) {
                    Some(at) => Some((Time::from_millis(at), be_i64("an exchange position", v)?)),
                    None => None,
                }
            }
            _ => None,
        };
        it.status().map_err(|e| store.error(e))?;
        Ok(match (staged, committed) {
            (Some(a), Some(b)) => Some(if a.0 >= b.0 { a.1 } else { b.1 }),
            (a, b) => a.or(b).map(|x| x.1),
        })
    }
}

impl Durable for ExchangeOp {
    fn describe(&self) -> String {
        format!("{} (records {})", self.route.name(), self.records)
    }

    fn commit(&self, _: &Store, t: Time, wb: &mut CommitBatch<'_>) -> Result<()> {
        let staged = std::mem::take(&mut *self.staged());
        if let Some(sent) = staged.sent {
            wb.put(self.id, KEY_SENT, &sent.millis().to_be_bytes())?;
        }
        for (at, pos) in &staged.resume {
            wb.put(self.id, &resume_key(*at), &pos.to_be_bytes())?;
        }
        if !staged.resume.is_empty() {
            // Positions of batches no window reads again.
            let keep =
                self.keep.load(std::sync::atomic::Ordering::Relaxed) + 4 * self.slide.millis();
            wb.delete_range(
                self.id,
                &resume_key(Time::from_millis(i64::MIN)),
                &resume_key(t - Duration::from_millis(keep)),
            )?;
        }
        Ok(())
    }

    fn abort(&self, _: Time) {
        *self.staged() = Staged::default();
    }
}

impl<K: Key + Serialize + DeserializeOwned, V: Data + Serialize + DeserializeOwned>
    DStream<(K, V)>
{
    /// Moves every record to the task that owns its key, in a scaled-out application (Kafka
    /// Streams' `repartition`); in one process it changes nothing.
    ///
    /// Put it before keyed operations (`reduce_by_key`, windows, `update_state_by_key`,
    /// `map_with_state`, joins) whose key is not the key the input topic is partitioned by: a
    /// key's records then meet in one task, and its state lives there. A record goes to the
    /// task [`kafka_partition`](crate::kafka_partition) of its key's postcard encoding names;
    /// records keep their batch time. Keys and values must be owned serde types (`String`, not
    /// `&str`).
    ///
    /// ```
    /// use stream_core::testing::TestContext;
    /// let tc = TestContext::new();
    /// let clicks = tc.input_stream(vec![vec![("u1", 1), ("u2", 1), ("u1", 1)]]);
    /// let per_user = clicks
    ///     .map(|(u, n)| (u.to_string(), n))
    ///     .repartition_by_key()
    ///     .reduce_by_key(|a, b| a + b);
    /// let out = tc.collect(&per_user).unwrap();
    /// tc.run(1).unwrap();
    /// let mut got = out.batch(0);
    /// got.sort();
    /// assert_eq!(got, vec![("u1".to_string(), 2), ("u2".to_string(), 1)]);
    /// ```
    pub fn repartition_by_key(&self) -> DStream<(K, V)> {
        self.exchange(Route::ByKey, |(k, v), route| {
            let mut key = std::mem::take(&mut route.key);
            key.clear();
            encode_into("a key", k, &mut key)?;
            let dest = crate::partitioner::kafka_partition(&key, route.destinations);
            let buf = route.chunk(dest);
            buf.extend_from_slice(&key);
            let done = encode_into("a value", v, buf);
            route.key = key;
            done
        })
    }
}

impl<T: Data + Serialize + DeserializeOwned> DStream<T> {
    /// Brings every task's records together in one task (the application's first), in a
    /// scaled-out application; in one process it changes nothing.
    ///
    /// For results over all keys: a count, a sum, a top 10. Downstream of `global()` only the
    /// first task computes; in the other tasks the stream has no batches, and outputs of it do
    /// nothing. Each batch costs every task one message to the first task; what follows runs
    /// on one task only, so reduce before (per key, or to a top N per task) where you can.
    ///
    /// ```
    /// use stream_core::testing::TestContext;
    /// let tc = TestContext::new();
    /// let words = tc.input_stream(vec![vec!["a", "b", "a"]]);
    /// let total = words.map(str::to_string).global().count();
    /// let out = tc.collect(&total).unwrap();
    /// tc.run(1).unwrap();
    /// assert_eq!(out.batch(0), vec![3]);
    /// ```
    pub fn global(&self) -> DStream<T> {
        self.exchange(Route::Global, |x, route| {
            let buf = route.chunk(0);
            encode_into("a record", x, buf)
        })
    }

    fn exchange(
        &self,
        route: Route,
        place: impl Fn(&T, &mut Router) -> Result<()> + Send + Sync + 'static,
    ) -> DStream<T> {
        let name = route.name();
        let Some(scope) = TaskScope::current() else {
            return self.lift(name, |b, _| Ok(b));
        };
        let owner = self.owner();
        let Some(ctx) = owner.ctx.upgrade() else {
            return self.lift(name, |b, _| Ok(b));
        };
        ctx.exchanges
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let parent = self.clone();
        let keep = self.remember_cell();
        let op = ctx.register_durable(|id| ExchangeOp {
            id,
            route,
            records: std::any::type_name::<T>(),
            keep: keep.clone(),
            slide: parent.slide_duration(),
            staged: Mutex::new(Staged::default()),
        });
        let exchange: std::result::Result<Arc<dyn Exchange>, Error> = match &scope.exchanges {
            Some(x) => x.open(op.id, route == Route::Global),
            None => Err(ContextError::InvalidArgument(format!(
                "task {} of application {}: {name} needs the runner's exchanges, and this task's runner has none",
                scope.task, scope.app
            ))
            .into()),
        };
        let exchange_receives = exchange.as_ref().ok().map(|x| x.receives());
        let problem = exchange
            .as_ref()
            .err()
            .map(|e| ContextError::InvalidArgument(e.to_string()));
        let weak = owner.ctx.clone();
        let node = DStream::new_node_checked(
            &owner,
            name,
            vec![self.any()],
            self.slide_duration(),
            problem,
            move |t| {
                let exchange = exchange.as_ref().map_err(Clone::clone)?;
                let ctx = weak.upgrade().ok_or(ContextError::ContextDropped)?;
                let store = ctx.store().cloned().ok_or(CheckpointError::NotSet)?;
                if op.sent_through(&store)?.is_none_or(|s| t > s) {
                    let records = parent
                        .get_or_compute(t)?
                        .map(Batch::into_vec)
                        .unwrap_or_default();
                    let mut router = Router::new(exchange.destinations());
                    for r in &records {
                        place(r, &mut router)?;
                    }
                    exchange.send(t, router.finish())?;
                    op.staged().sent = Some(t);
                }
                let from = op.resume_before(&store, t)?;
                let cancelled = || ctx.is_stopping();
                let Some(got) = exchange.receive(t, from, &cancelled)? else {
                    return Ok(None);
                };
                op.staged().resume.insert(t, got.resume);
                let mut out = Vec::new();
                for chunk in &got.chunks {
                    let mut rest = chunk.as_slice();
                    while !rest.is_empty() {
                        let (x, tail) = postcard::take_from_bytes::<T>(rest).map_err(|e| {
                            CheckpointError::Encode {
                                what: format!("a record received by {name} for the batch at {t}"),
                                message: e.to_string(),
                            }
                        })?;
                        out.push(x);
                        rest = tail;
                    }
                }
                Ok(Some(Batch::from_vec(out, ctx.parallelism)))
            },
        );
        if exchange_receives == Some(false) {
            // Downstream of a global exchange, in a task that does not combine: nothing to do.
            node.node.base.set_children_elsewhere();
        }
        // Every batch, whether or not an output reads the stream then (a window reads it only
        // at its slide): the other tasks wait for this task's part of each batch.
        let _ = node.output("exchange", |_, _| ());
        node
    }
}

/// Splits records into chunks per destination.
struct Router {
    destinations: usize,
    chunks: Vec<Vec<Vec<u8>>>,
    key: Vec<u8>,
}

impl Router {
    fn new(destinations: usize) -> Router {
        Router {
            destinations: destinations.max(1),
            chunks: vec![Vec::new(); destinations.max(1)],
            key: Vec::new(),
        }
    }

    /// The open chunk of destination `d`, a new one when the last is full.
    fn chunk(&mut self, d: usize) -> &mut Vec<u8> {
        let list = &mut self.chunks[d];
        if list.last().is_none_or(|c| c.len() >= CHUNK_BYTES) {
            list.push(Vec::with_capacity(4096));
        }
        list.last_mut().expect("pushed above")
    }

    fn finish(self) -> Vec<Vec<Vec<u8>>> {
        self.chunks
    }
}
