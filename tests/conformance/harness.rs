//! The conformance harness: runs Spark Streaming's test vectors through `dstream::testing`,
//! as Spark's `TestSuiteBase` runs them (manual clock, first batch at 1000 ms, 2 input
//! partitions unless the vector says otherwise), and compares as each vector's `comparison`
//! says. The vectors' functions are written in a neutral notation (`x -> (x, 1)`); `function`
//! maps each one that occurs to a Rust closure, and an unknown one fails the vector.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use dstream::testing::{Collected, TestContext};
use dstream::{Batch, DStream, HashPartitioner};
use serde_json::Value as Json;

/// A record of any vector: Spark's values as JSON encodes them (tuples and sequences as lists,
/// `None` as null).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum V {
    Null,
    Int(i64),
    Str(String),
    List(Vec<V>),
}

impl V {
    pub fn from_json(j: &Json) -> V {
        match j {
            Json::Null => V::Null,
            Json::Number(n) => V::Int(n.as_i64().expect("vectors hold integers")),
            Json::String(s) => V::Str(s.clone()),
            Json::Array(a) => V::List(a.iter().map(V::from_json).collect()),
            other => panic!("unexpected JSON value in a vector: {other}"),
        }
    }

    fn int(&self) -> i64 {
        match self {
            V::Int(i) => *i,
            other => panic!("expected an integer, got {other:?}"),
        }
    }

    fn opt(o: Option<V>) -> V {
        o.unwrap_or(V::Null)
    }
}

impl std::fmt::Display for V {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            V::Null => write!(f, "null"),
            V::Int(i) => write!(f, "{i}"),
            V::Str(s) => write!(f, "{s}"),
            V::List(l) => write!(f, "{l:?}"),
        }
    }
}

/// A stream of the vector's pipeline, typed as far as the vectors need: single values or pairs.
#[derive(Clone)]
pub enum S {
    One(DStream<V>),
    Pair(DStream<(V, V)>),
}

impl S {
    pub fn one(&self) -> DStream<V> {
        match self {
            S::One(s) => s.clone(),
            S::Pair(s) => s.map(|(k, v)| V::List(vec![k, v])),
        }
    }

    /// The stream as pairs; input records that are 2-element lists (Spark's tuples in JSON)
    /// become pairs.
    pub fn pair(&self, op: &str) -> DStream<(V, V)> {
        match self {
            S::Pair(s) => s.clone(),
            S::One(s) => {
                let op = op.to_string();
                s.map(move |x| match x {
                    V::List(mut kv) if kv.len() == 2 => {
                        let v = kv.pop().unwrap();
                        (kv.pop().unwrap(), v)
                    }
                    other => panic!("{op} needs pairs, got {other:?}"),
                })
            }
        }
    }
}

type F1 = Arc<dyn Fn(V) -> V + Send + Sync>;
type F2 = Arc<dyn Fn(V, V) -> V + Send + Sync>;

/// The closure of a one-argument function of the vectors' notation.
pub fn f1(src: &str) -> F1 {
    match src {
        "x -> str(x)" => Arc::new(|x| V::Str(x.to_string())),
        "x -> x + 4" => Arc::new(|x| V::Int(x.int() + 4)),
        "x -> x + 8" => Arc::new(|x| V::Int(x.int() + 8)),
        "v -> v + 10" => Arc::new(|x| V::Int(x.int() + 10)),
        // The object-lifecycle state is [counter, expire].
        "state -> state.counter" => Arc::new(|x| match x {
            V::List(ce) => ce[0].clone(),
            other => panic!("expected a [counter, expire] state, got {other:?}"),
        }),
        other => panic!("function not known to the harness: {other}"),
    }
}

/// The closure of a two-argument function.
pub fn f2(src: &str) -> F2 {
    match src {
        "(a, b) -> a + b" => Arc::new(|a, b| V::Int(a.int() + b.int())),
        "(a, b) -> a - b" => Arc::new(|a, b| V::Int(a.int() - b.int())),
        other => panic!("function not known to the harness: {other}"),
    }
}

