//! Group membership: one consumer per instance in the application's consumer group, subscribed
//! to the topics whose partitions are the application's tasks, with the cooperative-sticky
//! assignor. It fetches nothing (its partitions are paused as soon as they are assigned): it is
//! there for Kafka's group protocol to tell the instance which tasks it owns, and to commit the
//! tasks' offsets as a member of the group (a consumer outside the group may not commit to a
//! group that has members). Tasks read their partitions with consumers of their own.
//!
//! Revocation runs on the consumer's poll thread inside librdkafka's rebalance callback: the
//! callback returns only once the revoked tasks have finished their in-flight batch and committed
//! it, so Kafka hands a partition to its next owner only after that (cooperative rebalancing
//! leaves every other partition running meanwhile).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

/// What the instance does when Kafka moves partitions.
pub(crate) trait Assignments: Send + Sync {
    /// The partitions are no longer this instance's: stop their tasks, finishing and committing
    /// the batch in flight. `lost` is true when the group already gave them to another member
    /// (this instance was too slow to answer): the tasks stop without committing anything more.
    fn revoke(&self, partitions: &[(String, i32)], lost: bool);
    /// The partitions are now this instance's: start their tasks.
    fn assign(&self, partitions: &[(String, i32)]);
    /// The instance cannot go on in the group: its brokers could not be reached for longer
    /// than the broker timeout, or the group fenced it for good (another instance with its
    /// instance id). It stops with this error (nothing is lost; restarted, it rejoins).
    fn fatal(&self, message: String);
}

pub(crate) struct GroupContext {
    handler: Arc<dyn Assignments>,
    /// Offsets to commit, the latest per partition: committed together once a second by the
    /// group thread (a commit during a rebalance fails; the next one carries it), and at once
    /// when partitions are revoked, after their tasks' last batch.
    pending: Mutex<BTreeMap<(String, i32), i64>>,
    /// The last rebalance, for status: when, and what it did.
    pub(crate) last_rebalance: Mutex<Option<(std::time::SystemTime, String)>>,
}

impl ClientContext for GroupContext {}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    let mut v: Vec<(String, i32)> = tpl
        .elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect();
    v.sort();
    v
}

fn describe(parts: &[(String, i32)]) -> String {
    parts
        .iter()
        .map(|(t, p)| format!("{t}-{p}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let parts = partitions(tpl);
            if parts.is_empty() {
                return;
            }
            let lost = consumer.assignment_lost();
            tracing::info!(
                "group rebalance: {} {}",
                if lost { "lost" } else { "revoked" },
                describe(&parts)
            );
            self.handler.revoke(&parts, lost);
            if !lost {
                // The revoked tasks' last batches, before the partitions go.
                commit_pending(consumer, CommitMode::Sync);
            }
            *self
                .last_rebalance
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some((
                std::time::SystemTime::now(),
                format!(
                    "{} {}",
                    if lost { "lost" } else { "revoked" },
                    describe(&parts)
                ),
            ));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let parts = partitions(tpl);
                if parts.is_empty() {
                    return;
                }
                // This consumer only holds the membership: tasks fetch for themselves.
                if let Err(e) = consumer.pause(tpl) {
                    tracing::warn!("group membership: cannot pause {}: {e}", describe(&parts));
                }
                tracing::info!("group rebalance: assigned {}", describe(&parts));
                self.handler.assign(&parts);
                *self
                    .last_rebalance
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some((
                    std::time::SystemTime::now(),
                    format!("assigned {}", describe(&parts)),
                ));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!("group rebalance failed: {e}"),
        }
    }
}

/// Commits the pending offsets of the partitions still assigned to this member.
fn commit_pending(consumer: &BaseConsumer<GroupContext>, mode: CommitMode) {
    let offsets = std::mem::take(
        &mut *consumer
            .context()
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    );
    if offsets.is_empty() {
        return;
    }
    let assigned = match consumer.assignment() {
        Ok(tpl) => partitions(&tpl),
        Err(_) => return,
    };
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in &offsets {
        if assigned.binary_search(&(t.clone(), *p)).is_ok() {
            let _ = tpl.add_partition_offset(t, *p, Offset::Offset(*o));
        }
    }
    if tpl.count() > 0
        && let Err(e) = consumer.commit(&tpl, mode)
    {
        tracing::debug!("group membership: committing offsets: {e}");
    }
}

