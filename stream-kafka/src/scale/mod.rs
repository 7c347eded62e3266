//! Scale-out on Kafka, the way Kafka Streams does it: run the same binary N times with the same
//! application id, and Kafka's consumer-group protocol spreads the work. There is no driver and
//! no scheduler of ours. See `docs/scaling.md`.
//!
//! - A **task** is one partition `p` of the application's input topics (partition `p` of every
//!   co-partitioned topic) and all the keyed state that belongs to it. Each task runs as a
//!   [`StreamingContext`] of its own, built by your code inside the task's [`TaskScope`]: its
//!   Kafka sources read only the task's partitions, its state and positions live in a checkpoint
//!   of its own (`<root>/<task>`), its exactly-once sinks take the task's transactional id (so
//!   that the task's next owner fences this one), and it cuts batches on the application's grid.
//! - **Membership.** One consumer per instance joins the group (`group.id` = the application
//!   id) with the cooperative-sticky assignor and is given a share of the first topic's
//!   partitions; the instance starts and stops tasks as partitions come and go.
//! - **Revocation.** A task whose partition leaves finishes its batch in flight and commits it
//!   before Kafka gives the partition to another instance.
//! - **Agreement.** `<app>-meta` holds the application's facts (zero time, batch interval,
//!   pipeline shape, task topics and partition count), written by the first instance; every
//!   instance takes the first record, and one whose pipeline differs refuses to join.

mod changelog;
#[cfg(feature = "dashboard")]
mod dashboard;
mod exchange;
mod membership;
mod meta;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration as StdDuration, SystemTime};

use stream_core::{
    BatchInfo, Error, ScaleError, StreamingContext, StreamingListener, TaskScope, Time,
};

use membership::{Assignments, Membership, MembershipSettings};
pub(crate) use meta::AppRecord;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// What a task's sources and sinks take from the instance that runs it ([`TaskScope::link`]).
pub(crate) struct TaskLink {
    membership: Weak<Membership>,
    /// Whether the pipeline has state (a task with state may not resume from the group's
    /// offsets without that state).
    pub(crate) stateful: bool,
    /// Set by a source that found the task's local checkpoint behind the group's offsets.
    pub(crate) stale: AtomicBool,
    /// Set when the instance stops the task (its partition is revoked, the instance leaves): a
    /// batch that fails then (one that waited for other tasks at an exchange and gave up) is
    /// the next owner's to process, not an error of this instance.
    pub(crate) stopping: AtomicBool,
}

impl TaskLink {
    /// Commits offsets to the group as this instance's member.
    pub(crate) fn commit(&self, offsets: &[(String, i32, i64)]) {
        if let Some(m) = self.membership.upgrade() {
            m.commit(offsets);
        }
    }
}

/// A task's role on this instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskRole {
    /// Processing its partitions.
    Active,
    /// Assigned here, bringing its state up to date from its changelogs before it starts:
    /// `read` of `of` changelog offsets so far (`of` is 0 until the changelogs' ends are known).
    Restoring {
        /// Changelog offsets read.
        read: u64,
        /// Changelog offsets to read.
        of: u64,
    },
    /// Run by another instance; this one keeps a warm copy of its state by tailing its
    /// changelogs ([`ScaleOutBuilder::standby_replicas`]), so that it restores almost nothing
    /// if the task comes here.
    Standby {
        /// The task's last batch in the copy, if any.
        batch: Option<Time>,
        /// When the copy last caught up with the changelogs.
        refreshed: Option<SystemTime>,
    },
}

impl TaskRole {
    /// `active`, `restoring` or `standby`, as the dashboard and `/metrics` name it.
    pub fn name(&self) -> &'static str {
        match self {
            TaskRole::Active => "active",
            TaskRole::Restoring { .. } => "restoring",
            TaskRole::Standby { .. } => "standby",
        }
    }
}

/// One task of this instance.
#[derive(Debug, Clone)]
pub struct TaskStatus {
    /// The task's name (`<first topic>-<partition>`).
    pub task: String,
    /// Its input partitions.
    pub partitions: Vec<(String, i32)>,
    /// What the instance does with it.
    pub role: TaskRole,
    /// Since when this instance has it.
    pub since: SystemTime,
    /// Batches the task completed on this instance.
    pub completed_batches: u64,
    /// The task's last completed batch, if any.
    pub last_batch: Option<Time>,
    /// How its state was brought up to date when it came here (stateful pipelines).
    pub restore: Option<RestoreInfo>,
}

/// What a task's restore from its changelogs did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreInfo {
    /// State changes applied.
    pub changes: u64,
    /// Bytes of changelog read (keys and values).
    pub bytes: u64,
    /// Whether a local copy of the state was there (only the changelogs' tail was read).
    pub from_local: bool,
    /// How long it took, from opening the checkpoint to the task's state being current.
    pub elapsed: StdDuration,
}

/// An instance's view of its application.
#[derive(Debug, Clone)]
pub struct ScaleOutStatus {
    /// The application id.
    pub app: String,
    /// The tasks this instance runs or restores, and those it keeps standby copies of (see
    /// each one's [`role`](TaskStatus::role)).
    pub tasks: Vec<TaskStatus>,
    /// How many tasks the application has (the partitions of its topics).
    pub total_tasks: usize,
    /// The last rebalance this instance took part in: when, and what it did here.
    pub last_rebalance: Option<(SystemTime, String)>,
    /// The application's zero time: batches are at `zero + k × interval` on every instance.
    pub zero: Time,
}

/// A member of the application's consumer group, as the group coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id the coordinator gave it.
    pub member: String,
    /// Its `client.id` (`<app>-<host>-<pid>-<n>` unless set with [`ScaleOutBuilder::set`]).
    pub client: String,
    /// The host it connects from.
    pub host: String,
    /// The partitions assigned to it.
    pub partitions: Vec<(String, i32)>,
    /// Whether it is this instance.
    pub me: bool,
}

/// Settings of a scaled-out application; see [`ScaleOut::new`] (and [`ScaleOut`] for a whole
/// pipeline).
///
/// ```no_run
/// use std::time::Duration;
/// use stream_core::prelude::*;
/// use stream_kafka::ScaleOut;
///
/// let instance = ScaleOut::new("sessions", "broker:9092")
///     .topics(["clicks"])
///     .checkpoint("/var/lib/sessions")          // local RocksDB copies of the tasks' state
///     .session_timeout(Duration::from_secs(10))  // how soon a dead instance is noticed
///     .standby_replicas(1)                       // warm copies for fast failover
///     .set("security.protocol", "SSL")
///     .run(|_task| StreamingContext::new(Seconds(1)))?;
/// instance.await_termination()?;
/// # Ok::<(), stream_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ScaleOutBuilder {
    app: String,
    brokers: String,
    topics: Vec<String>,
    checkpoint: Option<PathBuf>,
    session_timeout: StdDuration,
    properties: Vec<(String, String)>,
    stop_on_signal: bool,
    timeout: StdDuration,
    standby_replicas: usize,
    standby_refresh: StdDuration,
    start_threads: usize,
    instance_id: Option<String>,
}

