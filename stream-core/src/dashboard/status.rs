//! What the dashboard shows: the recent batches and running totals, as JSON for the page and
//! in Prometheus' text format for `/metrics`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use serde_json::{Value, json};

use super::feed::FeedStats;
use crate::metrics::{BatchInfo, InputBufferStatus, InputPartitionStatus, OperatorInfo, StateInfo};
use crate::poison::RecordErrorCount;
use crate::time::Duration;

/// Batches kept for the charts and the table (Spark's UI keeps 1000; a page shows fewer).
const KEPT: usize = 300;

/// Batches sent to the page.
const SENT: usize = 120;

/// What the contexts' inputs and operators and the feeds report now, beside the batches the
/// history keeps: read once per status or `/metrics` request.
#[derive(Default)]
pub(crate) struct Live {
    pub(crate) inputs: Vec<InputPartitionStatus>,
    pub(crate) buffers: Vec<InputBufferStatus>,
    pub(crate) errors: Vec<RecordErrorCount>,
    pub(crate) feeds: Vec<FeedStats>,
}

#[derive(Default, Clone)]
struct OperatorTotals {
    name: String,
    parents: Vec<usize>,
    records: u64,
    task_time: std::time::Duration,
    last: Option<OperatorInfo>,
}

pub(crate) struct History {
    batch: Duration,
    started: std::time::SystemTime,
    recent: VecDeque<BatchInfo>,
    completed: u64,
    failed: u64,
    records: u64,
    processing: std::time::Duration,
    operators: BTreeMap<usize, OperatorTotals>,
    /// Each source's (context's) last state sizes: shown summed by operator.
    state: BTreeMap<usize, Vec<StateInfo>>,
    /// The sources of each kept batch: a batch time completed by several sources is one row.
    sources: VecDeque<Vec<usize>>,
}

fn ms(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.millis()))
}

fn secs(d: std::time::Duration) -> f64 {
    d.as_secs_f64()
}

impl History {
    pub(crate) fn new(batch: Duration) -> Self {
        History {
            batch,
            started: std::time::SystemTime::now(),
            recent: VecDeque::new(),
            completed: 0,
            failed: 0,
            records: 0,
            processing: std::time::Duration::ZERO,
            operators: BTreeMap::new(),
            state: BTreeMap::new(),
            sources: VecDeque::new(),
        }
    }

    /// Forgets what `source` holds now (its state): it left.
    pub(crate) fn forget(&mut self, source: usize) {
        self.state.remove(&source);
    }

    /// The state sizes of every source, summed by operator.
    fn state(&self) -> Vec<StateInfo> {
        let mut sum: BTreeMap<&str, StateInfo> = BTreeMap::new();
        for s in self.state.values().flatten() {
            let e = sum.entry(&s.operator).or_insert_with(|| StateInfo {
                operator: s.operator.clone(),
                keys: 0,
                bytes: 0,
            });
            e.keys += s.keys;
            e.bytes += s.bytes;
        }
        sum.into_values().collect()
    }

    /// A batch of `source` completed.
    pub(crate) fn add(&mut self, source: usize, info: &BatchInfo) {
        self.records += info.num_records;
        self.processing += info.processing_time.unwrap_or_default();
        for o in &info.operators {
            let t = self.operators.entry(o.id).or_default();
            t.name.clone_from(&o.name);
            t.parents.clone_from(&o.parents);
            t.records += o.records;
            t.task_time += o.task_time;
            t.last = Some(o.clone());
        }
        if !info.state.is_empty() {
            self.state.insert(source, info.state.clone());
        }
        // Another source's batch of the same time (recent ones only): one row of both.
        let same = self
            .recent
            .iter()
            .zip(&self.sources)
            .rev()
            .take(64)
            .position(|(b, from)| b.batch_time == info.batch_time && !from.contains(&source));
        if let Some(back) = same {
            let i = self.recent.len() - 1 - back;
            let row = &mut self.recent[i];
            let was_failed = row.failure.is_some();
            row.num_records += info.num_records;
            row.submission_time = row.submission_time.min(info.submission_time);
            row.processing_start = match (row.processing_start, info.processing_start) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            row.processing_end = match (row.processing_end, info.processing_end) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            row.processing_time = match (row.processing_time, info.processing_time) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            if row.failure.is_none() {
                row.failure.clone_from(&info.failure);
            }
            self.failed += u64::from(!was_failed && info.failure.is_some());
            self.sources[i].push(source);
            return;
        }
        self.completed += 1;
        self.failed += u64::from(info.failure.is_some());
        if self.recent.len() == KEPT {
            self.recent.pop_front();
            self.sources.pop_front();
        }
        let mut kept = info.clone();
        // Per-batch operator rows are in the totals; the table does not need them.
        kept.operators = Vec::new();
        kept.state = Vec::new();
        self.recent.push_back(kept);
        self.sources.push_back(vec![source]);
    }

