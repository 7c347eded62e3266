//! The operations the DSL knows: Spark's camelCase names, the snake_case names of the runtime,
//! how many arguments each takes, and what the validator must know about them.

/// What an operation is called on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    /// A `DStream` (or the stream of a `mapWithState`).
    Stream,
    /// The `StreamingContext`.
    Context,
}

/// What an operation does to the pipeline, as far as the validator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A narrow operation the macro can fuse with its neighbours (map, filter).
    Fusable,
    /// Any other transformation.
    Transform,
    /// A window: changes the slide duration (and, with an inverse function, keeps state).
    Window,
    /// Keeps state: needs the checkpoint directory.
    Stateful,
    /// An output operation: registers a job.
    Output,
    /// A source on the context.
    Source,
    /// Runs or stops the context, or sets it up (`start`, `checkpoint`, ...).
    Control,
}

/// One operation of the DSL.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    /// Its Spark (Scala) name: `reduceByKeyAndWindow`.
    pub camel: &'static str,
    /// Its Rust name: `reduce_by_key_and_window`.
    pub snake: &'static str,
    /// What it is called on (a context, a stream, a pair stream).
    pub on: On,
    /// The argument counts it accepts.
    pub arities: &'static [usize],
    /// The parameters, for messages ("windowDuration, slideDuration").
    pub params: &'static str,
    /// What it makes: a stream, an output, a context action.
    pub role: Role,
    /// Returns a `Result` the expansion propagates with `?`.
    pub fallible: bool,
}

const fn op(
    camel: &'static str,
    snake: &'static str,
    on: On,
    arities: &'static [usize],
    params: &'static str,
    role: Role,
) -> Op {
    Op {
        camel,
        snake,
        on,
        arities,
        params,
        role,
        fallible: matches!(role, Role::Output),
    }
}

const fn control(
    camel: &'static str,
    snake: &'static str,
    arities: &'static [usize],
    params: &'static str,
    fallible: bool,
) -> Op {
    Op {
        camel,
        snake,
        on: On::Context,
        arities,
        params,
        role: Role::Control,
        fallible,
    }
}

use On::{Context, Stream};
use Role::*;

