//! State larger than the cache: with a cache of a few keys per partition, every batch reads
//! most state back from RocksDB (evicted keys, prefetched misses, window aggregates and timers),
//! and the outputs must equal those of a run whose cache holds everything.

use dstream::prelude::*;
use dstream::testing::TestContext;
use dstream::{State, StateSpec};

/// 12 batches over 6000 keys: each batch touches a sliding range of 2500 keys, so keys leave
/// the cache and come back, and some go idle long enough to time out.
fn input() -> Vec<Vec<(u32, u64)>> {
    (0..12u32)
        .map(|b| {
            (0..2500u32)
                .map(|i| ((b * 400 + i * 7) % 6000, u64::from(i % 5) + 1))
                .collect()
        })
        .collect()
}

type Outputs = (
    Vec<Vec<(u32, u64)>>,
    Vec<Vec<(u32, u64)>>,
    Vec<Vec<(u32, u64)>>,
    Vec<Vec<(u32, u64)>>,
);

fn run(cache_entries: usize) -> Outputs {
    let tc = TestContext::configured(Seconds(1), 2, |b| b.state_cache_entries(cache_entries));
    let s = tc.input_stream(input());
    let sessions = s.map_with_state(
        StateSpec::function(|_, k: &u32, v: Option<u64>, st: &mut State<u64>| {
            if st.is_timing_out() {
                return st.get().map(|total| (*k, *total + 1_000_000));
            }
            let n = st.get().copied().unwrap_or(0) + v.unwrap_or(0);
            st.update(n);
            Some((*k, n))
        })
        .timeout(Seconds(3)),
    );
    let totals = s.update_state_by_key(|vs: Vec<u64>, old: Option<u64>| {
        Some(old.unwrap_or(0) + vs.iter().sum::<u64>())
    });
    let windowed =
        s.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, Seconds(4), Seconds(2));
    let mapped = tc.collect(&sessions.mapped()).unwrap();
    let snaps = tc.collect(&sessions.state_snapshots()).unwrap();
    let totals = tc.collect(&totals).unwrap();
    let windowed = tc.collect(&windowed).unwrap();
    let report = tc.run(16).unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    let sorted = |c: dstream::testing::Collected<(u32, u64)>| {
        c.batches()
            .into_iter()
            .map(|mut b| {
                b.sort();
                b
            })
            .collect::<Vec<_>>()
    };
    (
        sorted(mapped),
        sorted(snaps),
        sorted(totals),
        sorted(windowed),
    )
}

#[test]
fn state_read_back_from_rocksdb_equals_state_kept_in_memory() {
    let small = run(1);
    let large = run(1_000_000);
    assert_eq!(small.0.len(), 16);
    assert!(
        small.0.iter().flatten().any(|(_, n)| *n > 1_000_000),
        "some keys time out"
    );
    assert!(
        small.3.iter().any(|b| !b.is_empty()),
        "the window has output"
    );
    assert_eq!(small.0, large.0, "map_with_state output");
    assert_eq!(small.1, large.1, "state snapshots");
    assert_eq!(small.2, large.2, "update_state_by_key output");
    assert_eq!(small.3, large.3, "windowed counts");
}
