#!/usr/bin/env bash
# Side by side: a stateful job (hashtag or sessions) on Spark Streaming 3.5 and on dstream,
# alternating one max-rate search of each, REPS times, in the same time window (the machine's
# speed drifts), then a table: one line per side and search, and each side's median.
#
# Usage: bench/compare-stateful.sh hashtag|sessions [REPS] [SPARK_LO SPARK_HI] [OURS_LO OURS_HI]
#   Each search starts at LO (halving while it falls behind) and bisects LO..HI to 3%; it never
#   goes above HI (a warning says when it ended there). With HI/LO = 1.2 a search is 4 probes:
#   hashtag probes are 65 batches (35 warm-up, the window must fill), sessions probes 65 too (35
#   warm-up, every band of users must be seen), so a pair of searches takes 10-15 minutes.
#   OPTS: options for both sides (e.g. "--warmup 35 --batches 30");
#   OURS_OPTS: options for dstream's side only (e.g. "--mode mapws" for sessions).
set -euo pipefail
cd "$(dirname "$0")/.."
job="${1:-}"
case "$job" in
    hashtag) defaults=(3400000 4800000 12500000 15000000) ;;
    sessions) defaults=(1300000 2200000 6200000 8400000) ;;
    *) echo "usage: $0 hashtag|sessions [REPS] [SPARK_LO SPARK_HI] [OURS_LO OURS_HI]" >&2; exit 2 ;;
esac
reps="${2:-3}"
spark_lo="${3:-${defaults[0]}}"
spark_hi="${4:-${defaults[1]}}"
ours_lo="${5:-${defaults[2]}}"
ours_hi="${6:-${defaults[3]}}"
read -r -a opts <<< "${OPTS:-}"
read -r -a ours_opts <<< "${OURS_OPTS:-}"
cargo build --release -p dstream-bench
bin="${CARGO_TARGET_DIR:-target}/release/$job"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
for i in $(seq 1 "$reps"); do
    echo "== pair $i/$reps"
    bench/spark/run-job.sh "$job" --reps 1 --lo "$spark_lo" --hi "$spark_hi" "${opts[@]}" \
        | tee >(grep '^RESULT' >> "$results") | grep -E "^  spark|max sustained rate per|^warning"
    "$bin" --reps 1 --lo "$ours_lo" --hi "$ours_hi" "${opts[@]}" "${ours_opts[@]}" 2>&1 \
        | tee >(grep '^RESULT' >> "$results") | grep -E "^  rate|max sustained rate per|^warning"
done
sleep 1 # the process substitutions above finish writing
row() { awk '{ printf "%-8s %-15s %14d %8d %8d %7d MiB%s\n", $2, $3, $4, $5, $6, $7, tag }' tag="$1"; }
echo
printf '%-8s %-15s %14s %8s %8s %11s\n' side job "max rate/s" "p50 ms" "p99 ms" "peak RSS"
sed 's/[a-z_0-9]*=//g' "$results" > "$results.t"
mv "$results.t" "$results"
for side in spark dstream; do
    grep " $side " "$results" | row "" || true
done
if [ "$reps" -gt 1 ]; then
    for side in spark dstream; do
        n="$(grep -c " $side " "$results" || true)"
        [ "$n" -gt 0 ] && grep " $side " "$results" | sort -n -k4,4 | sed -n "$((n / 2 + 1))p" | row "  (median of $n)"
    done
fi
