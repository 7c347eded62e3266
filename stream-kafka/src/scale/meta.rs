//! The application's record in Kafka: `<app>-meta`, one partition, kept forever. The first
//! instance to start writes the application's facts (zero time, batch interval, pipeline shape,
//! task topics and their partition count); every instance reads the topic from its start and
//! takes the *first* record as the application's, so that two instances starting at once still
//! agree. An instance whose facts differ refuses to join, naming the difference.

use std::time::Duration as StdDuration;

use rdkafka::config::ClientConfig;
use rdkafka::message::OwnedHeaders;

use crate::produce::{self, TrackedProducer, Tracker};

/// What every instance of an application must agree on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AppRecord {
    /// Batch `k` of every task is at `zero_ms + k × batch_ms`.
    pub(crate) zero_ms: i64,
    pub(crate) batch_ms: i64,
    /// The pipeline's shape, one line per fact (inputs, stateful operators).
    pub(crate) shape: Vec<String>,
    /// The topics whose partitions are the tasks (co-partitioned), and their partition count.
    pub(crate) topics: Vec<String>,
    pub(crate) partitions: usize,
}

impl AppRecord {
    /// The first fact of `self` (the application's) that `mine` contradicts.
    pub(crate) fn difference(&self, mine: &AppRecord) -> Option<String> {
        if self.batch_ms != mine.batch_ms {
            return Some(format!(
                "the application's batch interval is {} ms, this instance's is {} ms",
                self.batch_ms, mine.batch_ms
            ));
        }
        if self.topics != mine.topics {
            return Some(format!(
                "the application reads the topics [{}], this instance [{}]",
                self.topics.join(", "),
                mine.topics.join(", ")
            ));
        }
        if self.partitions != mine.partitions {
            return Some(format!(
                "the application was started with {} partitions in [{}], there are {} now: tasks are partitions, so a changed count would move keys between tasks (create a new application id to repartition)",
                self.partitions,
                self.topics.join(", "),
                mine.partitions
            ));
        }
        for i in 0..self.shape.len().max(mine.shape.len()) {
            match (self.shape.get(i), mine.shape.get(i)) {
                (Some(a), Some(b)) if a == b => {}
                (Some(a), Some(b)) => {
                    return Some(format!(
                        "the pipeline differs: the application has {a}, this instance has {b}"
                    ));
                }
                (Some(a), None) => {
                    return Some(format!(
                        "the pipeline differs: the application has {a}, this instance has nothing in its place"
                    ));
                }
                (None, Some(b)) => {
                    return Some(format!(
                        "the pipeline differs: this instance has {b}, which the application does not"
                    ));
                }
                (None, None) => {}
            }
        }
        None
    }
}

/// The first application record in `topic`, reading it from the start to its end.
pub(crate) fn read_first(
    brokers: &str,
    topic: &str,
    timeout: StdDuration,
) -> Result<Option<AppRecord>, String> {
    let mut first = None;
    super::changelog::read_partition(
        brokers,
        topic,
        0,
        None,
        timeout,
        None,
        |offset, key, value, _| {
            if first.is_some() || key != b"application" {
                return Ok(());
            }
            let Some(v) = value else { return Ok(()) };
            let record: AppRecord = serde_json::from_slice(v).map_err(|e| {
            format!(
                "the application record at {topic}-0 offset {offset} does not decode ({e}); it was not written by this version of dstream"
            )
        })?;
            first = Some(record);
            Ok(())
        },
    )?;
    Ok(first)
}

/// Appends `record` as an application record to `topic`.
pub(crate) fn write(brokers: &str, topic: &str, record: &AppRecord) -> Result<(), String> {
    let producer: TrackedProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create_with_context(Tracker::default())
        .map_err(|e| format!("cannot create a producer for {brokers}: {e}"))?;
    let value = serde_json::to_vec(record).map_err(|e| e.to_string())?;
    produce::send(
        &producer,
        topic,
        Some(b"application"),
        Some(&value),
        OwnedHeaders::new(),
    )?;
    produce::flush(&producer, StdDuration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AppRecord {
        AppRecord {
            zero_ms: 1_000,
            batch_ms: 1_000,
            shape: vec![
                "input #0: kafka[clicks]".into(),
                "stateful operator #0: updateStateByKey".into(),
            ],
            topics: vec!["clicks".into()],
            partitions: 6,
        }
    }

    #[test]
    fn the_first_difference_is_named() {
        let app = record();
        assert_eq!(app.difference(&app.clone()), None);
        let mut other = record();
        other.zero_ms = 5_000;
        assert_eq!(
            app.difference(&other),
            None,
            "the zero time is the application's, not compared"
        );
        other.shape[1] = "stateful operator #0: mapWithState".into();
        let d = app.difference(&other).unwrap();
        assert!(
            d.contains("updateStateByKey") && d.contains("mapWithState"),
            "{d}"
        );
        let mut fewer = record();
        fewer.shape.pop();
        assert!(
            app.difference(&fewer)
                .unwrap()
                .contains("nothing in its place")
        );
        let mut more = record();
        more.partitions = 8;
        assert!(app.difference(&more).unwrap().contains("6 partitions"));
    }
}
