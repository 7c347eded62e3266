#!/usr/bin/env bash
# Builds and runs the Spark Streaming peer of a stateful benchmark (hashtag or sessions; see
# bench/README.md). Options are the Rust binaries' (`--name value`):
#   bench/spark/run-job.sh hashtag [--reps 3] [--lo N] [--hi N] [--warmup 35] [--batches 30]
#   bench/spark/run-job.sh sessions --rate 900000            # one probe
#   bench/spark/run-job.sh hashtag --rate 20000 --check 35   # print the result after batch 35
#   bench/spark/run-job.sh hashtag --print-lines 60          # print generated lines
# Sets up pyspark 3.5.9 (Spark 3.5.9, Scala 2.12) in a venv on first use (SPARK_VENV to reuse
# one); needs Java 17. Spark's log goes to bench/spark/target/spark-JOB-stderr.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
job="${1:-}"
case "$job" in
    hashtag) class=HashtagJob ;;
    sessions) class=SessionsJob ;;
    *) echo "usage: $0 hashtag|sessions [--name value ...]" >&2; exit 2 ;;
esac
shift
venv="${SPARK_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pyspark==3.5.9
fi
spark_home="$("$venv/bin/python" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')"
out="$here/target"
jar="$out/stateful-jobs.jar"
srcs=("$here/BenchCommon.scala" "$here/HashtagJob.scala" "$here/SessionsJob.scala")
stale=0
[ -f "$jar" ] || stale=1
for s in "${srcs[@]}"; do [ "$s" -nt "$jar" ] && stale=1; done
if [ "$stale" = 1 ]; then
    rm -rf "$out/stateful-classes"
    mkdir -p "$out/stateful-classes"
    java -cp "$spark_home/jars/*" scala.tools.nsc.Main -classpath "$spark_home/jars/*" \
        -d "$out/stateful-classes" "${srcs[@]}" >&2   # (DStreams are deprecated since 3.4)
    (cd "$out/stateful-classes" && jar cf "$jar" .)
fi
export SPARK_LOCAL_IP=127.0.0.1
"$spark_home/bin/spark-submit" --master 'local[2]' --driver-memory "${SPARK_DRIVER_MEMORY:-12g}" \
    --class "$class" "$jar" "$@" 2> "$out/spark-$job-stderr.log"
