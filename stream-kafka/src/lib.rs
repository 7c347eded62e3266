//! Kafka for dstream: a direct source whose offsets live in the checkpoint, and a sink with
//! at-least-once, idempotent and exactly-once delivery. See `docs/kafka.md`.
//!
//! ```no_run
//! use stream_core::prelude::*;
//! use stream_kafka::{Delivery, KafkaSink, KafkaSource, KafkaStreams, SaveToKafka};
//!
//! # fn main() -> Result<(), Error> {
//! let ssc = StreamingContext::new(Seconds(1))?;
//! ssc.checkpoint("/tmp/hashtags-checkpoint")?;
//! let tweets = ssc.kafka_stream(KafkaSource::strings("127.0.0.1:9092").topics(["tweets"]).build()?);
//! let counts = tweets
//!     .flat_map(|t| t.split(' ').filter(|w| w.starts_with('#')).map(str::to_string).collect::<Vec<_>>())
//!     .map(|tag| (tag, 1i64))
//!     .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, Seconds(60), Seconds(1));
//! counts.save_to_kafka(KafkaSink::json("127.0.0.1:9092", "tag-counts").delivery(Delivery::ExactlyOnce))?;
//! ssc.start()?;
//! ssc.await_termination()
//! # }
//! ```

#![warn(missing_docs)]

pub mod admin;
mod dead_letter;
mod produce;
mod rate;
mod record;
mod scale;
mod sink;
mod source;

pub use dead_letter::{dead_letter_topic, dead_letter_topic_with};
pub use rate::PidRateEstimator;
pub use record::{KafkaRecord, OutRecord, RawRecord};
pub use scale::{
    GroupMember, Instance, RestoreInfo, ScaleOut, ScaleOutBuilder, ScaleOutStatus, TaskRole,
    TaskStatus,
};
pub use sink::{BATCH_HEADER, Delivery, KafkaSink, KafkaSinkBuilder, SINK_HEADER, SaveToKafka};
pub use source::{
    KafkaSource, KafkaSourceBuilder, KafkaSourceHandle, KafkaSourceStatus, KafkaStreams,
    OffsetRange, PartitionStatus, StartingOffsets, Subscription,
};

/// A consumer context for readers that read to the end: librdkafka also reports the end of a
/// partition as a client error, which the default context logs at the error level.
pub(crate) struct EndIsNoError;

impl rdkafka::ClientContext for EndIsNoError {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::PartitionEOF) {
            tracing::debug!("{error}: {reason}");
        } else {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl rdkafka::consumer::ConsumerContext for EndIsNoError {}