/// Every operation, Spark's name first.
pub const OPS: &[Op] = &[
    op("map", "map", Stream, &[1], "func", Fusable),
    op("filter", "filter", Stream, &[1], "func", Fusable),
    op("flatMap", "flat_map", Stream, &[1], "func", Transform),
    op("mapValues", "map_values", Stream, &[1], "func", Transform),
    op(
        "flatMapValues",
        "flat_map_values",
        Stream,
        &[1],
        "func",
        Transform,
    ),
    op(
        "mapPartitions",
        "map_partitions",
        Stream,
        &[1],
        "func",
        Transform,
    ),
    op("glom", "glom", Stream, &[0], "", Transform),
    // Spark keeps a DStream's RDDs with `cache()`/`persist()`; here batches stay in memory as
    // long as a window needs them: accepted, and nothing to do.
    op("cache", "cache", Stream, &[0], "", Transform),
    op(
        "persist",
        "persist",
        Stream,
        &[0, 1],
        "[storageLevel]",
        Transform,
    ),
    op(
        "checkpoint",
        "checkpoint",
        Stream,
        &[1],
        "interval",
        Transform,
    ),
    op(
        "repartitionByKey",
        "repartition_by_key",
        Stream,
        &[0],
        "",
        Transform,
    ),
    op("global", "global", Stream, &[0], "", Transform),
    op(
        "repartition",
        "repartition",
        Stream,
        &[1],
        "numPartitions",
        Transform,
    ),
    op("union", "union", Stream, &[1], "other", Transform),
    op("count", "count", Stream, &[0], "", Transform),
    op("reduce", "reduce", Stream, &[1], "reduceFunc", Transform),
    op(
        "countByValue",
        "count_by_value",
        Stream,
        &[0, 1],
        "[numPartitions]",
        Transform,
    ),
    op(
        "transform",
        "transform",
        Stream,
        &[1],
        "transformFunc",
        Transform,
    ),
    op(
        "transformWith",
        "transform_with",
        Stream,
        &[2],
        "other, transformFunc",
        Transform,
    ),
    op(
        "groupByKey",
        "group_by_key",
        Stream,
        &[0, 1],
        "[numPartitions | partitioner]",
        Transform,
    ),
    op(
        "reduceByKey",
        "reduce_by_key",
        Stream,
        &[1, 2],
        "reduceFunc[, numPartitions | partitioner]",
        Transform,
    ),
    op(
        "combineByKey",
        "combine_by_key",
        Stream,
        &[3, 4],
        "createCombiner, mergeValue, mergeCombiner[, numPartitions | partitioner]",
        Transform,
    ),
    op(
        "join",
        "join",
        Stream,
        &[1, 2],
        "other[, numPartitions | partitioner]",
        Transform,
    ),
    op(
        "leftOuterJoin",
        "left_outer_join",
        Stream,
        &[1, 2],
        "other[, numPartitions | partitioner]",
        Transform,
    ),
    op(
        "rightOuterJoin",
        "right_outer_join",
        Stream,
        &[1, 2],
        "other[, numPartitions | partitioner]",
        Transform,
    ),
    op(
        "fullOuterJoin",
        "full_outer_join",
        Stream,
        &[1, 2],
        "other[, numPartitions | partitioner]",
        Transform,
    ),
    op(
        "cogroup",
        "cogroup",
        Stream,
        &[1, 2],
        "other[, numPartitions | partitioner]",
        Transform,
    ),
    op(
        "window",
        "window",
        Stream,
        &[1, 2],
        "windowDuration[, slideDuration]",
        Window,
    ),
    op(
        "countByWindow",
        "count_by_window",
        Stream,
        &[2],
        "windowDuration, slideDuration",
        Stateful,
    ),
    op(
        "reduceByWindow",
        "reduce_by_window",
        Stream,
        &[3, 4],
        "reduceFunc[, invReduceFunc], windowDuration, slideDuration",
        Window,
    ),
    op(
        "countByValueAndWindow",
        "count_by_value_and_window",
        Stream,
        &[2],
        "windowDuration, slideDuration",
        Stateful,
    ),
    op(
        "groupByKeyAndWindow",
        "group_by_key_and_window",
        Stream,
        &[1, 2],
        "windowDuration[, slideDuration]",
        Window,
    ),
    op(
        "reduceByKeyAndWindow",
        "reduce_by_key_and_window",
        Stream,
        &[2, 3, 4, 5, 6],
        "reduceFunc[, invReduceFunc], windowDuration[, slideDuration][, numPartitions | partitioner[, filterFunc]]",
        Window,
    ),
    op(
        "updateStateByKey",
        "update_state_by_key",
        Stream,
        &[1, 2, 3],
        "updateFunc[, numPartitions | partitioner[, initialRDD]]",
        Stateful,
    ),
    op(
        "mapWithState",
        "map_with_state",
        Stream,
        &[1],
        "spec",
        Stateful,
    ),
    op(
        "stateSnapshots",
        "state_snapshots",
        Stream,
        &[0],
        "",
        Transform,
    ),
    op("print", "print", Stream, &[0, 1], "[num]", Output),
    op(
        "foreachRDD",
        "foreach_rdd",
        Stream,
        &[1],
        "foreachFunc",
        Output,
    ),
    op(
        "foreachBatch",
        "foreach_batch",
        Stream,
        &[1],
        "foreachFunc",
        Output,
    ),
    op(
        "saveAsTextFiles",
        "save_as_text_files",
        Stream,
        &[1, 2],
        "prefix[, suffix]",
        Output,
    ),
    op(
        "saveToWebSocket",
        "save_to_websocket",
        Stream,
        &[2],
        "dashboard, feedName",
        Output,
    ),
    op(
        "socketTextStream",
        "socket_text_stream",
        Context,
        &[2],
        "hostname, port",
        Source,
    ),
    op(
        "textFileStream",
        "text_file_stream",
        Context,
        &[1],
        "directory",
        Source,
    ),
    op(
        "queueStream",
        "queue_stream",
        Context,
        &[1, 2],
        "queue[, oneAtATime]",
        Source,
    ),
    op(
        "rateStream",
        "rate_stream",
        Context,
        &[1],
        "recordsPerSecond",
        Source,
    ),
    op("textFiles", "text_files", Context, &[1], "path", Source),
    op(
        "iteratorStream",
        "iterator_stream",
        Context,
        &[2],
        "iterator, recordsPerBatch",
        Source,
    ),
    op(
        "inputStream",
        "input_stream",
        Context,
        &[1],
        "source",
        Source,
    ),
    op(
        "kafkaStream",
        "kafka_stream",
        Context,
        &[1],
        "kafkaSource",
        Source,
    ),
    op("union", "union", Context, &[1], "streams", Source),
    control("checkpoint", "checkpoint", &[1], "directory", true),
    control("start", "start", &[0], "", true),
    control("awaitTermination", "await_termination", &[0], "", true),
    control(
        "awaitTerminationOrTimeout",
        "await_termination_or_timeout",
        &[1],
        "timeout",
        true,
    ),
    control("stop", "stop", &[0], "", false),
    control("stopGracefully", "stop_gracefully", &[0], "", false),
];