fn flat(src: &str) -> Arc<dyn Fn(V) -> Vec<V> + Send + Sync> {
    match src {
        "x -> [x, x*2]" => Arc::new(|x| vec![x.clone(), V::Int(x.int() * 2)]),
        "v -> [v, v + 10]" => Arc::new(|x| vec![x.clone(), V::Int(x.int() + 10)]),
        other => panic!("function not known to the harness: {other}"),
    }
}

/// Where the streams of a vector come from, and what a state operation leaves beside its
/// output.
pub struct Inputs {
    pub input: S,
    pub input2: Option<S>,
    /// `stateSnapshots()` of a mapWithState step.
    pub snapshots: std::cell::RefCell<Option<DStream<V>>>,
    /// Run mapWithState timeouts as Spark does (on checkpoint batches) instead of exactly.
    pub spark_timeouts: bool,
}

fn sum(vs: &[V]) -> i64 {
    vs.iter().map(V::int).sum()
}

fn initial(op: &Json) -> Option<Batch<(V, V)>> {
    op.get("initial_state").filter(|j| !j.is_null()).map(|j| {
        let pairs = j
            .as_array()
            .unwrap()
            .iter()
            .map(|kv| (V::from_json(&kv[0]), V::from_json(&kv[1])))
            .collect();
        Batch::from_vec(pairs, 2)
    })
}

