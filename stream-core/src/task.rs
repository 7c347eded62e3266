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