/// Scale-out on Kafka: the entry point.
///
/// ```no_run
/// use stream_core::prelude::*;
/// use stream_kafka::{Delivery, KafkaSink, KafkaSource, KafkaStreams, SaveToKafka, ScaleOut};
///
/// # fn main() -> Result<(), Error> {
/// let brokers = "127.0.0.1:9092";
/// let instance = ScaleOut::new("page-counts", brokers)
///     .topics(["pages"])
///     .checkpoint("/var/lib/page-counts")
///     .run(move |_task| {
///         let ssc = StreamingContext::new(Seconds(1))?;
///         let pages = ssc.kafka_stream(KafkaSource::strings(brokers).topics(["pages"]).build()?);
///         pages
///             .map(|p| (p, 1i64))
///             .update_state_by_key(|vs: Vec<i64>, s: Option<i64>| Some(s.unwrap_or(0) + vs.iter().sum::<i64>()))
///             .save_to_kafka(KafkaSink::json(brokers, "page-counts").delivery(Delivery::ExactlyOnce))?;
///         Ok(ssc)
///     })?;
/// instance.await_termination()
/// # }
/// ```
#[derive(Debug)]
pub struct ScaleOut;

impl ScaleOut {
    /// An application with this id (the consumer group, the prefix of internal topics and of
    /// transactional ids), on these brokers.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(app: impl Into<String>, brokers: impl Into<String>) -> ScaleOutBuilder {
        ScaleOutBuilder {
            app: app.into(),
            brokers: brokers.into(),
            topics: Vec::new(),
            checkpoint: None,
            session_timeout: StdDuration::from_secs(10),
            properties: Vec::new(),
            stop_on_signal: true,
            timeout: StdDuration::from_secs(30),
            standby_replicas: 0,
            standby_refresh: StdDuration::from_secs(2),
            start_threads: std::thread::available_parallelism()
                .map_or(2, |n| 2 * n.get())
                .clamp(2, 8),
            instance_id: None,
        }
    }
}

impl ScaleOutBuilder {
    /// The input topics whose partitions are the tasks: partition `p` of each (they must have
    /// the same partition count: co-partitioned, as Kafka Streams requires for joins). Every
    /// Kafka source of the pipeline reads some of them.
    pub fn topics<S: Into<String>>(mut self, topics: impl IntoIterator<Item = S>) -> Self {
        self.topics = topics.into_iter().map(Into::into).collect();
        self
    }

    /// The directory under which each task this instance runs keeps its checkpoint
    /// (`<root>/<task>`). Required, unless the pipeline sets a checkpoint directory itself (that
    /// directory is then the root).
    pub fn checkpoint(mut self, root: impl AsRef<Path>) -> Self {
        self.checkpoint = Some(root.as_ref().to_path_buf());
        self
    }

