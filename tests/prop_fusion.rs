//! Property tests: fused narrow chains, partition counts and shuffles never change results
//! against a plain sequential model of each operator.

use std::collections::BTreeMap;

use dstream::{Batch, HashPartitioner};
use proptest::prelude::*;

/// A narrow operator and its sequential model.
#[derive(Debug, Clone)]
enum Op {
    Map(i64),
    Filter(i64),
    FlatMap(u8),
    MapPartitions,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (-5i64..5).prop_map(Op::Map),
        (1i64..5).prop_map(Op::Filter),
        (0u8..4).prop_map(Op::FlatMap),
        Just(Op::MapPartitions),
    ]
}

fn apply_batch(b: Batch<i64>, op: &Op) -> Batch<i64> {
    match *op {
        Op::Map(k) => b.map(move |x| x * 3 + k),
        Op::Filter(m) => b.filter(move |x| x.rem_euclid(m) != 0),
        Op::FlatMap(n) => b.flat_map(move |x| (0..n as i64).map(move |i| x + i)),
        // Identity as a whole-partition operator: a fusion barrier in the middle of a chain.
        Op::MapPartitions => b.map_partitions(|it| it.collect::<Vec<_>>()),
    }
}

fn apply_model(v: Vec<i64>, op: &Op) -> Vec<i64> {
    match *op {
        Op::Map(k) => v.into_iter().map(|x| x * 3 + k).collect(),
        Op::Filter(m) => v.into_iter().filter(|x| x.rem_euclid(m) != 0).collect(),
        Op::FlatMap(n) => v
            .into_iter()
            .flat_map(|x| (0..n as i64).map(move |i| x + i))
            .collect(),
        Op::MapPartitions => v,
    }
}

fn counts(v: &[(i64, i64)]) -> BTreeMap<i64, i64> {
    let mut m = BTreeMap::new();
    for (k, c) in v {
        assert!(
            m.insert(*k, *c).is_none(),
            "key {k} appears twice after a shuffle"
        );
    }
    m
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// A fused chain gives, in order, exactly what applying each operator to a Vec gives, for
    /// any partitioning and any chain length (including chains longer than a chunk).
    #[test]
    fn fused_chains_equal_the_sequential_model(
        data in prop::collection::vec(-1000i64..1000, 0..3000),
        ops in prop::collection::vec(op(), 0..6),
        parts in 1usize..9,
        shared in any::<bool>(),
    ) {
        let source = Batch::from_vec(data.clone(), parts);
        // A shared source forces the copying path; an exclusive one the moving path.
        let keep = if shared { Some(source.clone()) } else { None };
        let mut b = source;
        let mut model = data.clone();
        for o in &ops {
            b = apply_batch(b, o);
            model = apply_model(model, o);
        }
        prop_assert_eq!(b.num_partitions(), parts);
        prop_assert_eq!(b.count(), model.len());
        prop_assert_eq!(b.into_vec(), model);
        if let Some(k) = keep {
            prop_assert_eq!(k.collect(), data);
        }
    }

    /// Shuffles give the model's per-key results whatever the input and output partitions.
    #[test]
    fn shuffles_equal_the_sequential_model(
        data in prop::collection::vec((0i64..40, -50i64..50), 0..2000),
        in_parts in 1usize..7,
        out_parts in 1usize..7,
    ) {
        let mut sums: BTreeMap<i64, i64> = BTreeMap::new();
        let mut groups: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (k, v) in &data {
            *sums.entry(*k).or_insert(0) += v;
            groups.entry(*k).or_default().push(*v);
        }
        let b = Batch::from_vec(data.clone(), in_parts);
        let reduced = b.clone().reduce_by_key(|a, b| a + b, out_parts);
        prop_assert_eq!(reduced.num_partitions(), out_parts);
        // Every key lives in the partition the partitioner names.
        let p = HashPartitioner::new(out_parts).unwrap();
        for (i, part) in reduced.partitions().iter().enumerate() {
            for (k, _) in part {
                prop_assert_eq!(dstream::Partitioner::<i64>::partition(&p, k), i);
            }
        }
        prop_assert_eq!(counts(&reduced.collect()), sums);
        // Grouped values keep their input order (map tasks in partition order, as Spark).
        let grouped: BTreeMap<i64, Vec<i64>> = b.clone().group_by_key(out_parts).collect().into_iter().collect();
        prop_assert_eq!(grouped, groups);
        let by_value = b.map(|(k, _)| k).count_by_value(out_parts).collect();
        let mut model_counts: BTreeMap<i64, i64> = BTreeMap::new();
        for (k, _) in &data {
            *model_counts.entry(*k).or_insert(0) += 1;
        }
        prop_assert_eq!(counts(&by_value), model_counts);
    }

    /// Joins equal the nested-loop model.
    #[test]
    fn joins_equal_the_nested_loop_model(
        left in prop::collection::vec((0i64..15, 0i64..100), 0..200),
        right in prop::collection::vec((0i64..15, 0i64..100), 0..200),
        parts in 1usize..5,
    ) {
        let mut model: Vec<(i64, (i64, i64))> = Vec::new();
        for (k, v) in &left {
            for (k2, w) in &right {
                if k == k2 {
                    model.push((*k, (*v, *w)));
                }
            }
        }
        model.sort();
        let p = HashPartitioner::new(parts).unwrap();
        let mut got = Batch::from_vec(left.clone(), 2).join(Batch::from_vec(right.clone(), 3), p.clone()).collect();
        got.sort();
        prop_assert_eq!(got, model);
        let full = Batch::from_vec(left.clone(), 2).full_outer_join(Batch::from_vec(right.clone(), 3), p).collect();
        let lk: std::collections::BTreeSet<i64> = left.iter().map(|x| x.0).collect();
        let rk: std::collections::BTreeSet<i64> = right.iter().map(|x| x.0).collect();
        for (k, (v, w)) in &full {
            prop_assert_eq!(v.is_some(), lk.contains(k));
            prop_assert_eq!(w.is_some(), rk.contains(k));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The same pipeline through the scheduler, at any parallelism and with a parent read by two
    /// outputs, gives per batch what the model gives.
    #[test]
    fn dstream_pipelines_equal_the_model_at_any_parallelism(
        batches in prop::collection::vec(prop::collection::vec(-100i64..100, 0..300), 1..5),
        ops in prop::collection::vec(op(), 0..4),
        parallelism in 1usize..5,
        parts in 1usize..5,
    ) {
        let tc = dstream::testing::TestContext::with(dstream::Seconds(1), parallelism);
        let mut s = tc.input_stream_with(batches.iter().cloned().map(Some).collect(), parts);
        for o in ops.clone() {
            s = s.transform(move |b| apply_batch(b, &o));
        }
        let chained = tc.collect(&s).unwrap();
        let counted = tc.collect(&s.map(|x| x.rem_euclid(7)).count_by_value()).unwrap();
        tc.run(batches.len()).unwrap();
        for (i, input) in batches.iter().enumerate() {
            let mut model = input.clone();
            for o in &ops {
                model = apply_model(model, o);
            }
            let mut model_counts: BTreeMap<i64, i64> = BTreeMap::new();
            for x in &model {
                *model_counts.entry(x.rem_euclid(7)).or_insert(0) += 1;
            }
            prop_assert_eq!(chained.batch(i), model);
            prop_assert_eq!(counts(&counted.batch(i)), model_counts);
        }
    }
}
