//! Tasks: the unit of scale-out. A scale-out runner (stream-kafka's `ScaleOut`) runs one
//! [`StreamingContext`](crate::StreamingContext) per task, a task being one partition of the
//! application's input (and all the keyed state that belongs to it). The runner calls the user's
//! pipeline-building code inside [`TaskScope::enter`]; contexts built there carry the scope, so
//! that sources read only the task's partitions, sinks take the task's stable identity, and every
//! task of the application cuts its batches on the same grid (the agreed zero time).
//!
//! The scope is a plain value: stream-core knows nothing of Kafka. A runner hangs what its own
//! sources and sinks need on [`TaskScope::link`].

use std::any::Any;
use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use crate::time::Time;

/// What a context built for one task of a scaled-out application knows of its task.
#[derive(Clone)]
pub struct TaskScope {
    /// The application id shared by every instance (the consumer group, the prefix of internal
    /// topics and of transactional ids).
    pub app: String,
    /// The task's name, stable across instances (e.g. `clicks-3`): it names the task's
    /// checkpoint directory and its sinks' transactional ids.
    pub task: String,
    /// The input partitions the task reads, as `(topic, partition)`: partition `p` of every
    /// co-partitioned input topic.
    pub partitions: Vec<(String, i32)>,
    /// The application's zero time, agreed by every instance: batches are at `zero + k × batch`.
    pub zero: Option<Time>,
    /// Whatever the runner's sources and sinks need (for Kafka, the group membership).
    pub link: Option<Arc<dyn Any + Send + Sync>>,
    /// Where the task's exchanges go (`repartition_by_key`, `global`): for Kafka, the
    /// application's repartition topics. `None` where the runner offers none: an exchange is
    /// then an error when the pipeline is built.
    pub exchanges: Option<Arc<dyn Exchanges>>,
}

/// The runner's side of the exchanges of a task: records move between the tasks of an
/// application through it (see [`DStream::repartition_by_key`](crate::DStream::repartition_by_key)).
pub trait Exchanges: Send + Sync {
    /// Opens the exchange of stateful operator `op`: to every task by key (`global` false), or
    /// to the application's first task (`global` true).
    fn open(&self, op: usize, global: bool) -> crate::Result<Arc<dyn Exchange>>;
}

/// One exchange of one task: what the task sends for a batch time, and what it receives.
///
/// Records travel as chunks: each a run of postcard-encoded records. A batch's chunks from
/// every task of the application must have arrived before `receive` returns them; a task that
/// sends a batch again (after a crash) sends a second copy, of which readers take one.
pub trait Exchange: Send + Sync {
    /// How many destinations records are routed to (the task count, or 1).
    fn destinations(&self) -> usize;
    /// Whether this task receives records (every task of a by-key exchange; the first task
    /// only of a global one).
    fn receives(&self) -> bool;
    /// Sends this task's records of the batch at `t`: `chunks[d]` go to destination `d` (an
    /// empty list says that there are none: every destination is told the batch is complete).
    fn send(&self, t: Time, chunks: Vec<Vec<Vec<u8>>>) -> crate::Result<()>;
    /// The chunks for this task of the batch at `t`, from every task; `None` when this task
    /// receives nothing (the other tasks of a global exchange). Waits until every task has sent
    /// the batch, or until `cancelled` (the task is stopping) says to give up. `from` is where
    /// to start reading when the exchange must look back (the position `resume` returned for
    /// the batch before `t`).
    fn receive(
        &self,
        t: Time,
        from: Option<i64>,
        cancelled: &dyn Fn() -> bool,
    ) -> crate::Result<Option<Received>>;
}

/// What a task received from an exchange for one batch.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The chunks sent to this task, from every task.
    pub chunks: Vec<Vec<u8>>,
    /// Where to start reading for the next batch (the earliest position that may hold a record
    /// of a later batch), kept in the checkpoint with the batch.
    pub resume: i64,
}

impl fmt::Debug for TaskScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskScope")
            .field("app", &self.app)
            .field("task", &self.task)
            .field("partitions", &self.partitions)
            .field("zero", &self.zero)
            .finish()
    }
}

thread_local! {
    static CURRENT: RefCell<Option<TaskScope>> = const { RefCell::new(None) };
}

impl TaskScope {
    /// Runs `build` with this scope current on this thread: every context built inside it
    /// belongs to the task. The previous scope (if any) is restored afterwards, also on panic.
    pub fn enter<R>(&self, build: impl FnOnce() -> R) -> R {
        struct Restore(Option<TaskScope>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                CURRENT.with(|c| *c.borrow_mut() = previous);
            }
        }
        let previous = CURRENT.with(|c| c.borrow_mut().replace(self.clone()));
        let _restore = Restore(previous);
        build()
    }

    /// The scope current on this thread, if a runner is building a task.
    pub fn current() -> Option<TaskScope> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// The runner's link, if it is of type `L`.
    pub fn link<L: Any + Send + Sync>(&self) -> Option<Arc<L>> {
        self.link.clone().and_then(|l| l.downcast::<L>().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(task: &str) -> TaskScope {
        TaskScope {
            app: "app".into(),
            task: task.into(),
            partitions: vec![("in".into(), 0)],
            zero: None,
            link: Some(Arc::new(7u32)),
            exchanges: None,
        }
    }

    #[test]
    fn a_scope_is_current_inside_enter_only_and_nests() {
        assert!(TaskScope::current().is_none());
        scope("a").enter(|| {
            assert_eq!(TaskScope::current().unwrap().task, "a");
            scope("b").enter(|| assert_eq!(TaskScope::current().unwrap().task, "b"));
            assert_eq!(TaskScope::current().unwrap().task, "a");
        });
        assert!(TaskScope::current().is_none());
        let r = std::panic::catch_unwind(|| scope("c").enter(|| panic!("in build")));
        assert!(r.is_err());
        assert!(TaskScope::current().is_none(), "restored after a panic");
    }

    #[test]
    fn the_link_downcasts_to_its_own_type_only() {
        let s = scope("a");
        assert_eq!(s.link::<u32>().as_deref(), Some(&7));
        assert!(s.link::<String>().is_none());
    }
}