    /// How long the group waits for a silent instance before moving its tasks (Kafka's
    /// `session.timeout.ms`, default 10 s; Kafka accepts 6 s to 5 min unless the brokers'
    /// `group.min.session.timeout.ms` allows less).
    pub fn session_timeout(mut self, timeout: StdDuration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// A librdkafka property of the group consumer (`security.protocol`, `sasl.*`, ...).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    /// Whether Ctrl-C / SIGTERM stop the instance gracefully (default true): it leaves the
    /// group, each task finishing and committing its batch; a second signal ends the process.
    pub fn stop_gracefully_on_signal(mut self, yes: bool) -> Self {
        self.stop_on_signal = yes;
        self
    }

    /// Warm copies of each stateful task kept on `n` other instances (default 0, as Kafka
    /// Streams' `num.standby.replicas`). The group's members, in the order of their member ids,
    /// are a ring, and task `p`'s copies are kept by the members at positions `p` to `p + n`
    /// other than its owner; each brings its local copy of the task's state up to date from
    /// the changelogs every [`standby_refresh`] (reading, never writing: the owner is not
    /// fenced). When a task moves to an instance that holds a copy,
    /// its restore reads only the changelogs' tail since the last refresh. A copy costs the
    /// disk of the task's state and the reads of its changelogs.
    ///
    /// [`standby_refresh`]: Self::standby_refresh
    pub fn standby_replicas(mut self, n: usize) -> Self {
        self.standby_replicas = n;
        self
    }

    /// How often standby copies catch up with their changelogs (default 2 s).
    pub fn standby_refresh(mut self, every: StdDuration) -> Self {
        self.standby_refresh = every.max(StdDuration::from_millis(100));
        self
    }

    /// How many tasks may start at once, each restoring its state (default: twice the
    /// machine's cores, from 2 to 8). A restore is reading the changelogs and writing
    /// RocksDB, and waits for the broker's fetches about half the time: tasks that start
    /// together (an instance's start, a failover that moves several) restore side by side,
    /// more of them than there are cores. 1 starts them one after another.
    pub fn start_threads(mut self, n: usize) -> Self {
        self.start_threads = n.max(1);
        self
    }

    /// Static membership (Kafka's `group.instance.id`, as Kafka Streams'): this instance's
    /// identity in the group, the same across its restarts and distinct from every other
    /// instance's (e.g. the host's or the pod's name). An instance that crashes keeps its tasks
    /// until it is back, for up to the session timeout: started again within it, it gets the
    /// same tasks without a rebalance and restores only its local copies' tail, and the other
    /// instances' tasks never move. Its tasks (and those waiting for them at exchanges) pause
    /// meanwhile; only after the session timeout do they move elsewhere. Pair it with a
    /// session timeout longer than a restart takes. An instance stopped gracefully still
    /// leaves the group at once (its tasks move), with or without an id.
    pub fn instance_id(mut self, id: impl Into<String>) -> Self {
        self.instance_id = Some(id.into());
        self
    }

    /// How long set-up calls to the brokers may take (default 30 s).
    pub fn broker_timeout(mut self, timeout: StdDuration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Creates the internal topics that do not exist (in one request), then refuses to go on
    /// if one has another partition count than it must (`why` says what that would break).
    fn ensure_partitions(
        &self,
        admin: &crate::admin::Admin,
        topics: &[InternalTopic<'_>],
    ) -> Result<(), Error> {
        let create: Vec<crate::admin::NewTopicSpec<'_>> = topics
            .iter()
            .map(|t| (t.name.as_str(), t.partitions as i32, t.configs))
            .collect();
        let ensured = admin.ensure_topics(&create).map_err(|e| self.error(e))?;
        for (t, e) in topics.iter().zip(ensured) {
            if e.partitions != t.partitions {
                return Err(self.refused((t.why)(e.partitions)));
            }
        }
        Ok(())
    }

    fn error(&self, message: impl Into<String>) -> Error {
        ScaleError::Kafka {
            app: self.app.clone(),
            message: message.into(),
        }
        .into()
    }

    fn refused(&self, reason: impl Into<String>) -> Error {
        ScaleError::Refused {
            app: self.app.clone(),
            reason: reason.into(),
        }
        .into()
    }

    /// Joins the application: checks this instance's pipeline against the application's,
    /// joins the group, and runs the tasks Kafka assigns here, each built by `build` (called
    /// once per task, inside the task's [`TaskScope`]; it returns the task's context, built and
    /// not started). Returns once the instance is in the group; tasks start as partitions are
    /// assigned.
    pub fn run<F>(self, build: F) -> Result<Instance, Error>
    where
        F: Fn(&TaskScope) -> Result<StreamingContext, Error> + Send + Sync + 'static,
    {
        if self.app.is_empty() || self.app.contains(['/', '\\']) {
            return Err(self.refused(
                "the application id must be non-empty, without slashes (it names topics and directories)",
            ));
        }
        if self.topics.is_empty() {
            return Err(self.refused(
                "no task topics: call .topics([...]) with the input topics whose partitions are the tasks",
            ));
        }
        if self
            .instance_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(self.refused(
                "the instance id is empty: give each instance a name of its own (the host's, the pod's), or none",
            ));
        }
        // One admin connection for the checks and creations of the start.
        let admin = crate::admin::Admin::new(&self.brokers).map_err(|e| self.error(e))?;
        let mut partitions = None::<usize>;
        for t in &self.topics {
            let n = admin
                .partition_count(t)
                .map_err(|e| self.error(e))?
                .ok_or_else(|| {
                    self.refused(format!(
                        "topic {t} does not exist on {}: create it with as many partitions as the tasks you want",
                        self.brokers
                    ))
                })?;
            match partitions {
                Some(m) if m != n => {
                    return Err(self.refused(format!(
                        "the task topics must have the same partition count (co-partitioned): {} has {m}, {t} has {n}",
                        self.topics[0]
                    )));
                }
                _ => partitions = Some(n),
            }
        }
        let partitions = partitions.unwrap_or(0);
        // The pipeline's shape, from a context built for the first task and never started.
        let probe_exchanges = Arc::new(exchange::Probe {
            tasks: partitions as u32,
            ..exchange::Probe::default()
        });
        let probe = TaskScope {
            app: self.app.clone(),
            task: task_name(&self.topics, 0),
            partitions: self.topics.iter().map(|t| (t.clone(), 0)).collect(),
            zero: None,
            link: None,
            exchanges: Some(probe_exchanges.clone()),
        };
        let (batch_ms, shape, own_root) = {
            let ssc = probe.enter(|| build(&probe))?;
            (
                ssc.batch_duration().millis(),
                ssc.shape_lines(),
                ssc.checkpoint_dir(),
            )
        };
        let root = own_root.or_else(|| self.checkpoint.clone()).ok_or_else(|| {
            self.refused(
                "no checkpoint root: call .checkpoint(dir) (each task keeps its state and positions in dir/<task>)",
            )
        })?;
        let operators = shape
            .iter()
            .filter(|l| l.starts_with("stateful operator"))
            .count();
        let stateful = operators > 0;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mine = AppRecord {
            zero_ms: now.div_euclid(batch_ms) * batch_ms,
            batch_ms,
            shape,
            topics: self.topics.clone(),
            partitions,
        };
        let meta_topic = format!("{}-meta", self.app);
        admin
            .ensure_topics(&[(
                &meta_topic,
                1,
                &[("retention.ms", "-1"), ("cleanup.policy", "delete")],
            )])
            .map_err(|e| self.error(e))?;
        let app_record = match meta::read_first(&self.brokers, &meta_topic, self.timeout)
            .map_err(|e| self.error(e))?
        {
            Some(r) => r,
            None => {
                meta::write(&self.brokers, &meta_topic, &mine).map_err(|e| self.error(e))?;
                // Another instance may have written first: the first record is the one.
                meta::read_first(&self.brokers, &meta_topic, self.timeout)
                    .map_err(|e| self.error(e))?
                    .ok_or_else(|| {
                        self.error(format!("{meta_topic} is empty after writing to it"))
                    })?
            }
        };
        if let Some(d) = app_record.difference(&mine) {
            return Err(self.refused(format!(
                "{d} (the application's record is the first in {meta_topic}; to run a changed pipeline, use a new application id)"
            )));
        }
        let mut internal: Vec<InternalTopic<'_>> = Vec::new();
        if stateful {
            // Each stateful operator's changes, and each task's last batch: one partition per
            // task, compacted.
            let tasks_topic = changelog::tasks_topic(&self.app);
            for topic in (0..operators)
                .map(|op| changelog::op_topic(&self.app, op))
                .chain([tasks_topic.clone()])
            {
                // The tasks changelog is read from its start by every restore: segments of 10
                // minutes let the broker compact it to a record per outstanding batch.
                let configs: &[(&str, &str)] = if topic == tasks_topic {
                    &[("cleanup.policy", "compact"), ("segment.ms", "600000")]
                } else {
                    &[("cleanup.policy", "compact")]
                };
                let name = topic.clone();
                internal.push(InternalTopic {
                    name,
                    partitions,
                    configs,
                    why: Box::new(move |n| format!(
                        "the changelog topic {topic} has {n} partitions and the application has {partitions} tasks: a task's state would be read from another task's partition (delete the topic only if the state in it may be lost)"
                    )),
                });
            }
        }
        let exchanges = std::mem::take(&mut *lock(&probe_exchanges.opened));
        for (op, global) in &exchanges {
            // Each exchange's records, by destination task (one partition for a global one).
            let topic = exchange::topic(&self.app, *op);
            let (want, global) = (if *global { 1 } else { partitions }, *global);
            internal.push(InternalTopic {
                name: topic.clone(),
                partitions: want,
                configs: &[
                    ("cleanup.policy", "delete"),
                    ("retention.ms", REPARTITION_RETENTION_MS),
                ],
                why: Box::new(move |n| format!(
                    "the repartition topic {topic} has {n} partitions and must have {want} ({}): records would reach the wrong task (delete the topic when no instance runs, and start again)",
                    if global {
                        "a global exchange has one".to_string()
                    } else {
                        format!("one per task, {partitions}")
                    }
                )),
            });
        }
        self.ensure_partitions(&admin, &internal)?;
        drop(admin);
        // How the group's members are told apart (on the dashboard): the user's client.id, or
        // the application, the host and the process.
        let client_id = self
            .properties
            .iter()
            .rev()
            .find(|(k, _)| k == "client.id")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| "host".to_string());
                // Instances of one process (tests, a process serving two applications) are
                // told apart by a number.
                static INSTANCES: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
                format!("{}-{host}-{}-{n}", self.app, std::process::id())
            });
        let inner = Arc::new(InstanceInner {
            settings: self.clone(),
            root,
            zero: Time::from_millis(app_record.zero_ms),
            total_tasks: partitions,
            operators,
            stateful,
            build: Box::new(build),
            tasks: Mutex::new(BTreeMap::new()),
            assigned: Mutex::new(Default::default()),
            starting: std::sync::RwLock::new(()),
            launching: Mutex::new(Default::default()),
            starter: Mutex::new(None),
            membership: OnceLock::new(),
            end: Mutex::new(End::default()),
            end_cv: Condvar::new(),
            batch_ms: app_record.batch_ms,
            client_id: client_id.clone(),
            restoring: Mutex::new(BTreeMap::new()),
            dashboard: Mutex::new(None),
            standbys: Mutex::new(BTreeMap::new()),
            refreshing: Mutex::new(None),
            refreshed: Condvar::new(),
            closing: Mutex::new(Default::default()),
        });
        InstanceInner::spawn_starter(&inner).map_err(|e| self.error(e))?;
        if stateful && self.standby_replicas > 0 {
            InstanceInner::spawn_standbys(&inner).map_err(|e| self.error(e))?;
        }
        let membership = Membership::join(
            MembershipSettings {
                brokers: &self.brokers,
                group: &self.app,
                topics: &self.topics[..1],
                session_timeout: self.session_timeout,
                properties: &self.properties,
                client_id: &client_id,
                broker_timeout: self.timeout,
                instance_id: self.instance_id.as_deref(),
            },
            Arc::new(inner.clone()),
        )
        .map_err(|e| self.error(e))?;
        let membership = Arc::new(membership);
        let _ = inner.membership.set(Arc::downgrade(&membership));
        membership.start().map_err(|e| self.error(e))?;
        let instance = Instance {
            inner,
            membership: Mutex::new(Some(membership)),
        };
        if self.stop_on_signal {
            crate::scale::signals::watch(&instance.inner);
        }
        Ok(instance)
    }
}

