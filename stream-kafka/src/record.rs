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

/// A record's value as UTF-8 text.
fn value_text<'a>(r: &RawRecord<'a>) -> Result<&'a str, String> {
    let v = r.value.ok_or("the record has no value (a tombstone)")?;
    std::str::from_utf8(v).map_err(|e| {
        format!(
            "the value is not UTF-8 text (invalid byte at {})",
            e.valid_up_to()
        )
    })
}

/// Decodes a record's value as UTF-8 text.
pub(crate) fn decode_text(r: &RawRecord<'_>) -> Result<String, String> {
    value_text(r).map(str::to_string)
}

/// Bytes of values a buffer of [`decode_texts`] holds (whole values, so a little more): as
/// [`Text::lines`](stream_core::text::Text::lines) cuts files, for the same reason (one buffer
/// for a whole batch has every worker count on it at once).
const TEXT_CHUNK: usize = 64 << 10;

/// Decodes a partition's values as UTF-8 [`Text`](stream_core::text::Text)s cut from shared
/// buffers of about 64 KiB: one allocation per buffer instead of one per record.
pub(crate) fn decode_texts(
    records: &[RawRecord<'_>],
) -> Vec<Result<stream_core::text::Text, String>> {
    use stream_core::text::Text;
    let mut out = Vec::with_capacity(records.len());
    let mut chunk = String::new();
    // Each record of the chunk: its value's place in it, or why it has none.
    let mut spans: Vec<Result<(usize, usize), String>> = Vec::new();
    let mut cut = |chunk: &mut String, spans: &mut Vec<Result<(usize, usize), String>>| {
        let whole = Text::from(chunk.as_str());
        out.extend(
            spans
                .drain(..)
                .map(|span| span.map(|(a, b)| whole.slice_ref(&whole.as_str()[a..b]))),
        );
        chunk.clear();
    };
    for r in records {
        spans.push(value_text(r).map(|v| {
            let at = chunk.len();
            chunk.push_str(v);
            (at, chunk.len())
        }));
        if chunk.len() >= TEXT_CHUNK {
            cut(&mut chunk, &mut spans);
        }
    }
    if !spans.is_empty() {
        cut(&mut chunk, &mut spans);
    }
    out
}

/// Decodes a record's value as JSON.
pub(crate) fn decode_json<V: for<'de> Deserialize<'de>>(r: &RawRecord<'_>) -> Result<V, String> {
    let v = r.value.ok_or("the record has no value (a tombstone)")?;
    serde_json::from_slice(v).map_err(|e| format!("the value is not the expected JSON: {e}"))
}
