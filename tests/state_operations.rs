//! State operations beyond the Spark vectors: exact timeouts, which keys each operation touches,
//! and misuse of the State API failing the batch with Spark's message.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use dstream::prelude::*;
use dstream::testing::{Collected, TestContext};
use dstream::{State, StateSpec};

/// Spark's timeout test input: a, b, c, then a alone, with a two-batch gap.
fn timeout_input() -> Vec<Vec<&'static str>> {
    let mut v = vec![
        vec!["a", "b", "c"],
        vec!["a", "b"],
        vec!["a"],
        vec![],
        vec![],
    ];
    v.extend(std::iter::repeat_n(vec!["a"], 15));
    v
}

fn touch_spec() -> StateSpec<String, i32, i32, String> {
    StateSpec::function(|_, k: &String, v: Option<i32>, st: &mut State<i32>| {
        if v.is_some() {
            st.update(1);
        }
        st.is_timing_out().then(|| k.clone())
    })
}

#[test]
fn exact_timeouts_fire_when_due_not_on_checkpoint_batches() {
    let tc = TestContext::new();
    let s = tc.input_stream(timeout_input()).map(|k| (k.to_string(), 1));
    let out = s.map_with_state(touch_spec().timeout(Seconds(3)));
    let timed_out = tc.collect(&out.mapped()).unwrap();
    let snaps = tc.collect(&out.state_snapshots()).unwrap();
    tc.run(20).unwrap();
    let got = timed_out.batches();
    // c was last updated at 1000 ms and b at 2000 ms; idle longer than 3 s means strictly
    // before t - 3000: c at 5000 ms, b at 6000 ms (Spark: both at its checkpoint batch, 10000 ms).
    assert_eq!(got[4], vec!["c"]);
    assert_eq!(got[5], vec!["b"]);
    assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 2);
    let mut last = snaps.batch(19);
    last.sort();
    assert_eq!(last, vec![("a".to_string(), 1)]);
}

#[test]
fn spark_timeouts_fire_on_checkpoint_batches_only() {
    let tc = TestContext::new();
    let s = tc.input_stream(timeout_input()).map(|k| (k.to_string(), 1));
    let out = s.map_with_state(touch_spec().timeout(Seconds(3)).spark_timeouts(None));
    let timed_out = tc.collect(&out.mapped()).unwrap();
    tc.run(20).unwrap();
    let got = timed_out.batches();
    let mut at_10 = got[9].clone();
    at_10.sort();
    assert_eq!(at_10, vec!["b", "c"]);
    assert_eq!(got.iter().map(Vec::len).sum::<usize>(), 2);
}