/// Applies one step of a vector's pipeline.
pub fn step(tc: &TestContext, inputs: &Inputs, s: S, op: &Json) -> S {
    let name = op["op"].as_str().expect("op name");
    let fn_src = op["fn"].as_str().unwrap_or("");
    let n = tc.context().parallelism();
    match name {
        "map" => match fn_src {
            "x -> (x, 1)" => S::Pair(s.one().map(|x| (x, V::Int(1)))),
            "x -> (x, \"x\")" => S::Pair(s.one().map(|x| (x, V::Str("x".into())))),
            _ => {
                let f = f1(fn_src);
                S::One(s.one().map(move |x| f(x)))
            }
        },
        "flatMap" => {
            let f = flat(fn_src);
            S::One(s.one().flat_map(move |x| f(x)))
        }
        "filter" => {
            assert_eq!(fn_src, "x -> x % 2 == 0");
            S::One(s.one().filter(|x| x.int() % 2 == 0))
        }
        "glom" => S::One(s.one().glom().map(V::List)),
        "mapPartitions" => {
            assert_eq!(fn_src, "iter -> [sum(iter)]");
            S::One(
                s.one()
                    .map_partitions(|it| [V::Int(it.map(|x| x.int()).sum())]),
            )
        }
        "repartition" => S::One(
            s.one()
                .repartition(op["num_partitions"].as_u64().unwrap() as usize),
        ),
        "groupByKey" => S::Pair(s.pair(name).group_by_key().map_values(V::List)),
        "reduceByKey" => {
            let f = f2(fn_src);
            S::Pair(s.pair(name).reduce_by_key(move |a, b| f(a, b)))
        }
        "reduce" => {
            let f = f2(fn_src);
            S::One(s.one().reduce(move |a, b| f(a, b)))
        }
        "count" => S::One(s.one().count().map(V::Int)),
        "countByValue" => S::Pair(s.one().count_by_value().map_values(V::Int)),
        "mapValues" => {
            let f = f1(fn_src);
            S::Pair(s.pair(name).map_values(move |v| f(v)))
        }
        "flatMapValues" => {
            let f = flat(fn_src);
            S::Pair(s.pair(name).flat_map_values(move |v| f(v)))
        }
        "union" => {
            let other = other(tc, inputs, &op["other"]);
            S::One(s.one().union(&other.one()))
        }
        "ssc_union" => {
            let branches = branches(tc, inputs, s, op);
            S::One(tc.context().union(&branches))
        }
        "ssc_transform" => {
            assert_eq!(fn_src, "(rdds, time) -> union(rdds)");
            let branches = branches(tc, inputs, s, op);
            S::One(
                tc.context()
                    .transform(&branches, |bs, _| Batch::union_all(bs)),
            )
        }
        "transform" => match fn_src {
            "rdd -> rdd.map(x -> str(x))" => {
                S::One(s.one().transform(|b| b.map(|x| V::Str(x.to_string()))))
            }
            "rdd -> null" => S::One(s.one().transform(|_| None::<Batch<V>>)),
            other => panic!("transform function not known to the harness: {other}"),
        },
        "transformWith" => {
            let other = other(tc, inputs, &op["other"]);
            match fn_src {
                "(rdd1, rdd2) -> rdd1.join(rdd2)" => {
                    S::Pair(s.pair(name).transform_with(&other.pair(name), move |a, b| {
                        a.join(b, HashPartitioner::new(n).unwrap())
                            .map_values(|(v, w)| V::List(vec![v, w]))
                    }))
                }
                "(rdd1, rdd2) -> rdd1.union(rdd2)" => {
                    S::One(s.one().transform_with(&other.one(), |a, b| a.union(b)))
                }
                other => panic!("transformWith function not known to the harness: {other}"),
            }
        }
        "cogroup" => {
            let o = other(tc, inputs, &op["other"]).pair(name);
            S::Pair(
                s.pair(name)
                    .cogroup(&o)
                    .map_values(|(vs, ws)| V::List(vec![V::List(vs), V::List(ws)])),
            )
        }
        "join" => {
            let o = other(tc, inputs, &op["other"]).pair(name);
            S::Pair(
                s.pair(name)
                    .join(&o)
                    .map_values(|(v, w)| V::List(vec![v, w])),
            )
        }
        "leftOuterJoin" => {
            let o = other(tc, inputs, &op["other"]).pair(name);
            S::Pair(
                s.pair(name)
                    .left_outer_join(&o)
                    .map_values(|(v, w)| V::List(vec![v, V::opt(w)])),
            )
        }
        "rightOuterJoin" => {
            let o = other(tc, inputs, &op["other"]).pair(name);
            S::Pair(
                s.pair(name)
                    .right_outer_join(&o)
                    .map_values(|(v, w)| V::List(vec![V::opt(v), w])),
            )
        }
        "fullOuterJoin" => {
            let o = other(tc, inputs, &op["other"]).pair(name);
            S::Pair(
                s.pair(name)
                    .full_outer_join(&o)
                    .map_values(|(v, w)| V::List(vec![V::opt(v), V::opt(w)])),
            )
        }
        "window" => S::One(s.one().window(secs(op, "window_s"), secs(op, "slide_s"))),
        "reduceByKeyAndWindow" => {
            let (w, sl) = (secs(op, "window_s"), secs(op, "slide_s"));
            let f = f2(fn_src);
            let pairs = s.pair(name);
            match (op["inv_fn"].as_str(), op["filter_fn"].as_str()) {
                (None, _) => S::Pair(pairs.reduce_by_key_and_window(move |a, b| f(a, b), w, sl)),
                (Some(inv), None) => {
                    let inv = f2(inv);
                    S::Pair(pairs.reduce_by_key_and_window_inv(
                        move |a, b| f(a, b),
                        move |a, b| inv(a, b),
                        w,
                        sl,
                    ))
                }
                (Some(inv), Some(filter)) => {
                    assert_eq!(filter, "(k, v) -> v != 0");
                    let inv = f2(inv);
                    S::Pair(pairs.reduce_by_key_and_window_inv_filtered(
                        move |a, b| f(a, b),
                        move |a, b| inv(a, b),
                        w,
                        sl,
                        HashPartitioner::new(n).unwrap(),
                        |(_, v)| v.int() != 0,
                    ))
                }
            }
        }
        "groupByKeyAndWindow" => S::Pair(
            s.pair(name)
                .group_by_key_and_window(secs(op, "window_s"), secs(op, "slide_s"))
                .map_values(V::List),
        ),
        "countByWindow" => S::One(
            s.one()
                .count_by_window(secs(op, "window_s"), secs(op, "slide_s"))
                .map(V::Int),
        ),
        "countByValueAndWindow" => S::Pair(
            s.one()
                .count_by_value_and_window(secs(op, "window_s"), secs(op, "slide_s"))
                .map_values(V::Int),
        ),
        "updateStateByKey" => {
            let pairs = s.pair(name);
            let p = HashPartitioner::new(
                op["partitioner"]["hash"].as_u64().unwrap_or(n as u64) as usize
            )
            .unwrap();
            let plain =
                |vs: Vec<V>, st: Option<V>| Some(V::Int(sum(&vs) + st.map_or(0, |s| s.int())));
            match (fn_src, op["variant"].as_str()) {
                ("(values, state) -> Some(sum(values) + (state or 0))", None) => {
                    match initial(op) {
                        None => S::Pair(pairs.update_state_by_key(plain)),
                        Some(init) => {
                            S::Pair(pairs.update_state_by_key_with_initial(plain, p, init))
                        }
                    }
                }
                (
                    "(time, key, values, state) -> Some(time_ms + (state or 0)) if values else Some(state or 0)",
                    None,
                ) => S::Pair(pairs.update_state_by_key_with(
                    |t, _k, vs: Vec<V>, st: Option<V>| {
                        let st = st.map_or(0, |s| s.int());
                        Some(V::Int(if vs.is_empty() { st } else { t.millis() + st }))
                    },
                    p,
                    initial(op),
                )),
                (_, Some("iterator[(key, values, state)] -> iterator[(key, newState)]")) => {
                    S::Pair(pairs.update_state_by_key_partitions(
                        |_, it| {
                            it.map(|(k, vs, st)| (k, V::Int(sum(&vs) + st.map_or(0, |s| s.int()))))
                                .collect()
                        },
                        p,
                        initial(op),
                    ))
                }
                (src, None) if src.starts_with("state {counter, expire}") => {
                    S::Pair(pairs.update_state_by_key(|vs: Vec<V>, st: Option<V>| {
                        let (mut counter, mut expire) = match st {
                            Some(V::List(ce)) => (ce[0].int(), ce[1].int()),
                            _ => (0, 0),
                        };
                        if sum(&vs) == 0 {
                            expire += 1;
                        } else {
                            counter += sum(&vs);
                            expire = 0;
                        }
                        (expire != 2).then(|| V::List(vec![V::Int(counter), V::Int(expire)]))
                    }))
                }
                other => panic!("updateStateByKey function not known to the harness: {other:?}"),
            }
        }
        "mapWithState" => {
            let pairs = s.pair(name);
            let add = |v: Option<V>, st: &dstream::State<V>| {
                v.map_or(0, |v| v.int()) + st.get().map_or(0, |s| s.int())
            };
            let mut spec: dstream::StateSpec<V, V, V, V> = match fn_src {
                "(key, value, state) -> { s = (value or 0) + (state or 0); state.update(s); return s }" => {
                    dstream::StateSpec::simple(
                        move |_: &V, v: Option<V>, st: &mut dstream::State<V>| {
                            let s = add(v, st);
                            st.update(V::Int(s));
                            V::Int(s)
                        },
                    )
                }
                "(time, key, value, state) -> { state.update((value or 0) + (state or 0)); return Some(key + key) }" => {
                    dstream::StateSpec::function(
                        move |_, k: &V, v: Option<V>, st: &mut dstream::State<V>| {
                            st.update(V::Int(add(v, st)));
                            Some(V::Str(format!("{k}{k}")))
                        },
                    )
                }
                "(time, key, value, state) -> { s = (value or 0) + (state or 0); state.update(s); return Some((key, s)) }" => {
                    dstream::StateSpec::function(
                        move |_, k: &V, v: Option<V>, st: &mut dstream::State<V>| {
                            let s = add(v, st);
                            st.update(V::Int(s));
                            Some(V::List(vec![k.clone(), V::Int(s)]))
                        },
                    )
                }
                "(time, key, value, state) -> { state.update((value or 0) + (state or 0)); return None }" => {
                    dstream::StateSpec::function(
                        move |_, _: &V, v: Option<V>, st: &mut dstream::State<V>| {
                            st.update(V::Int(add(v, st)));
                            None
                        },
                    )
                }
                "(time, key, value, state) -> if state.exists: state.remove(); Some(key) else: state.update(value); None" => {
                    dstream::StateSpec::function(
                        |_, k: &V, v: Option<V>, st: &mut dstream::State<V>| {
                            if st.exists() {
                                st.remove();
                                Some(k.clone())
                            } else {
                                st.update(v.unwrap_or(V::Null));
                                None
                            }
                        },
                    )
                }
                "(time, key, value, state) -> { if value: state.update(1); return Some(key) if state.isTimingOut else None }" => {
                    dstream::StateSpec::function(
                        |_, k: &V, v: Option<V>, st: &mut dstream::State<V>| {
                            if v.is_some() {
                                st.update(V::Int(1));
                            }
                            st.is_timing_out().then(|| k.clone())
                        },
                    )
                }
                other => panic!("mapWithState function not known to the harness: {other}"),
            };
            if let Some(init) = initial(op) {
                spec = spec.initial_state(init);
            }
            if let Some(n) = op["num_partitions"].as_u64() {
                spec = spec.num_partitions(n as usize);
            }
            if let Some(t) = op["timeout_s"].as_i64() {
                spec = spec.timeout(dstream::Seconds(t));
                if inputs.spark_timeouts {
                    spec = spec.spark_timeouts(None);
                }
            }
            let out = pairs.map_with_state(spec);
            *inputs.snapshots.borrow_mut() =
                Some(out.state_snapshots().map(|(k, s)| V::List(vec![k, s])));
            S::One(out.mapped())
        }
        other => panic!("operation not known to the harness: {other}"),
    }
}