/// Spark names with no counterpart here, and what to use instead.
pub const SPARK_ONLY: &[(&str, &str)] = &[
    (
        "saveAsHadoopFiles",
        "there is no Hadoop output: use `saveAsTextFiles(prefix, suffix)`, or `foreachRDD` with your own writer",
    ),
    (
        "saveAsNewAPIHadoopFiles",
        "there is no Hadoop output: use `saveAsTextFiles(prefix, suffix)`, or `foreachRDD` with your own writer",
    ),
    (
        "saveAsObjectFiles",
        "there are no Java-serialized object files: use `saveAsTextFiles`, or `foreachRDD` writing JSON or postcard with serde",
    ),
    (
        "twitterStream",
        "Spark's Twitter receiver is gone (and so is the API it read): bring tweets in through Kafka (`kafkaStream`) or a socket (`socketTextStream`)",
    ),
    (
        "receiverStream",
        "a receiver is a `Source` here: `inputStream(source)`, or `receiver_stream(name, capacity, f)` in Rust",
    ),
    (
        "sparkContext",
        "there is no SparkContext: build static data in Rust and name it with `using`, or capture it in a lambda",
    ),
    (
        "remember",
        "batches are kept as long as windows and state need them; there is nothing to remember by hand",
    ),
    (
        "slice",
        "past batches are not kept for `slice`: keep what you need with `window` or `foreachRDD`",
    ),
];

/// What to use instead of Spark's `name`, if it is one of [`SPARK_ONLY`].
pub fn spark_only(name: &str) -> Option<&'static str> {
    SPARK_ONLY
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, instead)| *instead)
}

/// The operation named `name` (either spelling) on `on`.
pub fn find(name: &str, on: On) -> Option<&'static Op> {
    OPS.iter()
        .find(|o| o.on == on && (o.camel == name || o.snake == name))
}

/// The operation named `name` on anything (for receivers of unknown kind).
pub fn find_any(name: &str) -> Option<&'static Op> {
    OPS.iter().find(|o| o.camel == name || o.snake == name)
}

/// The closest known name to `name` among the operations on `on`, if close enough to be the
/// likely intent (Levenshtein distance at most a third of its length, and at most 3).
pub fn suggest(name: &str, on: Option<On>) -> Option<&'static str> {
    let limit = (name.len() / 3).clamp(1, 3);
    OPS.iter()
        .filter(|o| on.is_none_or(|on| o.on == on))
        .flat_map(|o| [o.camel, o.snake])
        .map(|n| (distance(&name.to_lowercase(), &n.to_lowercase()), n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Edit distance with adjacent transpositions (optimal string alignment), so that `wrods` is
/// one edit from `words`. Case is folded by the caller.
pub fn distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// "1 or 2", "2, 3 or 4".
pub fn arities_text(a: &[usize]) -> String {
    match a {
        [] => "no".into(),
        [one] => one.to_string(),
        [rest @ .., last] => format!(
            "{} or {last}",
            rest.iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_spellings_find_the_same_operation() {
        let a = find("reduceByKeyAndWindow", On::Stream).unwrap();
        let b = find("reduce_by_key_and_window", On::Stream).unwrap();
        assert_eq!(a.snake, b.snake);
        assert!(find("map", On::Context).is_none());
        assert_eq!(find("union", On::Context).unwrap().on, On::Context);
    }

    #[test]
    fn suggestions_are_close_names() {
        assert_eq!(suggest("reduceByKy", Some(On::Stream)), Some("reduceByKey"));
        assert_eq!(suggest("flatmap", Some(On::Stream)), Some("flatMap"));
        assert_eq!(
            suggest("sockettextstream", Some(On::Context)),
            Some("socketTextStream")
        );
        assert_eq!(suggest("frobnicate", None), None);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("wrods", "words"), 1);
    }

    #[test]
    fn arity_texts_read_well() {
        assert_eq!(arities_text(&[1]), "1");
        assert_eq!(arities_text(&[1, 2]), "1 or 2");
        assert_eq!(arities_text(&[2, 3, 4]), "2, 3 or 4");
    }
}
