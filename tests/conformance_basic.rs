//! Spark's BasicOperationsSuite vectors (29, including the 5 error cases), through the
//! conformance harness of `tests/conformance/harness.rs`.

#[path = "conformance/harness.rs"]
mod harness;

#[test]
fn basic_operations_match_spark() {
    harness::run_file(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/conformance/spark/basic_operations.json"
        ),
        29,
    );
}

/// The harness must catch a wrong output, a missing batch, a wrong error and a wrong partition
/// count; otherwise the test above would prove nothing.
#[test]
fn harness_detects_differences() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/spark/basic_operations.json"
    ))
    .unwrap();
    let vectors: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let find = |name: &str| vectors.iter().find(|v| v["test"] == name).unwrap().clone();

    let mut wrong_value = find("map");
    wrong_value["expected"][1][2] = serde_json::json!("70");
    assert!(
        harness::run_vector(&wrong_value)
            .unwrap_err()
            .contains("batch 2 differs")
    );

    let mut wrong_order = find("union");
    wrong_order["expected"][0].as_array_mut().unwrap().reverse();
    assert!(harness::run_vector(&wrong_order).is_err());

    let mut missing_batch = find("reduceByKey");
    missing_batch["expected"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!([]));
    missing_batch["num_batches"] = serde_json::json!(3);
    assert!(
        harness::run_vector(&missing_batch)
            .unwrap_err()
            .contains("output batches")
    );

    let mut wrong_multiset = find("countByValue");
    wrong_multiset["expected"][0]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!([1, 1]));
    assert!(harness::run_vector(&wrong_multiset).is_err());

    let mut wrong_error = find("transform with input stream return None");
    wrong_error["expect_error"]["at_batch"] = serde_json::json!(2);
    assert!(harness::run_vector(&wrong_error).is_err());

    let mut wrong_parts = find("repartition (more partitions)");
    wrong_parts["expected_properties"]["partitions_per_batch"] = serde_json::json!(4);
    assert!(
        harness::run_vector(&wrong_parts)
            .unwrap_err()
            .contains("partitions")
    );
}