fn secs(op: &Json, field: &str) -> dstream::Duration {
    dstream::Seconds(
        op[field]
            .as_i64()
            .unwrap_or_else(|| panic!("{field} missing in {op}")),
    )
}

fn apply(tc: &TestContext, inputs: &Inputs, mut s: S, pipeline: &Json) -> S {
    for op in pipeline.as_array().into_iter().flatten() {
        s = step(tc, inputs, s, op);
    }
    s
}

fn other(tc: &TestContext, inputs: &Inputs, spec: &Json) -> S {
    let src = match spec["source"].as_str() {
        Some("input") => inputs.input.clone(),
        Some("input2") => inputs.input2.clone().expect("vector has input2"),
        other => panic!("unknown source {other:?}"),
    };
    apply(tc, inputs, src, &spec["pipeline"])
}

fn branches(tc: &TestContext, inputs: &Inputs, s: S, op: &Json) -> Vec<DStream<V>> {
    op["branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| apply(tc, inputs, s.clone(), p).one())
        .collect()
}

fn batches(j: &Json) -> Vec<Option<Vec<V>>> {
    j.as_array()
        .map(|a| {
            a.iter()
                .map(|b| b.as_array().map(|r| r.iter().map(V::from_json).collect()))
                .collect()
        })
        .unwrap_or_default()
}

/// Spark's messages name JVM remedies; ours name the Rust ones. This is the whole mapping.
fn spark_message_in_rust(msg: &str) -> String {
    msg.replace("must not return null.", "must not return null (None).")
        .replace("SparkContext.emptyRDD()", "Batch::empty()")
}

fn multiset(v: &[V]) -> BTreeMap<V, usize> {
    let mut m = BTreeMap::new();
    for x in v {
        *m.entry(x.clone()).or_insert(0) += 1;
    }
    m
}

/// Runs one vector; returns a description of the first difference, if any.
pub fn run_vector(v: &Json) -> Result<(), String> {
    let test = v["test"].as_str().unwrap_or("?");
    let tc = TestContext::new();
    let parts = v["input_partitions"].as_u64().unwrap_or(2) as usize;
    let input = S::One(tc.input_stream_with(batches(&v["input"]), parts));
    let input2 = v
        .get("input2")
        .filter(|j| !j.is_null())
        .map(|j| S::One(tc.input_stream_with(batches(j), parts)));
    let inputs = Inputs {
        input: input.clone(),
        input2,
        snapshots: std::cell::RefCell::new(None),
        spark_timeouts: v["spark_timeouts"].as_bool().unwrap_or(false),
    };
    let out = apply(&tc, &inputs, input, &v["pipeline"]).one();
    let collected: Collected<V> = tc.collect(&out).map_err(|e| e.to_string())?;
    let snapshots = match inputs.snapshots.borrow().as_ref() {
        Some(s) => Some(tc.collect(s).map_err(|e| e.to_string())?),
        None => None,
    };
    let expected: Vec<Vec<V>> = batches(&v["expected"])
        .into_iter()
        .map(Option::unwrap_or_default)
        .collect();
    let num_batches = v["num_batches"]
        .as_u64()
        .map(|n| n as usize)
        .unwrap_or(expected.len());
    let report = tc
        .run(num_batches)
        .map_err(|e| format!("{test}: run failed: {e}"))?;
    let got = collected.batches();

    let expected = match v.get("expect_error").filter(|e| !e.is_null()) {
        Some(err) => {
            let at = err["at_batch"].as_u64().unwrap() as i64;
            let want = spark_message_in_rust(err["message"].as_str().unwrap());
            let Some((t, e)) = report.first_failure() else {
                return Err(format!(
                    "{test}: expected the error {want:?} at batch {at}, the run had none"
                ));
            };
            if t.millis() != at * 1000 || e.to_string() != want {
                return Err(format!(
                    "{test}: expected {want:?} at {} ms, got {e} at {t}",
                    at * 1000
                ));
            }
            expected[..(at as usize - 1).min(expected.len())].to_vec()
        }
        None => {
            if let Some((t, e)) = report.first_failure() {
                return Err(format!("{test}: unexpected failure at {t}: {e}"));
            }
            expected
        }
    };

    if let Some(props) = v.get("expected_properties").filter(|p| !p.is_null()) {
        let want_parts = props["partitions_per_batch"].as_u64().unwrap() as usize;
        for (i, p) in collected.partitions().iter().enumerate() {
            if p.len() != want_parts {
                return Err(format!(
                    "{test}: batch {i} has {} partitions, expected {want_parts}",
                    p.len()
                ));
            }
        }
    }
    if v["comparison"] == "assertions" {
        let snaps = snapshots.as_ref().map(|s| s.batches()).unwrap_or_default();
        return check_timeout_assertions(v, &got, &snaps);
    }
    if got.len() != expected.len() {
        return Err(format!(
            "{test}: {} output batches, expected {}: {got:?}",
            got.len(),
            expected.len()
        ));
    }
    let comparison = v["comparison"].as_str().unwrap_or("");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        let same = match comparison {
            "per_batch_ordered_list" => g == e,
            "per_batch_set" => {
                let as_set = |x: &[V]| x.iter().cloned().collect::<std::collections::BTreeSet<_>>();
                let exact = v["expected_is_exact_multiset"].as_bool().unwrap_or(false);
                as_set(g) == as_set(e) && (!exact || multiset(g) == multiset(e))
            }
            "per_batch_set_of_(key, set(values))" => {
                let keyed = |x: &[V]| {
                    x.iter()
                        .map(|kv| match kv {
                            V::List(p) if p.len() == 2 => match &p[1] {
                                V::List(vs) => (
                                    p[0].clone(),
                                    vs.iter()
                                        .cloned()
                                        .collect::<std::collections::BTreeSet<_>>(),
                                ),
                                other => panic!("expected a list of values, got {other:?}"),
                            },
                            other => panic!("expected a (key, values) pair, got {other:?}"),
                        })
                        .collect::<std::collections::BTreeSet<_>>()
                };
                keyed(g) == keyed(e)
            }
            other => {
                return Err(format!(
                    "{test}: comparison {other:?} not supported by this harness"
                ));
            }
        };
        if !same {
            return Err(format!(
                "{test}: batch {} differs ({comparison}):\n  got      {g:?}\n  expected {e:?}",
                i + 1
            ));
        }
    }
    if let (Some(want), Some(snaps)) = (
        v.get("expected_state_snapshots").filter(|j| !j.is_null()),
        &snapshots,
    ) {
        let want: Vec<Vec<V>> = batches(want)
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        compare_sets(test, "stateSnapshots", &snaps.batches(), &want)?;
    }
    Ok(())
}

