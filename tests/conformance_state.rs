//! Spark's updateStateByKey and MapWithStateSuite vectors (13), through the conformance harness.

#[path = "conformance/harness.rs"]
mod harness;

#[test]
fn state_operations_match_spark() {
    harness::run_file(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/conformance/spark/state_operations.json"
        ),
        13,
    );
}

/// The state comparisons must catch a wrong snapshot and a wrong timeout batch.
#[test]
fn harness_detects_state_differences() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/spark/state_operations.json"
    ))
    .unwrap();
    let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let find = |name: &str| vectors.iter().find(|v| v["test"] == name).unwrap().clone();

    let mut snap = find("mapWithState - basic operations with simple API");
    snap["expected_state_snapshots"][2][0] = serde_json::json!(["a", 7]);
    assert!(
        harness::run_vector(&snap)
            .unwrap_err()
            .contains("stateSnapshots batch 3 differs")
    );

    let mut spark = find("mapWithState - state timing out");
    spark["spark_timeouts"] = serde_json::json!(true);
    assert!(harness::run_vector(&spark).is_ok());
    spark["derived_expected"][9] = serde_json::json!([]);
    spark["derived_expected"][8] = serde_json::json!(["b", "c"]);
    assert!(harness::run_vector(&spark).is_err());
}
