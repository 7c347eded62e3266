#!/usr/bin/env bash
# Side by side: the stateless job on dstream and on Spark Streaming 3.5, alternating one
# repetition of each, REPS times, in the same time window (the machine's speed drifts).
# Usage: bench/compare-stateless.sh [REPS]   (about 10 minutes per repetition pair)
set -euo pipefail
cd "$(dirname "$0")/.."
reps="${1:-3}"
cargo build --release -p dstream-bench
for i in $(seq 1 "$reps"); do
    echo "== pair $i/$reps"
    bench/spark/run-stateless.sh 1 5 30 | grep -E "max sustained rate per repetition|^  spark"
    target/release/stateless --reps 1 2>&1 | grep -E "max sustained rate per repetition|peak RSS|^  rate"
done
