//! What a `tracing` subscriber sees of a running pipeline: a span per batch (its time and
//! records) and, inside it, one per output operation, so that a user's subscriber (a flame
//! graph, OpenTelemetry) sees where a batch's time goes.

use std::sync::{Arc, Mutex};

use stream_core::testing::TestContext;
use tracing::span::{Attributes, Id};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// A span as seen: its name, its fields, and its parent's name.
type Seen = (String, String, Option<String>);

/// Each new span.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<Seen>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields(String::new());
        attrs.record(&mut fields);
        let parent = ctx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.name().to_string());
        self.0.lock().unwrap().push((
            attrs.metadata().name().to_string(),
            fields.0.trim().to_string(),
            parent,
        ));
    }
}

#[test]
fn a_subscriber_sees_a_span_per_batch_and_per_output() {
    let spans = Spans::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(spans.clone()))
        .unwrap();
    let tc = TestContext::new();
    let words = tc.input_stream(vec![vec!["a", "b"], vec!["c"]]);
    let upper = words.map(|w: &str| w.to_uppercase());
    upper.foreach_batch(|b, _| drop(b.collect())).unwrap();
    upper
        .count()
        .foreach_batch(|b, _| drop(b.collect()))
        .unwrap();
    tc.run(2).unwrap();

    let seen = spans.0.lock().unwrap().clone();
    let batches: Vec<&Seen> = seen.iter().filter(|s| s.0 == "batch").collect();
    assert_eq!(batches.len(), 2, "{seen:?}");
    assert_eq!(batches[0].1, "time=1000 ms records=2", "{seen:?}");
    assert_eq!(batches[1].1, "time=2000 ms records=1", "{seen:?}");
    let outputs: Vec<&Seen> = seen.iter().filter(|s| s.0 == "output").collect();
    assert_eq!(outputs.len(), 4, "two outputs, two batches: {seen:?}");
    assert!(
        outputs.iter().all(|o| o.2.as_deref() == Some("batch")),
        "each output's span is inside its batch's: {seen:?}"
    );
    assert!(outputs[0].1.starts_with("id=0 operation="), "{seen:?}");
    assert!(outputs[1].1.starts_with("id=1 operation="), "{seen:?}");
}