/// An internal topic an instance's start makes sure of.
struct InternalTopic<'a> {
    name: String,
    partitions: usize,
    configs: &'a [(&'a str, &'a str)],
    /// What another partition count would break, given the count found.
    why: Box<dyn Fn(usize) -> String>,
}

/// An error of task `task` of application `app`.
pub(crate) fn task_error(app: &str, task: &str, message: impl Into<String>) -> Error {
    ScaleError::Task {
        app: app.to_string(),
        task: task.to_string(),
        message: message.into(),
    }
    .into()
}

/// How long repartition topics keep records: a task that was down for longer cannot resume
/// (the records of the batches it missed are gone).
const REPARTITION_RETENTION_MS: &str = "604800000";

fn task_name(topics: &[String], partition: i32) -> String {
    format!("{}-{partition}", topics[0])
}

#[derive(Default)]
struct End {
    error: Option<Error>,
    stopped: bool,
}

struct RunningTask {
    scope: TaskScope,
    ssc: StreamingContext,
    since: SystemTime,
    link: Arc<TaskLink>,
    restore: Option<RestoreInfo>,
}

/// What is told of each task's context as it starts and stops here: the instance's dashboard.
trait TaskWatcher: Send + Sync {
    fn watch(&self, ssc: &StreamingContext);
    fn unwatch(&self, ssc: &StreamingContext);
}

#[cfg(feature = "dashboard")]
impl TaskWatcher for stream_core::Dashboard {
    fn watch(&self, ssc: &StreamingContext) {
        stream_core::Dashboard::watch(self, ssc)
    }
    fn unwatch(&self, ssc: &StreamingContext) {
        stream_core::Dashboard::unwatch(self, ssc)
    }
}

impl RunningTask {
    /// Stops the task after its batch in flight (which gives up waiting for other tasks), and
    /// takes it off `dashboard`.
    fn stop(&self, dashboard: &Mutex<Option<Arc<dyn TaskWatcher>>>) {
        self.link.stopping.store(true, Ordering::SeqCst);
        self.ssc.stop();
        if let Some(d) = lock(dashboard).as_ref() {
            d.unwatch(&self.ssc);
        }
    }
}

pub(crate) struct InstanceInner {
    settings: ScaleOutBuilder,
    root: PathBuf,
    zero: Time,
    total_tasks: usize,
    /// Stateful operators of the pipeline (each has a changelog topic).
    operators: usize,
    stateful: bool,
    #[allow(clippy::type_complexity)]
    build: Box<dyn Fn(&TaskScope) -> Result<StreamingContext, Error> + Send + Sync>,
    tasks: Mutex<BTreeMap<i32, RunningTask>>,
    /// The partitions the group gave this instance (their tasks start on the starter thread).
    assigned: Mutex<std::collections::BTreeSet<i32>>,
    /// Read-held while tasks start, write-held by a revocation or a stop (which wait for the
    /// starts in progress).
    starting: std::sync::RwLock<()>,
    /// The partitions whose tasks are starting now (each on one starter thread).
    launching: Mutex<std::collections::BTreeSet<i32>>,
    /// Partitions whose tasks are to start: tasks start (and restore) outside the group's
    /// rebalance callback, which returns at once.
    starter: Mutex<Option<std::sync::mpsc::Sender<i32>>>,
    membership: OnceLock<Weak<Membership>>,
    end: Mutex<End>,
    end_cv: Condvar,
    /// The batch interval (of the instance's dashboard).
    #[cfg_attr(not(feature = "dashboard"), allow(dead_code))]
    batch_ms: i64,
    /// This instance's `client.id` in the group.
    client_id: String,
    /// Tasks restoring their state before they start, with how far they are.
    restoring: Mutex<BTreeMap<i32, (SystemTime, Arc<changelog::Progress>)>>,
    /// The instance's dashboard, which shows each task's context while it runs here.
    dashboard: Mutex<Option<Arc<dyn TaskWatcher>>>,
    /// The tasks of other instances whose warm copies this one keeps, with their state.
    standbys: Mutex<BTreeMap<i32, StandbyCopy>>,
    /// The task whose standby copy is being refreshed (its checkpoint is open): a task that
    /// starts here waits for the refresh to end.
    refreshing: Mutex<Option<i32>>,
    refreshed: Condvar,
    /// Tasks revoked here and still stopping (their checkpoints still open).
    closing: Mutex<std::collections::BTreeSet<i32>>,
}

