//! Records in and out: what a source decodes from, and what a sink encodes to.

use serde::{Deserialize, Serialize};

/// A Kafka record as read, before decoding (given to a source's decoder).
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a> {
    /// The topic it was read from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp (ms since the epoch), when it has one.
    pub timestamp: Option<i64>,
    /// Its key.
    pub key: Option<&'a [u8]>,
    /// Its value (`None` for a tombstone).
    pub value: Option<&'a [u8]>,
}

/// A decoded record with where it came from (a source built with
/// [`KafkaSourceBuilder::with_metadata`](crate::KafkaSourceBuilder::with_metadata)): Spark's
/// `ConsumerRecord`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KafkaRecord<V> {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The timestamp (ms since the epoch), when the record has one.
    pub timestamp: Option<i64>,
    /// The key, as bytes.
    pub key: Option<Vec<u8>>,
    /// The decoded value.
    pub value: V,
}

/// A record to produce: made by a sink's encoder from each output record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutRecord {
    /// The topic, when it is not the sink's topic (a topic per record).
    pub topic: Option<String>,
    /// The key: it chooses the partition (as Kafka's default partitioner does).
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
}

impl OutRecord {
    /// A record whose value is `value`'s bytes.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        OutRecord {
            topic: None,
            key: None,
            value: value.into(),
        }
    }

    /// A record whose value is `value` as JSON.
    pub fn json<V: Serialize + ?Sized>(value: &V) -> Result<Self, serde_json::Error> {
        Ok(OutRecord::new(serde_json::to_vec(value)?))
    }

    /// With a key.
    pub fn key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// To another topic than the sink's.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }
}

/// Decodes a record's value as UTF-8 text.
pub(crate) fn decode_text(r: &RawRecord<'_>) -> Result<String, String> {
    let v = r.value.ok_or("the record has no value (a tombstone)")?;
    String::from_utf8(v.to_vec()).map_err(|e| {
        format!(
            "the value is not UTF-8 text (invalid byte at {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Decodes a record's value as JSON.
pub(crate) fn decode_json<V: for<'de> Deserialize<'de>>(r: &RawRecord<'_>) -> Result<V, String> {
    let v = r.value.ok_or("the record has no value (a tombstone)")?;
    serde_json::from_slice(v).map_err(|e| format!("the value is not the expected JSON: {e}"))
}
