//! Spark's WindowOperationsSuite vectors (20), through the conformance harness.

#[path = "conformance/harness.rs"]
mod harness;

#[test]
fn window_operations_match_spark() {
    harness::run_file(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/conformance/spark/window_operations.json"
        ),
        20,
    );
}