    fn rate(&self, info: &BatchInfo) -> f64 {
        info.num_records as f64 * 1000.0 / self.batch.millis().max(1) as f64
    }

    pub(crate) fn json(&self, state: &str, live: &Live, sections: Vec<(String, Value)>) -> String {
        let Live {
            inputs,
            buffers,
            errors,
            feeds,
        } = live;
        let batches: Vec<Value> = self
            .recent
            .iter()
            .rev()
            .take(SENT)
            .rev()
            .map(|b| {
                json!({
                    "time": b.batch_time.millis(),
                    "records": b.num_records,
                    "rate": self.rate(b),
                    "scheduling_delay_ms": ms(b.scheduling_delay()),
                    "processing_ms": b.processing_time.map(|d| d.as_secs_f64() * 1000.0),
                    "total_delay_ms": ms(b.total_delay()),
                    "failure": b.failure,
                    "outputs": b.output_operations.iter().map(|o| json!({
                        "id": o.id,
                        "description": o.description,
                        "ms": o.duration.as_secs_f64() * 1000.0,
                        "failure": o.failure,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let operators: Vec<Value> = self
            .operators
            .iter()
            .map(|(id, t)| {
                let last = t.last.as_ref();
                json!({
                    "id": id,
                    "name": t.name,
                    "parents": t.parents,
                    "records": last.map_or(0, |o| o.records),
                    "task_ms": last.map_or(0.0, |o| o.task_time.as_secs_f64() * 1000.0),
                    "records_total": t.records,
                    "task_ms_total": t.task_time.as_secs_f64() * 1000.0,
                })
            })
            .collect();
        let n = self.recent.len().max(1) as f64;
        let avg = |f: &dyn Fn(&BatchInfo) -> Option<f64>| -> Value {
            let v: Vec<f64> = self.recent.iter().filter_map(f).collect();
            if v.is_empty() {
                Value::Null
            } else {
                json!(v.iter().sum::<f64>() / v.len() as f64)
            }
        };
        let state_stores = self.state();
        let mut status = json!({
            "state": state,
            "batch_ms": self.batch.millis(),
            "started_ms": self.started.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            "batches_completed": self.completed,
            "batches_failed": self.failed,
            "records_total": self.records,
            "avg_rate": self.recent.iter().map(|b| self.rate(b)).sum::<f64>() / n,
            "avg_scheduling_delay_ms": avg(&|b| b.scheduling_delay().map(|d| d.millis() as f64)),
            "avg_processing_ms": avg(&|b| b.processing_time.map(|d| d.as_secs_f64() * 1000.0)),
            "avg_total_delay_ms": avg(&|b| b.total_delay().map(|d| d.millis() as f64)),
            "batches": batches,
            "operators": operators,
            "state_stores": state_stores.iter().map(|s| json!({
                "operator": s.operator, "keys": s.keys, "bytes": s.bytes,
            })).collect::<Vec<_>>(),
            "inputs": inputs.iter().map(|i| json!({
                "input": i.input, "partition": i.partition, "position": i.position, "lag": i.lag,
            })).collect::<Vec<_>>(),
            "feeds": feeds.iter().map(|f| json!({
                "name": f.name, "clients": f.clients, "messages": f.messages, "dropped": f.dropped,
            })).collect::<Vec<_>>(),
            "input_buffers": buffers.iter().map(|b| json!({
                "input": b.input, "records": b.records, "bytes": b.bytes,
                "warnings_suppressed": b.warnings_suppressed,
            })).collect::<Vec<_>>(),
            "record_errors": errors.iter().map(|e| json!({
                "operator": e.operator, "skipped": e.skipped, "dead_lettered": e.dead_lettered,
            })).collect::<Vec<_>>(),
        });
        if let Value::Object(map) = &mut status {
            for (key, value) in sections {
                map.insert(key, value);
            }
        }
        status.to_string()
    }

    pub(crate) fn prometheus(&self, live: &Live) -> String {
        let Live {
            inputs,
            buffers,
            errors,
            feeds,
        } = live;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, rows: Vec<(String, f64)>| {
            prometheus_metric(&mut out, name, kind, help, &rows);
        };
        let last = self.recent.back();
        metric(
            "dstream_batch_interval_seconds",
            "gauge",
            "The batch interval.",
            vec![(String::new(), self.batch.millis() as f64 / 1000.0)],
        );
        metric(
            "dstream_batches_completed_total",
            "counter",
            "Batches completed (failed ones included).",
            vec![(String::new(), self.completed as f64)],
        );
        metric(
            "dstream_batches_failed_total",
            "counter",
            "Batches that failed.",
            vec![(String::new(), self.failed as f64)],
        );
        metric(
            "dstream_input_records_total",
            "counter",
            "Records read by all inputs.",
            vec![(String::new(), self.records as f64)],
        );
        metric(
            "dstream_processing_seconds_total",
            "counter",
            "Time spent processing batches.",
            vec![(String::new(), secs(self.processing))],
        );
        if let Some(b) = last {
            let d = |x: Option<Duration>| x.map_or(f64::NAN, |d| d.millis() as f64 / 1000.0);
            metric(
                "dstream_last_batch_records",
                "gauge",
                "Records of the last completed batch.",
                vec![(String::new(), b.num_records as f64)],
            );
            metric(
                "dstream_last_batch_processing_seconds",
                "gauge",
                "Processing time of the last completed batch.",
                vec![(
                    String::new(),
                    b.processing_time.map_or(f64::NAN, |p| p.as_secs_f64()),
                )],
            );
            metric(
                "dstream_last_batch_scheduling_delay_seconds",
                "gauge",
                "Scheduling delay of the last completed batch.",
                vec![(String::new(), d(b.scheduling_delay()))],
            );
            metric(
                "dstream_last_batch_total_delay_seconds",
                "gauge",
                "Total delay of the last completed batch.",
                vec![(String::new(), d(b.total_delay()))],
            );
        }
        let op_labels = |id: &usize, t: &OperatorTotals| {
            format!("{{id=\"{id}\",operator=\"{}\"}}", escape(&t.name))
        };
        metric(
            "dstream_operator_records_total",
            "counter",
            "Records each operator produced.",
            self.operators
                .iter()
                .map(|(id, t)| (op_labels(id, t), t.records as f64))
                .collect(),
        );
        metric(
            "dstream_operator_task_seconds_total",
            "counter",
            "Time worker threads spent in each operator.",
            self.operators
                .iter()
                .map(|(id, t)| (op_labels(id, t), secs(t.task_time)))
                .collect(),
        );
        let state = self.state();
        let state_labels = |s: &StateInfo| format!("{{operator=\"{}\"}}", escape(&s.operator));
        metric(
            "dstream_state_keys",
            "gauge",
            "Keys holding state, per stateful operator.",
            state
                .iter()
                .map(|s| (state_labels(s), s.keys as f64))
                .collect(),
        );
        metric(
            "dstream_state_bytes",
            "gauge",
            "Bytes of each stateful operator's state in RocksDB (estimate).",
            state
                .iter()
                .map(|s| (state_labels(s), s.bytes as f64))
                .collect(),
        );
        let input_labels = |i: &InputPartitionStatus| {
            format!(
                "{{input=\"{}\",partition=\"{}\"}}",
                escape(&i.input),
                escape(&i.partition)
            )
        };
        metric(
            "dstream_input_position",
            "gauge",
            "The next position (offset) a batch takes, per input partition.",
            inputs
                .iter()
                .map(|i| (input_labels(i), i.position as f64))
                .collect(),
        );
        metric(
            "dstream_input_lag_records",
            "gauge",
            "Records available after the position, per input partition.",
            inputs
                .iter()
                .filter_map(|i| i.lag.map(|l| (input_labels(i), l as f64)))
                .collect(),
        );
        let buffer_labels = |b: &InputBufferStatus| format!("{{input=\"{}\"}}", escape(&b.input));
        metric(
            "dstream_input_buffered_records",
            "gauge",
            "Records an input holds for the next batch (a receiver's buffer).",
            buffers
                .iter()
                .map(|b| (buffer_labels(b), b.records as f64))
                .collect(),
        );
        metric(
            "dstream_input_buffered_bytes",
            "gauge",
            "Bytes of the records an input holds for the next batch.",
            buffers
                .iter()
                .map(|b| (buffer_labels(b), b.bytes as f64))
                .collect(),
        );
        metric(
            "dstream_input_warnings_suppressed_total",
            "counter",
            "Warnings of an input not logged because one like it was logged shortly before.",
            buffers
                .iter()
                .map(|b| (buffer_labels(b), b.warnings_suppressed as f64))
                .collect(),
        );
        let error_labels =
            |e: &RecordErrorCount| format!("{{operator=\"{}\"}}", escape(&e.operator));
        metric(
            "dstream_records_skipped_total",
            "counter",
            "Records dropped by an operator's error policy (skip, dead letter) or that a source could not decode.",
            errors
                .iter()
                .map(|e| (error_labels(e), e.skipped as f64))
                .collect(),
        );
        metric(
            "dstream_dead_letters_total",
            "counter",
            "Of the records dropped, those handed to a dead-letter output.",
            errors
                .iter()
                .map(|e| (error_labels(e), e.dead_lettered as f64))
                .collect(),
        );
        let feed_labels = |f: &FeedStats| format!("{{feed=\"{}\"}}", escape(&f.name));
        metric(
            "dstream_websocket_clients",
            "gauge",
            "Clients connected to each WebSocket feed.",
            feeds
                .iter()
                .map(|f| (feed_labels(f), f.clients as f64))
                .collect(),
        );
        metric(
            "dstream_websocket_messages_total",
            "counter",
            "Batches published to each WebSocket feed.",
            feeds
                .iter()
                .map(|f| (feed_labels(f), f.messages as f64))
                .collect(),
        );
        metric(
            "dstream_websocket_dropped_total",
            "counter",
            "Messages not delivered to a client whose queue was full.",
            feeds
                .iter()
                .map(|f| (feed_labels(f), f.dropped as f64))
                .collect(),
        );
        out
    }
}

/// Writes one metric in Prometheus' text format to `out`: its `# HELP` and `# TYPE` lines
/// (`kind` is `counter` or `gauge`), then a sample per `(labels, value)`, `labels` as
/// [`prometheus_labels`] makes them (empty for none). For [`DashboardSection`](super::DashboardSection)s.
pub fn prometheus_metric(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    samples: &[(String, f64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, v) in samples {
        let _ = writeln!(out, "{name}{labels} {v}");
    }
}

/// Labels of a Prometheus sample: `{a="x",b="y"}`, the values escaped.
pub fn prometheus_labels(labels: &[(&str, &str)]) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Time;

    fn info(t: i64, records: u64) -> BatchInfo {
        BatchInfo {
            batch_time: Time::from_millis(t),
            num_records: records,
            submission_time: Time::from_millis(t),
            processing_start: Some(Time::from_millis(t + 2)),
            processing_end: Some(Time::from_millis(t + 12)),
            processing_time: Some(std::time::Duration::from_millis(10)),
            failure: None,
            output_operations: Vec::new(),
            operators: vec![OperatorInfo {
                id: 1,
                name: "map \"x\"".into(),
                parents: vec![0],
                records,
                task_time: std::time::Duration::from_millis(3),
            }],
            state: vec![StateInfo {
                operator: "#0 updateStateByKey".into(),
                keys: 7,
                bytes: 100,
            }],
        }
    }

    #[test]
    fn prometheus_text_has_totals_and_escaped_labels() {
        let mut h = History::new(Duration::from_millis(500));
        h.add(0, &info(1000, 10));
        h.add(0, &info(1500, 30));
        let live = Live {
            feeds: vec![FeedStats {
                name: "top".into(),
                clients: 2,
                messages: 5,
                dropped: 1,
            }],
            inputs: vec![InputPartitionStatus {
                input: "kafka".into(),
                partition: "t-0".into(),
                position: 42,
                lag: Some(8),
            }],
            errors: vec![RecordErrorCount {
                operator: "map#3".into(),
                skipped: 4,
                dead_lettered: 2,
            }],
            buffers: vec![InputBufferStatus {
                input: "socketTextStream(localhost:9999)".into(),
                records: 12,
                bytes: 1200,
                warnings_suppressed: 3,
            }],
        };
        let text = h.prometheus(&live);
        for line in [
            "dstream_records_skipped_total{operator=\"map#3\"} 4",
            "dstream_input_buffered_bytes{input=\"socketTextStream(localhost:9999)\"} 1200",
            "dstream_input_warnings_suppressed_total{input=\"socketTextStream(localhost:9999)\"} 3",
            "dstream_dead_letters_total{operator=\"map#3\"} 2",
            "dstream_batches_completed_total 2",
            "dstream_input_records_total 40",
            "dstream_last_batch_records 30",
            "dstream_last_batch_total_delay_seconds 0.012",
            "dstream_operator_records_total{id=\"1\",operator=\"map \\\"x\\\"\"} 40",
            "dstream_state_keys{operator=\"#0 updateStateByKey\"} 7",
            "dstream_input_lag_records{input=\"kafka\",partition=\"t-0\"} 8",
            "dstream_websocket_dropped_total{feed=\"top\"} 1",
            "# TYPE dstream_operator_task_seconds_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
    }

    #[test]
    fn the_status_json_has_rates_and_operators() {
        let mut h = History::new(Duration::from_millis(500));
        h.add(0, &info(1000, 10));
        let v: Value = serde_json::from_str(&h.json(
            "ACTIVE",
            &Live::default(),
            vec![("scale".into(), json!({"app": "a"}))],
        ))
        .unwrap();
        assert_eq!(v["scale"]["app"], json!("a"));
        assert_eq!(v["batches"][0]["rate"], json!(20.0));
        assert_eq!(v["batches"][0]["scheduling_delay_ms"], json!(2));
        assert_eq!(v["operators"][0]["records_total"], json!(10));
        assert_eq!(v["state_stores"][0]["keys"], json!(7));
        assert_eq!(v["state"], json!("ACTIVE"));
    }

    /// The tasks of a scaled-out instance complete the same batch times: one row each, with
    /// their records summed, the slowest's time, and their state summed.
    #[test]
    fn batches_of_several_sources_at_one_time_are_one_row() {
        let mut h = History::new(Duration::from_millis(500));
        h.add(0, &info(1000, 10));
        let mut slow = info(1000, 5);
        slow.processing_time = Some(std::time::Duration::from_millis(40));
        slow.processing_end = Some(Time::from_millis(1042));
        h.add(1, &slow);
        h.add(0, &info(1500, 1));
        // The same source twice at one time (a replay) is a row of its own.
        h.add(0, &info(1500, 2));
        let v: Value = serde_json::from_str(&h.json("Active", &Live::default(), vec![])).unwrap();
        let rows = v["batches"].as_array().unwrap();
        assert_eq!(rows.len(), 3, "{v}");
        assert_eq!(rows[0]["records"], json!(15));
        assert_eq!(rows[0]["processing_ms"], json!(40.0));
        assert_eq!(rows[0]["total_delay_ms"], json!(42));
        assert_eq!(v["batches_completed"], json!(3));
        assert_eq!(v["records_total"], json!(18));
        assert_eq!(
            v["state_stores"][0]["keys"],
            json!(14),
            "7 keys in each source"
        );
        h.forget(1);
        let v: Value = serde_json::from_str(&h.json("Active", &Live::default(), vec![])).unwrap();
        assert_eq!(
            v["state_stores"][0]["keys"],
            json!(7),
            "the source that left"
        );
    }
}