/// The instance's member of the application's consumer group.
pub(crate) struct Membership {
    consumer: Arc<BaseConsumer<GroupContext>>,
    stopping: Arc<AtomicBool>,
    /// The group thread and the thread probing the brokers.
    poller: Mutex<Vec<std::thread::JoinHandle<()>>>,
    brokers: String,
    /// The topic whose metadata tells whether the brokers answer.
    probe_topic: String,
    broker_timeout: StdDuration,
}

/// Whether the brokers answer, as the group's probe thread sees it: it asks for metadata every
/// 5 s, and once a second after a failed answer, until they answer again. Unreachable for longer than the broker timeout stops the instance
/// (reported once). (The consumer alone does not tell: while its coordinator is gone it may
/// report nothing at all, only retry.)
struct Reachability {
    trouble: Option<(std::time::Instant, String)>,
    last_probe: std::time::Instant,
    reported: bool,
}

/// How often the brokers are asked when all is well.
const PROBE_EVERY: StdDuration = StdDuration::from_secs(5);

impl Reachability {
    fn new() -> Reachability {
        Reachability {
            trouble: None,
            last_probe: std::time::Instant::now(),
            reported: false,
        }
    }

    /// Probes the brokers when due; the error to stop with, once trouble has lasted too long.
    fn check(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        brokers: &str,
        topic: &str,
        timeout: StdDuration,
    ) -> Option<String> {
        let every = if self.trouble.is_some() {
            StdDuration::from_secs(1)
        } else {
            PROBE_EVERY
        };
        if self.last_probe.elapsed() < every {
            return None;
        }
        let asked = std::time::Instant::now();
        let probe = consumer.fetch_metadata(Some(topic), StdDuration::from_secs(1));
        self.last_probe = std::time::Instant::now();
        match probe {
            Ok(_) => {
                self.trouble = None;
                self.reported = false;
                return None;
            }
            Err(e) => {
                if self.trouble.is_none() {
                    self.trouble = Some((asked, e.to_string()));
                }
            }
        }
        let (since, what) = self.trouble.as_ref()?;
        if since.elapsed() < timeout || self.reported {
            return None;
        }
        self.reported = true;
        Some(format!(
            "the brokers {brokers} have been unreachable for {:.1?} ({what}); the instance stops. Nothing is lost: restarted, it rejoins the group and its tasks resume after their last committed batches",
            since.elapsed()
        ))
    }
}

/// What a fatal error of the group consumer means for the instance.
fn fatal_message(code: RDKafkaErrorCode, reason: &str) -> String {
    let why = if code == RDKafkaErrorCode::FencedInstanceId {
        "another instance joined the group with this instance's id (ScaleOutBuilder::instance_id, --instance-id): each instance needs an id of its own"
    } else {
        "the group consumer cannot go on"
    };
    format!("{why} ({code:?}: {reason})")
}

/// Settings of the membership consumer.
pub(crate) struct MembershipSettings<'a> {
    pub(crate) brokers: &'a str,
    pub(crate) group: &'a str,
    pub(crate) topics: &'a [String],
    pub(crate) session_timeout: StdDuration,
    pub(crate) properties: &'a [(String, String)],
    pub(crate) client_id: &'a str,
    /// How long the brokers may stay unreachable before the instance stops.
    pub(crate) broker_timeout: StdDuration,
    /// Static membership's `group.instance.id`, if any.
    pub(crate) instance_id: Option<&'a str>,
}