/// A warm copy of another instance's task.
#[derive(Debug, Clone)]
struct StandbyCopy {
    since: SystemTime,
    batch: Option<Time>,
    refreshed: Option<SystemTime>,
}

/// Reports a task's failed batches to its instance, and logs each batch at debug level (a
/// task's context prints no status line).
struct TaskFailures {
    instance: Weak<InstanceInner>,
    task: String,
    link: Arc<TaskLink>,
}

impl StreamingListener for TaskFailures {
    fn on_batch_completed(&self, info: &BatchInfo) {
        if info.failure.is_none() && tracing::enabled!(tracing::Level::DEBUG) {
            // Clock times, in ms after the batch time: when it was submitted, when it ended.
            let after = |t: Time| (t - info.batch_time).millis().max(0);
            // Where the time went: the outputs' jobs, then the operators that took longest
            // (when operator metrics are on); the rest of the processing time is the commit.
            let ms = |d: std::time::Duration| d.as_millis();
            let outputs: Vec<String> = info
                .output_operations
                .iter()
                .map(|o| format!("{} {} ms", o.description, ms(o.duration)))
                .collect();
            let mut operators: Vec<_> = info.operators.iter().collect();
            operators.sort_by_key(|o| std::cmp::Reverse(o.task_time));
            let operators: Vec<String> = operators
                .iter()
                .take(3)
                .map(|o| format!("{} {} ms", o.name, ms(o.task_time)))
                .collect();
            tracing::debug!(
                "task {}: batch at {} done: {} records, submitted +{} ms, processed in {} ms, done +{} ms; outputs [{}]; operators [{}]",
                self.task,
                info.batch_time,
                info.num_records,
                after(info.submission_time),
                info.processing_time.map_or(0, ms),
                info.processing_end.map_or(0, after),
                outputs.join(", "),
                operators.join(", ")
            );
        }
        if let (Some(failure), Some(instance)) = (&info.failure, self.instance.upgrade()) {
            if self.link.stopping.load(Ordering::SeqCst) {
                tracing::info!(
                    "task {}: the batch at {} did not complete before the task stopped ({failure}); its next owner processes it",
                    self.task,
                    info.batch_time
                );
                return;
            }
            instance.fail(ScaleError::Task {
                app: instance.settings.app.clone(),
                task: self.task.clone(),
                message: format!("the batch at {} failed: {failure}", info.batch_time),
            });
        }
    }
}

impl InstanceInner {
    fn fail(&self, e: impl Into<Error>) {
        let e = e.into();
        tracing::error!("{e}");
        let mut end = lock(&self.end);
        end.error.get_or_insert(e);
        self.end_cv.notify_all();
    }

    fn scope(&self, partition: i32, link: Option<Arc<TaskLink>>) -> TaskScope {
        TaskScope {
            app: self.settings.app.clone(),
            task: task_name(&self.settings.topics, partition),
            partitions: self.task_partitions(partition),
            zero: Some(self.zero),
            link: link.map(|l| l as Arc<dyn std::any::Any + Send + Sync>),
            exchanges: Some(Arc::new(exchange::KafkaExchanges::new(
                &self.settings.brokers,
                &self.settings.app,
                &task_name(&self.settings.topics, partition),
                partition as u32,
                self.total_tasks as u32,
                self.settings.timeout,
            ))),
        }
    }

    fn task_error(&self, task: &str, message: impl Into<String>) -> Error {
        task_error(&self.settings.app, task, message)
    }