fn compare_sets(test: &str, what: &str, got: &[Vec<V>], want: &[Vec<V>]) -> Result<(), String> {
    let as_set = |x: &[V]| x.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    if got.len() != want.len() {
        return Err(format!(
            "{test}: {} {what} batches, expected {}",
            got.len(),
            want.len()
        ));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if as_set(g) != as_set(w) {
            return Err(format!(
                "{test}: {what} batch {} differs:\n  got      {g:?}\n  expected {w:?}",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Vectors that state facts or an API contract rather than batches.
fn check_facts(v: &Json) -> Result<(), String> {
    let test = v["test"].as_str().unwrap_or("?");
    let dur = |s: &str| -> dstream::Duration {
        let (n, unit) = s.split_once(' ').unwrap();
        let n: i64 = n.parse().unwrap();
        match unit {
            "ms" => dstream::Milliseconds(n),
            "s" => dstream::Seconds(n),
            other => panic!("unit {other}"),
        }
    };
    for f in v["facts"].as_array().into_iter().flatten() {
        let explicit = f["explicit"].as_str().map(dur);
        let got = dstream::map_with_state_checkpoint_interval(
            dur(f["batch"].as_str().unwrap()),
            explicit,
        );
        let want = dur(f["effective_checkpoint_interval"].as_str().unwrap());
        if got != want {
            return Err(format!("{test}: {f}: got {got}"));
        }
    }
    Ok(())
}

/// The State API contract vector, step by step.
fn check_state_contract(v: &Json) -> Result<(), String> {
    use dstream::State;
    let test = v["test"].as_str().unwrap_or("?");
    let check = |step: &Json, s: &State<i64>| -> Result<(), String> {
        let name = step["step"].as_str().unwrap_or("?");
        let fail = |what: &str| Err(format!("{test}: step {name}: {what} differs"));
        if step["exists"].as_bool().is_some_and(|e| e != s.exists()) {
            return fail("exists");
        }
        match &step["get"] {
            Json::Number(n) if s.get() != Some(&n.as_i64().unwrap()) => return fail("get"),
            Json::String(t) if t.starts_with("throws") && s.get().is_some() => return fail("get"),
            _ => {}
        }
        for (field, got) in [
            ("isTimingOut", s.is_timing_out()),
            ("isUpdated", s.is_updated()),
            ("isRemoved", s.is_removed()),
        ] {
            if step[field].as_bool().is_some_and(|want| want != got) {
                return fail(field);
            }
        }
        for (field, act) in [("then_remove", 0), ("then_update", 1)] {
            if let Some(want) = step[field].as_str() {
                let mut t = s.clone();
                if act == 0 {
                    t.remove()
                } else {
                    t.update(9)
                }
                let msg = want
                    .split_once('(')
                    .map(|(_, m)| m.trim_end_matches(')'))
                    .unwrap_or("");
                if t.misuse() != Some(format!("requirement failed: {msg}")) {
                    return fail(field);
                }
            }
        }
        Ok(())
    };
    let mut s: State<i64> = State::new();
    for step in v["steps"].as_array().into_iter().flatten() {
        match step["step"].as_str().unwrap_or("") {
            "new State" => s = State::new(),
            "wrap(None)" => s = State::wrap(None),
            "wrap(Some(1))" => s = State::wrap(Some(1)),
            "update(2)" => s.update(2),
            "new State; update(2)" => {
                s = State::new();
                s.update(2);
            }
            "remove()" => s.remove(),
            "wrapTimingOutState(3)" => s = State::timing_out(3),
            other => return Err(format!("{test}: step {other:?} not known to the harness")),
        }
        check(step, &s)?;
    }
    Ok(())
}

/// The assertions of Spark's timeout test, on the outputs of a run, and the exact batches
/// derived from Spark's rule when Spark's timeouts are on.
fn check_timeout_assertions(v: &Json, got: &[Vec<V>], snaps: &[Vec<V>]) -> Result<(), String> {
    let test = v["test"].as_str().unwrap_or("?");
    let mut all: Vec<V> = got.iter().flatten().cloned().collect();
    all.sort();
    if all != vec![V::Str("b".into()), V::Str("c".into())] {
        return Err(format!(
            "{test}: timed-out keys {all:?}, expected [b, c] once each"
        ));
    }
    let kv = |k: &str| V::List(vec![V::Str(k.into()), V::Int(1)]);
    let set = |x: &[V]| x.iter().cloned().collect::<std::collections::BTreeSet<_>>();
    let abc: std::collections::BTreeSet<V> = [kv("a"), kv("b"), kv("c")].into_iter().collect();
    if !snaps.iter().any(|s| set(s) == abc) {
        return Err(format!("{test}: no snapshot holds a, b and c"));
    }
    if snaps.last().map(|s| set(s)) != Some([kv("a")].into_iter().collect()) {
        return Err(format!("{test}: the last snapshot is not {{(a,1)}}"));
    }
    if v["spark_timeouts"].as_bool() == Some(true) {
        let want: Vec<Vec<V>> = batches(&v["derived_expected"])
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        compare_sets(test, "output", got, &want)?;
        let want: Vec<Vec<V>> = batches(&v["derived_expected_state_snapshots"])
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        compare_sets(test, "stateSnapshots", snaps, &want)?;
    }
    Ok(())
}

/// Runs every vector of a file and fails listing each one that differs. A vector of Spark's
/// timeout assertions runs twice: with exact timeouts (dstream's default) and with Spark's.
pub fn run_file(path: &str, expected_count: usize) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
    let vectors: Vec<Json> =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON: {e}"));
    assert_eq!(
        vectors.len(),
        expected_count,
        "{path}: unexpected number of vectors"
    );
    let mut failures = Vec::new();
    for v in &vectors {
        let outcome = match v["comparison"].as_str() {
            Some("facts") => check_facts(v),
            Some("api_contract") => check_state_contract(v),
            Some("assertions") => {
                let mut spark = v.clone();
                spark["spark_timeouts"] = Json::Bool(true);
                run_vector(v).and_then(|()| run_vector(&spark))
            }
            _ => run_vector(v),
        };
        println!(
            "vector: {} ({})",
            v["test"].as_str().unwrap_or("?"),
            if outcome.is_ok() { "pass" } else { "FAIL" }
        );
        failures.extend(outcome.err());
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        vectors.len(),
        failures.join("\n")
    );
    println!("{}: all {} vectors pass", path, vectors.len());
}