#[test]
fn map_with_state_touches_only_keys_with_records_update_state_by_key_all() {
    let tc = TestContext::new();
    // 100 keys in the first batch, then one key per batch.
    let mut input = vec![(0..100).collect::<Vec<u32>>()];
    input.extend((0..4).map(|i| vec![i]));
    let s = tc.input_stream(input).map(|k| (k, 1u32));
    let (mws_calls, usbk_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (m, u) = (mws_calls.clone(), usbk_calls.clone());
    let mws = s.map_with_state(StateSpec::function(
        move |_, _: &u32, v: Option<u32>, st: &mut State<u32>| {
            m.fetch_add(1, Ordering::SeqCst);
            st.update(st.get().copied().unwrap_or(0) + v.unwrap_or(0));
            None::<u32>
        },
    ));
    let usbk = s.update_state_by_key(move |vs: Vec<u32>, st: Option<u32>| {
        u.fetch_add(1, Ordering::SeqCst);
        Some(st.unwrap_or(0) + vs.iter().sum::<u32>())
    });
    tc.collect(&mws.mapped()).unwrap();
    let totals = tc.collect(&usbk).unwrap();
    tc.run(5).unwrap();
    assert_eq!(
        mws_calls.load(Ordering::SeqCst),
        104,
        "mapWithState: once per record"
    );
    assert_eq!(
        usbk_calls.load(Ordering::SeqCst),
        500,
        "updateStateByKey: every key, every batch"
    );
    assert_eq!(totals.batch(4).len(), 100);
}

/// Each record's output of a function that appends its value to the key's state: what Spark's
/// `mapWithState` gives, computed one record at a time in arrival order (input partitions in
/// order, then each one's order), as a sorted list per batch.
fn appended_model(input: &[Vec<(String, u32)>]) -> Vec<Vec<(String, Vec<u32>)>> {
    let mut state: std::collections::HashMap<String, Vec<u32>> = Default::default();
    input
        .iter()
        .map(|batch| {
            let mut out: Vec<(String, Vec<u32>)> = batch
                .iter()
                .map(|(k, v)| {
                    let seen = state.entry(k.clone()).or_default();
                    seen.push(*v);
                    (k.clone(), seen.clone())
                })
                .collect();
            out.sort();
            out
        })
        .collect()
}

/// The mapping function of the arrival-order tests: appends the record's value to the key's
/// state and outputs `(name, the values so far)`.
fn append_value(
    name: String,
    v: Option<u32>,
    st: &mut State<Vec<u32>>,
) -> Option<(String, Vec<u32>)> {
    let mut seen = st.get().cloned().unwrap_or_default();
    seen.extend(v);
    st.update(seen.clone());
    Some((name, seen))
}

/// Each batch of `out`, sorted (as `appended_model` gives them).
fn sorted_batches(out: Collected<(String, Vec<u32>)>) -> Vec<Vec<(String, Vec<u32>)>> {
    out.batches()
        .into_iter()
        .map(|mut b| {
            b.sort();
            b
        })
        .collect()
}

/// The records are grouped per key on the map side; each key's records still reach the function
/// one by one in arrival order, across input partitions and batches, whether its keys own memory
/// (`String`, grouped) or not (shipped record by record).
#[test]
fn map_with_state_sees_each_keys_records_in_arrival_order() {
    // Keys interleaved within and across the input's two partitions.
    let input: Vec<Vec<(String, u32)>> = (0..3u32)
        .map(|b| {
            (0..2_000u32)
                .map(|i| (format!("k{}", (i * 7 + b) % 97), b * 10_000 + i))
                .collect()
        })
        .collect();
    let want = appended_model(&input);
    let append = |_: Time, k: &String, v: Option<u32>, st: &mut State<Vec<u32>>| {
        append_value(k.clone(), v, st)
    };

    let tc = TestContext::with(Seconds(1), 3);
    let strings = tc.input_stream(input.clone());
    let by_string = tc
        .collect(&strings.map_with_state(StateSpec::function(append)).mapped())
        .unwrap();
    let numbers = tc
        .input_stream(input.clone())
        .map(|(k, v)| (k[1..].parse::<u32>().unwrap(), v));
    let by_number = tc
        .collect(
            &numbers
                .map_with_state(StateSpec::function(
                    |_: Time, k: &u32, v: Option<u32>, st: &mut State<Vec<u32>>| {
                        append_value(format!("k{k}"), v, st)
                    },
                ))
                .mapped(),
        )
        .unwrap();
    tc.run(3).unwrap();
    for (name, got) in [("String keys", by_string), ("u32 keys", by_number)] {
        let got = sorted_batches(got);
        assert!(
            got == want,
            "{name}: outputs differ from Spark's, record by record"
        );
    }
}

/// Partitions of several segments whose keys are mostly new: the map side stops grouping after
/// its first segment (see `group_by_key`), and each key's records still come in arrival order,
/// within a partition (a key's second record two segments later) and across the two.
#[test]
fn map_with_state_keeps_arrival_order_when_the_map_side_stops_grouping() {
    // 300,000 records a batch in 2 partitions: every key three times, 100,000 records apart.
    let input: Vec<Vec<(String, u32)>> = (0..2u32)
        .map(|b| {
            (0..300_000u32)
                .map(|i| (format!("k{}", i * 7_919 % 100_000), b * 1_000_000 + i))
                .collect()
        })
        .collect();
    let want = appended_model(&input);
    let tc = TestContext::with(Seconds(1), 2);
    let out = tc
        .collect(
            &tc.input_stream(input)
                .map_with_state(StateSpec::function(
                    |_: Time, k: &String, v: Option<u32>, st: &mut State<Vec<u32>>| {
                        append_value(k.clone(), v, st)
                    },
                ))
                .mapped(),
        )
        .unwrap();
    tc.run(2).unwrap();
    let got = sorted_batches(out);
    assert_eq!(got.len(), 2);
    assert!(got == want, "outputs differ from Spark's, record by record");
}

#[test]
fn misusing_the_state_fails_the_batch_with_sparks_message() {
    let tc = TestContext::new();
    let s = tc
        .input_stream(vec![vec!["a"], vec!["b"]])
        .map(|k| (k.to_string(), 1));
    let out = s.map_with_state(StateSpec::function(
        |_, k: &String, _v: Option<i32>, st: &mut State<i32>| {
            if k == "a" {
                st.remove();
                st.remove();
            } else {
                st.update(1);
            }
            Some(k.clone())
        },
    ));
    let mapped = tc.collect(&out.mapped()).unwrap();
    let report = tc.run(2).unwrap();
    assert_eq!(report.failures.len(), 2);
    assert_eq!(report.failures[0].0, Time::from_millis(1000));
    assert!(
        report.failures[0]
            .1
            .to_string()
            .contains("requirement failed: Cannot remove the state that has already been removed"),
        "{}",
        report.failures[0].1
    );
    // The failed batch's state changes are discarded, so state cannot go on past it (in Spark
    // the next batch recomputes the failed state and fails again): the checkpoint stays at the
    // last good batch, from which a restart replays.
    assert!(
        report.failures[1]
            .1
            .to_string()
            .contains("the state of the batch at 1000 ms is missing"),
        "{}",
        report.failures[1].1
    );
    assert!(mapped.is_empty());
}