impl Membership {
    /// Joins the group: subscribes to `topics`; [`start`](Self::start) then polls, which runs
    /// `handler` at each rebalance.
    pub(crate) fn join(
        s: MembershipSettings<'_>,
        handler: Arc<dyn Assignments>,
    ) -> Result<Membership, String> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", s.brokers)
            .set("group.id", s.group)
            .set("client.id", s.client_id)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set(
                "session.timeout.ms",
                s.session_timeout.as_millis().to_string(),
            )
            // A member learns of a rebalance (another leaving, joining) with its next
            // heartbeat's answer: at most 1 s apart rather than librdkafka's 3 s, so that the
            // tasks of an instance that leaves (a rolling restart) move sooner.
            .set(
                "heartbeat.interval.ms",
                (s.session_timeout.as_millis() / 3)
                    .clamp(100, 1000)
                    .to_string(),
            )
            // A member whose tasks take this long to finish a batch at revocation is dropped.
            .set("max.poll.interval.ms", "300000")
            // Tasks fetch for themselves; this consumer's partitions are paused when assigned,
            // and what it fetched before that stays small.
            .set("queued.max.messages.kbytes", "64");
        if let Some(id) = s.instance_id {
            c.set("group.instance.id", id);
        }
        for (k, v) in s.properties {
            c.set(k, v);
        }
        let context = GroupContext {
            handler,
            pending: Mutex::new(BTreeMap::new()),
            last_rebalance: Mutex::new(None),
        };
        let consumer: BaseConsumer<GroupContext> = c
            .create_with_context(context)
            .map_err(|e| format!("cannot create the group consumer: {e}"))?;
        let topics: Vec<&str> = s.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| format!("cannot subscribe to {}: {e}", topics.join(", ")))?;
        Ok(Membership {
            consumer: Arc::new(consumer),
            stopping: Arc::new(AtomicBool::new(false)),
            poller: Mutex::new(Vec::new()),
            brokers: s.brokers.to_string(),
            probe_topic: s.topics.first().cloned().unwrap_or_default(),
            broker_timeout: s.broker_timeout,
        })
    }

    /// Starts polling on a thread of its own: from here on, rebalances run the handler.
    pub(crate) fn start(&self) -> Result<(), String> {
        let (consumer, stopping) = (self.consumer.clone(), self.stopping.clone());
        let (brokers, topic, timeout) = (
            self.brokers.clone(),
            self.probe_topic.clone(),
            self.broker_timeout,
        );
        let poller = {
            let (consumer, stopping) = (consumer.clone(), stopping.clone());
            std::thread::Builder::new()
                .name("dstream-group".into())
                .spawn(move || {
                    let mut last_commit = std::time::Instant::now();
                    while !stopping.load(Ordering::SeqCst) {
                        match consumer.poll(StdDuration::from_millis(100)) {
                            None | Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                if let Some((code, reason)) = consumer.client().fatal_error() {
                                    consumer
                                        .context()
                                        .handler
                                        .fatal(fatal_message(code, &reason));
                                    break;
                                }
                                tracing::debug!("group membership: {e}");
                            }
                        }
                        if last_commit.elapsed() >= StdDuration::from_secs(1) {
                            last_commit = std::time::Instant::now();
                            commit_pending(&consumer, CommitMode::Async);
                        }
                    }
                    commit_pending(&consumer, CommitMode::Async);
                })
                .map_err(|e| format!("cannot start the group thread: {e}"))?
        };
        // On a thread of its own: a revocation holds the group thread until the revoked tasks
        // have stopped, which, with the brokers gone, takes their timeouts one after another.
        let prober = std::thread::Builder::new()
            .name("dstream-group-probe".into())
            .spawn(move || {
                let mut reach = Reachability::new();
                while !stopping.load(Ordering::SeqCst) {
                    std::thread::sleep(StdDuration::from_millis(100));
                    if let Some(e) = reach.check(&consumer, &brokers, &topic, timeout) {
                        consumer.context().handler.fatal(e);
                    }
                }
            })
            .map_err(|e| format!("cannot start the group's probe thread: {e}"))?;
        self.poller
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend([poller, prober]);
        Ok(())
    }

    /// Commits offsets to the group as this member (within a second; see `pending`).
    pub(crate) fn commit(&self, offsets: &[(String, i32, i64)]) {
        let mut pending = self
            .consumer
            .context()
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (t, p, o) in offsets {
            pending.insert((t.clone(), *p), *o);
        }
    }

    /// The group's committed offsets of these partitions (those it has).
    pub(crate) fn committed(
        &self,
        parts: &[(String, i32)],
        timeout: StdDuration,
    ) -> Result<Vec<(String, i32, i64)>, String> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in parts {
            let _ = tpl.add_partition(t, *p);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, timeout)
            .map_err(|e| format!("cannot read the group's committed offsets: {e}"))?;
        let out = committed
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.topic().to_string(), e.partition(), o)),
                _ => None,
            })
            .collect();
        // Dropped before the consumer can be (see BUILD.md on the drop hang).
        drop(committed);
        Ok(out)
    }

    /// The member's current assignment.
    pub(crate) fn assignment(&self) -> Vec<(String, i32)> {
        match self.consumer.assignment() {
            Ok(tpl) => partitions(&tpl),
            Err(_) => Vec::new(),
        }
    }

    /// The group's members, as the coordinator describes them; `me` is the member whose
    /// `client.id` is `client_id`.
    pub(crate) fn members(
        &self,
        group: &str,
        client_id: &str,
        timeout: StdDuration,
    ) -> Result<Vec<super::GroupMember>, String> {
        let list = self
            .consumer
            .fetch_group_list(Some(group), timeout)
            .map_err(|e| format!("cannot describe group {group}: {e}"))?;
        let mut out = Vec::new();
        for g in list.groups().iter().filter(|g| g.name() == group) {
            for m in g.members() {
                out.push(super::GroupMember {
                    member: m.id().to_string(),
                    client: m.client_id().to_string(),
                    host: m.client_host().trim_start_matches('/').to_string(),
                    partitions: m.assignment().map(assigned_partitions).unwrap_or_default(),
                    // (tansu leaves the client id out; member ids start with it.)
                    me: m.client_id() == client_id || m.id().starts_with(&format!("{client_id}-")),
                });
            }
        }
        out.sort_by(|a, b| (&a.client, &a.member).cmp(&(&b.client, &b.member)));
        Ok(out)
    }

    /// The last rebalance: when, and what it did.
    pub(crate) fn last_rebalance(&self) -> Option<(std::time::SystemTime, String)> {
        self.consumer
            .context()
            .last_rebalance
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Leaves the group: the revocation callback stops every task (each finishing its batch),
    /// then the consumer closes. Blocks until both are done.
    pub(crate) fn leave(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let threads = std::mem::take(&mut *self.poller.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        if self.consumer.client().fatal_error().is_some() {
            // Out of the group for good: nothing is revoked; the caller stops the tasks.
            return;
        }
        // Unsubscribing revokes everything; polling serves the callback.
        self.consumer.unsubscribe();
        let deadline = std::time::Instant::now() + StdDuration::from_secs(30);
        while !self.assignment().is_empty() && std::time::Instant::now() < deadline {
            let _ = self.consumer.poll(StdDuration::from_millis(100));
        }
    }
}

/// The partitions of a consumer-protocol assignment (Kafka's `ConsumerProtocolAssignment`:
/// version i16, then topics as `[name: string16, partitions: [i32]]`, then user data); an
/// assignment that does not parse gives what parsed before the damage.
pub(crate) fn assigned_partitions(bytes: &[u8]) -> Vec<(String, i32)> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take(&mut self, n: usize) -> Option<&[u8]> {
            if self.0.len() < n {
                return None;
            }
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            Some(a)
        }
        fn i16(&mut self) -> Option<i16> {
            self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
        }
        fn i32(&mut self) -> Option<i32> {
            self.take(4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
    }
    let mut r = Reader(bytes);
    let mut out = Vec::new();
    let mut parse = || -> Option<()> {
        r.i16()?;
        let topics = r.i32()?;
        for _ in 0..topics.max(0) {
            let len = r.i16()?;
            let name = String::from_utf8_lossy(r.take(len.max(0) as usize)?).into_owned();
            let n = r.i32()?;
            for _ in 0..n.max(0) {
                out.push((name.clone(), r.i32()?));
            }
        }
        Some(())
    };
    let _ = parse();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::assigned_partitions;

    #[test]
    fn an_assignment_gives_its_partitions() {
        // Version 1, topics [("clicks", [3, 0])], user data of length 0.
        let mut b = vec![0, 1, 0, 0, 0, 1, 0, 6];
        b.extend_from_slice(b"clicks");
        b.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            assigned_partitions(&b),
            vec![("clicks".to_string(), 0), ("clicks".to_string(), 3)]
        );
        // Cut short (partition 0 and the user data gone): what parsed before the damage.
        assert_eq!(
            assigned_partitions(&b[..b.len() - 8]),
            vec![("clicks".to_string(), 3)]
        );
        assert!(assigned_partitions(&[]).is_empty());
    }
}
