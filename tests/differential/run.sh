#!/usr/bin/env bash
# The differential test against Spark Streaming 3.5, by hand (not in CI: it needs Java 17 and
# Spark's jars, which bench/spark/setup.sh installs on first use, about 320 MB).
# Usage: tests/differential/run.sh [CASES] [SEED]     (defaults: 300 cases, seed 1)
# Writes target/differential/cases.jsonl and spark.jsonl; prints each disagreement and a count.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/rocksdb-env.sh
source scripts/rocksdb-env.sh
export DIFF_CASES="${1:-300}" DIFF_SEED="${2:-1}"
exec cargo test --locked --test differential -- --ignored --nocapture random_pipelines_agree_with_spark_streaming
