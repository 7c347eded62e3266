#!/usr/bin/env bash
# Builds and runs the Spark Streaming peer of the stateless benchmark (see BENCHMARKS.md).
# Usage: bench/spark/run-stateless.sh [REPS] [WARMUP] [BATCHES]
# Sets up pyspark 3.5.9 (Spark 3.5.9, Scala 2.12) in a venv on first use; needs Java 17.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SPARK_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pyspark==3.5.9
fi
spark_home="$("$venv/bin/python" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')"
out="$here/target"
mkdir -p "$out/classes"
if [ ! -f "$out/stateless-job.jar" ] || [ "$here/StatelessJob.scala" -nt "$out/stateless-job.jar" ]; then
    java -cp "$spark_home/jars/*" scala.tools.nsc.Main -classpath "$spark_home/jars/*" \
        -d "$out/classes" "$here/StatelessJob.scala"
    (cd "$out/classes" && jar cf "$out/stateless-job.jar" .)
fi
export SPARK_LOCAL_IP=127.0.0.1
"$spark_home/bin/spark-submit" --master 'local[2]' --driver-memory 12g \
    --class StatelessJob "$out/stateless-job.jar" "${1:-3}" "${2:-5}" "${3:-30}" 2> "$out/spark-stderr.log"