    /// Builds and starts task `partition`. A stateless task whose local checkpoint is behind
    /// the group (another instance ran it since) starts afresh from the group's offsets.
    fn start_task(self: &Arc<Self>, partition: i32) -> Result<RunningTask, Error> {
        let mut fresh = false;
        loop {
            let mut restore = None;
            let link = Arc::new(TaskLink {
                membership: self.membership.get().cloned().unwrap_or_default(),
                stateful: self.stateful,
                stale: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
            });
            let scope = self.scope(partition, Some(link.clone()));
            let (ssc, dir) = self.task_context(&scope)?;
            if fresh && dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| {
                    self.task_error(
                        &scope.task,
                        format!("cannot remove its stale checkpoint {}: {e}", dir.display()),
                    )
                })?;
            }
            ssc.checkpoint(&dir)?;
            // A local copy whose database lost its last batches (a damaged write-ahead log) is
            // only older: the changelog's tail after its mark brings it up to date.
            ssc.accept_checkpoint_loss(self.stateful)?;
            if self.stateful {
                let s = &self.settings;
                let started = std::time::Instant::now();
                // The changelog's producer first: its transactional id fences the task's
                // previous owner and aborts a state commit it was killed in. Until then that
                // open transaction holds `read_committed` reads of the task's changelog short
                // of the positions written ahead after it began, and the restore would cut
                // those batches anew (tansu even reports a `read_committed` end of 0 while a
                // transaction is open).
                let log = changelog::Changelog::open(
                    &s.brokers,
                    &s.app,
                    &scope.task,
                    partition,
                    self.operators,
                    s.timeout,
                    self.zero,
                )
                .map_err(|e| self.task_error(&scope.task, e))?;
                let fenced = started.elapsed();
                let progress = Arc::new(changelog::Progress::default());
                lock(&self.restoring).insert(partition, (SystemTime::now(), progress.clone()));
                let restored = ssc.restore_checkpoint(|r| {
                    changelog::restore(&s.brokers, &s.app, partition, s.timeout, &progress, r)
                        .map_err(|e| {
                            self.task_error(&scope.task, format!("restoring its state: {e}"))
                        })
                });
                lock(&self.restoring).remove(&partition);
                let restored = restored?;
                if restored.batch.is_none() && !restored.from_local && restored.ahead == 0 {
                    // Nothing to restore: a task run for the first time. If the group has
                    // offsets for it, it ran before and its changelog lost what it had (a task
                    // whose first batch's outputs and offsets committed before its state did
                    // has that batch's positions written ahead, and replays it).
                    let committed = match self.membership.get().and_then(Weak::upgrade) {
                        Some(m) => m
                            .committed(&scope.partitions, s.timeout)
                            .map_err(|e| self.task_error(&scope.task, e))?,
                        None => Vec::new(),
                    };
                    if let Some((t, p, o)) = committed.first() {
                        return Err(self.task_error(
                            &scope.task,
                            format!(
                                "group {} committed offset {o} of {t}-{p}, and the task's changelog ({}) holds no batch: its state is gone (were the changelog topics deleted?). Resuming would lose it: use a new application id to start afresh",
                                s.app,
                                changelog::tasks_topic(&s.app)
                            ),
                        ));
                    }
                }
                if let Some(t) = restored.batch {
                    tracing::info!(
                        "task {}: restored to the batch at {t} from {} ({} changes, {} bytes of changelog, {:?}, of which {:?} opening the changelog's producer)",
                        scope.task,
                        if restored.from_local {
                            "the local copy and the changelog's tail"
                        } else {
                            "the changelog"
                        },
                        restored.changes,
                        restored.bytes,
                        started.elapsed(),
                        fenced
                    );
                }
                restore = Some(RestoreInfo {
                    changes: restored.changes,
                    bytes: restored.bytes,
                    from_local: restored.from_local,
                    elapsed: started.elapsed(),
                });
                ssc.set_replicator(Arc::new(log))?;
            }
            ssc.add_streaming_listener(Arc::new(TaskFailures {
                instance: Arc::downgrade(self),
                task: scope.task.clone(),
                link: link.clone(),
            }));
            match ssc.start() {
                Ok(()) => {
                    return Ok(RunningTask {
                        scope,
                        ssc,
                        since: SystemTime::now(),
                        link,
                        restore,
                    });
                }
                Err(_) if link.stale.load(Ordering::SeqCst) && !fresh && !self.stateful => {
                    tracing::info!(
                        "task {}: the checkpoint in {} is older than the group's offsets (another instance ran the task since): starting afresh from the group's offsets",
                        scope.task,
                        dir.display()
                    );
                    fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The task's context, built by the user's closure inside its scope (not started), and
    /// its checkpoint directory: the same for the task and for a standby copy of it.
    fn task_context(&self, scope: &TaskScope) -> Result<(StreamingContext, PathBuf), Error> {
        let ssc = scope.enter(|| (self.build)(scope))?;
        let dir = ssc
            .checkpoint_dir()
            .unwrap_or_else(|| self.root.clone())
            .join(&scope.task);
        Ok((ssc, dir))
    }

    /// Task `p`'s input partitions: partition `p` of each task topic.
    fn task_partitions(&self, p: i32) -> Vec<(String, i32)> {
        self.settings
            .topics
            .iter()
            .map(|t| (t.clone(), p))
            .collect()
    }

    fn status(&self, membership: Option<&Membership>) -> ScaleOutStatus {
        let mut tasks: Vec<TaskStatus> = lock(&self.tasks)
            .values()
            .map(|t| TaskStatus {
                task: t.scope.task.clone(),
                partitions: t.scope.partitions.clone(),
                role: TaskRole::Active,
                since: t.since,
                completed_batches: t.ssc.completed_batches(),
                last_batch: t.ssc.recent_batches().last().map(|b| b.batch_time),
                restore: t.restore.clone(),
            })
            .collect();
        for (p, (since, progress)) in lock(&self.restoring).iter() {
            tasks.push(TaskStatus {
                task: task_name(&self.settings.topics, *p),
                partitions: self.task_partitions(*p),
                role: TaskRole::Restoring {
                    read: progress.done.load(Ordering::Relaxed),
                    of: progress.total.load(Ordering::Relaxed),
                },
                since: *since,
                completed_batches: 0,
                last_batch: None,
                restore: None,
            });
        }
        for (p, copy) in lock(&self.standbys).iter() {
            tasks.push(TaskStatus {
                task: task_name(&self.settings.topics, *p),
                partitions: self.task_partitions(*p),
                role: TaskRole::Standby {
                    batch: copy.batch,
                    refreshed: copy.refreshed,
                },
                since: copy.since,
                completed_batches: 0,
                last_batch: copy.batch,
                restore: None,
            });
        }
        ScaleOutStatus {
            app: self.settings.app.clone(),
            tasks,
            total_tasks: self.total_tasks,
            last_rebalance: membership.and_then(Membership::last_rebalance),
            zero: self.zero,
        }
    }

    /// Asks the instance to stop (from a signal): the waiter of `await_termination` leaves the
    /// group.
    fn request_stop(&self) {
        let mut end = lock(&self.end);
        end.stopped = true;
        self.end_cv.notify_all();
    }
}

impl Assignments for Arc<InstanceInner> {
    fn revoke(&self, partitions: &[(String, i32)], lost: bool) {
        let lead = &self.settings.topics[0];
        let stopping: Vec<(i32, RunningTask)> = {
            // Tasks starting now finish starting first.
            let _starting = write(&self.starting);
            let mut assigned = lock(&self.assigned);
            let mut tasks = lock(&self.tasks);
            partitions
                .iter()
                .filter(|(t, _)| t == lead)
                .filter_map(|(_, p)| {
                    assigned.remove(p);
                    let t = tasks.remove(p)?;
                    lock(&self.closing).insert(*p);
                    Some((*p, t))
                })
                .collect()
        };
        // Stopped all at once, and waited for on this (the group's) thread: the partitions go
        // to their next owner only when this returns, after each task's batch in flight
        // committed. (One after another, a revocation took the sum of the tasks' last batches:
        // minutes when the brokers are gone and each batch waits for its timeouts.)
        std::thread::scope(|scope| {
            for (p, t) in stopping {
                scope.spawn(move || {
                    tracing::info!(
                        "task {}: {}; stopping after its batch in flight",
                        t.scope.task,
                        if lost {
                            "lost to another instance"
                        } else {
                            "revoked"
                        }
                    );
                    t.stop(&self.dashboard);
                    drop(t);
                    lock(&self.closing).remove(&p);
                });
            }
        });
    }

    fn fatal(&self, message: String) {
        self.fail(self.settings.error(message));
    }

    fn assign(&self, partitions: &[(String, i32)]) {
        let lead = &self.settings.topics[0];
        let starter = lock(&self.starter).clone();
        for (_, p) in partitions.iter().filter(|(t, _)| t == lead) {
            lock(&self.assigned).insert(*p);
            if let Some(tx) = &starter {
                let _ = tx.send(*p);
            }
        }
    }
}

impl InstanceInner {
    /// The threads that start the tasks of assigned partitions ([`ScaleOutBuilder::start_threads`]
    /// at once).
    fn spawn_starter(inner: &Arc<InstanceInner>) -> Result<(), String> {
        let (tx, rx) = std::sync::mpsc::channel::<i32>();
        *lock(&inner.starter) = Some(tx);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..inner.settings.start_threads {
            let weak = Arc::downgrade(inner);
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("dstream-tasks-{n}"))
                .spawn(move || {
                    loop {
                        let next = lock(&rx).recv();
                        let Ok(p) = next else { return };
                        let Some(inner) = weak.upgrade() else { return };
                        inner.start_assigned(p);
                    }
                })
                .map_err(|e| format!("cannot start the tasks' thread: {e}"))?;
        }
        Ok(())
    }

    /// Starts the task of assigned partition `p`, unless it runs or starts already.
    fn start_assigned(self: &Arc<Self>, p: i32) {
        let _starting = read(&self.starting);
        if !lock(&self.assigned).contains(&p)
            || lock(&self.tasks).contains_key(&p)
            || !lock(&self.launching).insert(p)
        {
            return;
        }
        // A refresh of the task's standby copy ends first (it has the checkpoint open); none
        // starts once the task is assigned here.
        {
            let mut refreshing = lock(&self.refreshing);
            while *refreshing == Some(p) {
                refreshing = self
                    .refreshed
                    .wait(refreshing)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        lock(&self.standbys).remove(&p);
        match self.start_task(p) {
            Ok(task) => {
                tracing::info!("task {}: started", task.scope.task);
                if let Some(d) = lock(&self.dashboard).as_ref() {
                    d.watch(&task.ssc);
                }
                lock(&self.tasks).insert(p, task);
            }
            Err(e) => {
                // The partition stays with this instance and nothing reads it: the instance
                // stops (await_termination returns the error) and leaves the group.
                self.fail(e);
            }
        }
        lock(&self.launching).remove(&p);
    }

    /// The thread that keeps this instance's standby copies warm.
    fn spawn_standbys(inner: &Arc<InstanceInner>) -> Result<(), String> {
        let weak = Arc::downgrade(inner);
        let every = inner.settings.standby_refresh;
        std::thread::Builder::new()
            .name("dstream-standbys".into())
            .spawn(move || {
                loop {
                    let Some(inner) = weak.upgrade() else { return };
                    {
                        let end = lock(&inner.end);
                        if end.stopped || end.error.is_some() {
                            return;
                        }
                    }
                    inner.refresh_standbys();
                    drop(inner);
                    std::thread::sleep(every);
                }
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start the standby copies' thread: {e}"))
    }

    /// The tasks whose standby this instance is. The group's members, sorted by member id, are
    /// a ring; task `p`'s copies are kept by the members at positions `p`, `p + 1`, ..., `p + n`
    /// of it (modulo its size), except its owner: at least `n` copies besides the owner's
    /// state, without knowing who the owner is (brokers do not all describe the members'
    /// assignments).
    fn standby_tasks(&self, members: &[GroupMember]) -> std::collections::BTreeSet<i32> {
        let mut ids: Vec<(&str, bool)> =
            members.iter().map(|m| (m.member.as_str(), m.me)).collect();
        ids.sort();
        let Some(me) = ids.iter().position(|(_, me)| *me) else {
            return Default::default();
        };
        let len = ids.len();
        let n = self.settings.standby_replicas.min(len - 1);
        let assigned = lock(&self.assigned).clone();
        (0..self.total_tasks as i32)
            .filter(|p| !assigned.contains(p))
            .filter(|p| (me + len - (*p as usize) % len) % len <= n)
            .collect()
    }

    /// Brings each standby copy up to date with its changelogs; takes up the tasks this
    /// instance is now the standby of, and drops the others (their copies stay on disk, as
    /// the local copy a later restore starts from).
    fn refresh_standbys(&self) {
        let Some(m) = self.membership.get().and_then(Weak::upgrade) else {
            return;
        };
        let members = match m.members(&self.settings.app, &self.client_id, self.settings.timeout) {
            Ok(members) => members,
            Err(e) => {
                tracing::debug!("standby copies: cannot list the group's members: {e}");
                return;
            }
        };
        drop(m);
        if lock(&self.end).stopped {
            return;
        }
        let wanted = self.standby_tasks(&members);
        tracing::debug!(
            "standby copies: {} members, this instance the standby of tasks {wanted:?}",
            members.len()
        );
        lock(&self.standbys).retain(|p, _| wanted.contains(p));
        for p in wanted {
            // Not once the task is assigned here: from then on it is the task's checkpoint.
            {
                let assigned = lock(&self.assigned);
                if assigned.contains(&p)
                    || lock(&self.tasks).contains_key(&p)
                    || lock(&self.closing).contains(&p)
                {
                    lock(&self.standbys).remove(&p);
                    continue;
                }
                *lock(&self.refreshing) = Some(p);
            }
            let refreshed = self.refresh_standby(p);
            *lock(&self.refreshing) = None;
            self.refreshed.notify_all();
            match refreshed {
                Ok(batch) => {
                    let now = SystemTime::now();
                    let mut standbys = lock(&self.standbys);
                    let copy = standbys.entry(p).or_insert(StandbyCopy {
                        since: now,
                        batch: None,
                        refreshed: None,
                    });
                    copy.batch = batch.or(copy.batch);
                    copy.refreshed = Some(now);
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
    }

    /// One refresh of the standby copy of task `p`: the task's context is built (never
    /// started) on its checkpoint directory, and restored from the changelogs' tail.
    fn refresh_standby(&self, p: i32) -> Result<Option<Time>, Error> {
        let scope = self.scope(p, None);
        let (ssc, dir) = self.task_context(&scope)?;
        ssc.checkpoint(&dir)?;
        // An older copy is brought up to date from the changelog (see `start_task`).
        ssc.accept_checkpoint_loss(true)?;
        let s = &self.settings;
        let progress = changelog::Progress::default();
        let restored = ssc.restore_checkpoint(|r| {
            changelog::restore(&s.brokers, &s.app, p, s.timeout, &progress, r).map_err(|e| {
                self.task_error(&scope.task, format!("refreshing its standby copy: {e}"))
            })
        })?;
        Ok(restored.batch)
    }
}

/// A running instance of a scaled-out application (see [`ScaleOut`]).
pub struct Instance {
    inner: Arc<InstanceInner>,
    membership: Mutex<Option<Arc<Membership>>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("app", &self.inner.settings.app)
            .finish()
    }
}

impl Instance {
    /// The application id.
    pub fn app(&self) -> &str {
        &self.inner.settings.app
    }

    /// The tasks this instance runs now, and the last rebalance.
    pub fn status(&self) -> ScaleOutStatus {
        let m = lock(&self.membership).clone();
        self.inner.status(m.as_deref())
    }

    /// The members of the application's group now, as its coordinator describes them (a call
    /// to the brokers, at most `timeout`).
    pub fn members(&self, timeout: StdDuration) -> Result<Vec<GroupMember>, Error> {
        let m = lock(&self.membership).clone();
        let Some(m) = m else {
            return Ok(Vec::new());
        };
        m.members(&self.inner.settings.app, &self.inner.client_id, timeout)
            .map_err(|e| self.inner.settings.error(e))
    }

    /// Serves this instance's dashboard on `addr` (port 0 picks a free one): the batches of
    /// the tasks it runs (one row per batch time, their records summed), their inputs and
    /// state, and a scale-out section with each task's role (active, or restoring with its
    /// progress), the group's members with their partitions, and the last rebalance; `/metrics`
    /// has the same (`dstream_scale_*`). It serves as long as the instance or the returned
    /// [`Dashboard`](stream_core::Dashboard) lives.
    #[cfg(feature = "dashboard")]
    pub fn serve_dashboard(
        &self,
        addr: impl std::net::ToSocketAddrs,
    ) -> Result<stream_core::Dashboard, Error> {
        let d = stream_core::Dashboard::serve(
            addr,
            stream_core::Duration::from_millis(self.inner.batch_ms),
        )?;
        d.add_section(Arc::new(dashboard::ScaleSection::new(
            Arc::downgrade(&self.inner),
            lock(&self.membership)
                .as_ref()
                .map(Arc::downgrade)
                .unwrap_or_default(),
        )));
        // Tasks running now, and each task that starts from here on.
        let _starting = write(&self.inner.starting);
        for t in lock(&self.inner.tasks).values() {
            d.watch(&t.ssc);
        }
        *lock(&self.inner.dashboard) = Some(Arc::new(d.clone()));
        Ok(d)
    }

    /// The contexts of the tasks this instance runs now, by task name (for listeners and
    /// dashboards; a context is replaced when its task leaves and comes back).
    pub fn task_contexts(&self) -> Vec<(String, StreamingContext)> {
        lock(&self.inner.tasks)
            .values()
            .map(|t| (t.scope.task.clone(), t.ssc.clone()))
            .collect()
    }

    /// Leaves the group: every task finishes and commits its batch in flight, then the
    /// instance's tasks go to the other instances. Returns when done.
    pub fn stop(&self) {
        let m = lock(&self.membership).take();
        if let Some(m) = m {
            m.leave();
        }
        // No more starts.
        lock(&self.inner.starter).take();
        let _starting = write(&self.inner.starting);
        lock(&self.inner.assigned).clear();
        // Tasks whose partitions were not revoked by leaving (a lost group).
        let rest: Vec<RunningTask> = std::mem::take(&mut *lock(&self.inner.tasks))
            .into_values()
            .collect();
        for t in rest {
            t.stop(&self.inner.dashboard);
        }
        let mut end = lock(&self.inner.end);
        end.stopped = true;
        self.inner.end_cv.notify_all();
    }

    /// Waits until the instance stops (by [`stop`](Self::stop) or a signal) or a task fails,
    /// and returns the first task error. On an error the instance leaves the group first.
    pub fn await_termination(&self) -> Result<(), Error> {
        loop {
            if let Some(r) = self.await_termination_or_timeout(StdDuration::from_secs(3600))? {
                return r;
            }
        }
    }

    /// As [`await_termination`](Self::await_termination), for at most `timeout`: `Ok(None)`
    /// when the instance still runs.
    pub fn await_termination_or_timeout(
        &self,
        timeout: StdDuration,
    ) -> Result<Option<Result<(), Error>>, Error> {
        let deadline = std::time::Instant::now() + timeout;
        let mut end = lock(&self.inner.end);
        loop {
            if end.error.is_some() || end.stopped {
                let error = end.error.clone();
                drop(end);
                self.stop();
                return Ok(Some(error.map_or(Ok(()), Err)));
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            end = self
                .inner
                .end_cv
                .wait_timeout(end, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop();
    }
}

mod signals {
    //! Ctrl-C / SIGTERM stop the instances of this process gracefully; a second signal ends
    //! the process at once.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex, OnceLock, Weak};

    use super::InstanceInner;

    struct Watch {
        received: Arc<AtomicBool>,
        default_action: Arc<AtomicBool>,
        instances: Mutex<Vec<Weak<InstanceInner>>>,
    }

    fn install() -> &'static Watch {
        static WATCH: OnceLock<Watch> = OnceLock::new();
        WATCH.get_or_init(|| {
            let w = Watch {
                received: Arc::new(AtomicBool::new(false)),
                default_action: Arc::new(AtomicBool::new(false)),
                instances: Mutex::new(Vec::new()),
            };
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                let installed =
                    signal_hook::flag::register_conditional_default(sig, w.default_action.clone())
                        .and_then(|_| signal_hook::flag::register(sig, w.received.clone()));
                if let Err(e) = installed {
                    tracing::warn!("cannot install the handler of signal {sig}: {e}");
                }
            }
            let _ = std::thread::Builder::new()
                .name("dstream-scale-signals".into())
                .spawn(|| {
                    let w = install();
                    loop {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        if !w.received.swap(false, Ordering::SeqCst) {
                            continue;
                        }
                        w.default_action.store(true, Ordering::SeqCst);
                        let all: Vec<_> = w
                            .instances
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .drain(..)
                            .collect();
                        for i in all.iter().filter_map(Weak::upgrade) {
                            tracing::warn!(
                                "signal received: instance of {} leaving its group after its batches",
                                i.settings.app
                            );
                            i.request_stop();
                        }
                    }
                });
            w
        })
    }

    pub(super) fn watch(inner: &Arc<InstanceInner>) {
        install()
            .instances
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(inner));
    }
}
