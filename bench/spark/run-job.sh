#!/usr/bin/env bash
# Runs the Spark Streaming peer of one of dstream's benchmarks (see bench/README.md), after
# setting it up (bench/spark/setup.sh). Options are the Rust binaries' (`--name value`):
#   bench/spark/run-job.sh stateless|hashtag|sessions [--reps 3] [--start N] [--max N]
#       [--batch-ms 1000] [--judge throughput|latency] [--warmup N] [--batches N]
#   bench/spark/run-job.sh sessions --rate 900000            # one probe
#   bench/spark/run-job.sh hashtag --rate 20000 --check 35   # print the result after batch 35
#   bench/spark/run-job.sh hashtag --print-lines 60          # print generated lines
# Spark runs in local[2] with Kryo and a 12 GB driver heap (SPARK_DRIVER_MEMORY); its log goes to
# bench/spark/target/spark-JOB-stderr.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
job="${1:-}"
case "$job" in
    stateless) class=StatelessJob ;;
    hashtag) class=HashtagJob ;;
    sessions) class=SessionsJob ;;
    *) echo "usage: $0 stateless|hashtag|sessions [--name value ...]" >&2; exit 2 ;;
esac
shift
"$here/setup.sh"
venv="${SPARK_VENV:-$here/.venv}"
spark_home="$("$venv/bin/python" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')"
export SPARK_LOCAL_IP=127.0.0.1
"$spark_home/bin/spark-submit" --master 'local[2]' --driver-memory "${SPARK_DRIVER_MEMORY:-12g}" \
    --class "$class" "$here/target/jobs.jar" "$@" 2> "$here/target/spark-$job-stderr.log"
