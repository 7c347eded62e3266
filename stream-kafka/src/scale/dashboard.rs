//! The scale-out section of an instance's dashboard (`Instance::serve_dashboard`): the tasks
//! with their roles, the group's members and the last rebalance, in the status JSON (`scale`)
//! and in `/metrics` (`dstream_scale_*`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration as StdDuration, Instant, SystemTime};

use serde_json::{Value, json};
use stream_core::{DashboardSection, prometheus_labels, prometheus_metric};

use super::membership::Membership;
use super::{GroupMember, InstanceInner, ScaleOutStatus, TaskRole, lock};

/// How long the group's members, once described, are shown before they are asked again.
const MEMBERS_FRESH: StdDuration = StdDuration::from_secs(3);

/// The members as last described, or why they could not be.
type Members = Result<Vec<GroupMember>, String>;

pub(crate) struct ScaleSection {
    inner: Weak<InstanceInner>,
    membership: Weak<Membership>,
    /// The members and when they were described: the coordinator is asked on a thread of its
    /// own, never on the batch's thread that builds the status.
    members: Arc<Mutex<Option<(Instant, Members)>>>,
    asking: Arc<AtomicBool>,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ScaleSection {
    pub(crate) fn new(inner: Weak<InstanceInner>, membership: Weak<Membership>) -> ScaleSection {
        ScaleSection {
            inner,
            membership,
            members: Arc::new(Mutex::new(None)),
            asking: Arc::new(AtomicBool::new(false)),
        }
    }

    fn status(&self) -> Option<ScaleOutStatus> {
        let inner = self.inner.upgrade()?;
        let membership = self.membership.upgrade();
        Some(inner.status(membership.as_deref()))
    }

    /// The members last described (asking again in the background when they are old).
    fn members(&self) -> Option<Members> {
        let cached = lock(&self.members).clone();
        let stale = cached
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > MEMBERS_FRESH);
        if stale && !self.asking.swap(true, Ordering::SeqCst) {
            let (inner, membership) = (self.inner.clone(), self.membership.clone());
            let (members, asking) = (self.members.clone(), self.asking.clone());
            let spawned = std::thread::Builder::new()
                .name("dstream-dashboard-group".into())
                .spawn(move || {
                    if let (Some(inner), Some(m)) = (inner.upgrade(), membership.upgrade()) {
                        let described = m.members(
                            &inner.settings.app,
                            &inner.client_id,
                            StdDuration::from_secs(2),
                        );
                        *lock(&members) = Some((Instant::now(), described));
                    }
                    asking.store(false, Ordering::SeqCst);
                });
            if spawned.is_err() {
                self.asking.store(false, Ordering::SeqCst);
            }
        }
        cached.map(|(_, m)| m)
    }
}

fn progress(role: &TaskRole) -> Option<f64> {
    match role {
        TaskRole::Restoring { read, of } if *of > 0 => Some((*read as f64 / *of as f64).min(1.0)),
        TaskRole::Restoring { .. } => Some(0.0),
        _ => None,
    }
}

fn partitions(p: &[(String, i32)]) -> Vec<String> {
    p.iter().map(|(t, p)| format!("{t}-{p}")).collect()
}

impl DashboardSection for ScaleSection {
    fn key(&self) -> &str {
        "scale"
    }

    fn json(&self) -> Value {
        let Some(status) = self.status() else {
            return Value::Null;
        };
        let tasks: Vec<Value> = status
            .tasks
            .iter()
            .map(|t| {
                json!({
                    "task": t.task,
                    "role": t.role.name(),
                    "progress": progress(&t.role),
                    "partitions": partitions(&t.partitions),
                    "since_ms": millis(t.since),
                    "batches": t.completed_batches,
                    "last_batch_ms": t.last_batch.map(|b| b.millis()),
                    "restore": t.restore.as_ref().map(|r| json!({
                        "changes": r.changes,
                        "bytes": r.bytes,
                        "from_local": r.from_local,
                        "ms": r.elapsed.as_secs_f64() * 1000.0,
                    })),
                })
            })
            .collect();
        let (members, members_error) = match self.members() {
            Some(Ok(m)) => (
                json!(
                    m.iter()
                        .map(|m| json!({
                            "member": m.member,
                            "client": m.client,
                            "host": m.host,
                            "partitions": partitions(&m.partitions),
                            "me": m.me,
                        }))
                        .collect::<Vec<_>>()
                ),
                Value::Null,
            ),
            Some(Err(e)) => (Value::Null, json!(e)),
            None => (Value::Null, json!("asking the group coordinator")),
        };
        json!({
            "app": status.app,
            "zero_ms": status.zero.millis(),
            "total_tasks": status.total_tasks,
            "tasks": tasks,
            "members": members,
            "members_error": members_error,
            "last_rebalance": status.last_rebalance.as_ref().map(|(at, what)| json!({
                "at_ms": millis(*at),
                "what": what,
            })),
        })
    }

    fn prometheus(&self, out: &mut String) {
        let Some(status) = self.status() else {
            return;
        };
        let app = status.app.as_str();
        let count = |role: &str| {
            status
                .tasks
                .iter()
                .filter(|t| t.role.name() == role)
                .count()
        };
        prometheus_metric(
            out,
            "dstream_scale_tasks",
            "gauge",
            "Tasks on this instance, by role.",
            &["active", "restoring", "standby"]
                .iter()
                .map(|r| {
                    (
                        prometheus_labels(&[("app", app), ("role", r)]),
                        count(r) as f64,
                    )
                })
                .collect::<Vec<_>>(),
        );
        prometheus_metric(
            out,
            "dstream_scale_application_tasks",
            "gauge",
            "Tasks of the application (the partitions of its task topics).",
            &[(
                prometheus_labels(&[("app", app)]),
                status.total_tasks as f64,
            )],
        );
        prometheus_metric(
            out,
            "dstream_scale_task_batches_total",
            "counter",
            "Batches each task completed on this instance since it came here.",
            &status
                .tasks
                .iter()
                .map(|t| {
                    (
                        prometheus_labels(&[
                            ("app", app),
                            ("task", &t.task),
                            ("role", t.role.name()),
                        ]),
                        t.completed_batches as f64,
                    )
                })
                .collect::<Vec<_>>(),
        );
        prometheus_metric(
            out,
            "dstream_scale_restore_progress",
            "gauge",
            "How far each restoring task is in its changelogs (0 to 1).",
            &status
                .tasks
                .iter()
                .filter_map(|t| {
                    progress(&t.role)
                        .map(|p| (prometheus_labels(&[("app", app), ("task", &t.task)]), p))
                })
                .collect::<Vec<_>>(),
        );
        if let Some(Ok(members)) = self.members() {
            prometheus_metric(
                out,
                "dstream_scale_group_members",
                "gauge",
                "Members of the application's consumer group.",
                &[(prometheus_labels(&[("app", app)]), members.len() as f64)],
            );
        }
        if let Some((at, _)) = &status.last_rebalance {
            prometheus_metric(
                out,
                "dstream_scale_last_rebalance_timestamp_seconds",
                "gauge",
                "When this instance last took part in a rebalance (Unix time).",
                &[(
                    prometheus_labels(&[("app", app)]),
                    millis(*at) as f64 / 1000.0,
                )],
            );
        }
    }
}
