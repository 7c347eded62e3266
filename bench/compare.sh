#!/usr/bin/env bash
# dstream side by side with Spark Streaming 3.5 on this machine, in one run (bench/README.md).
#
# Sets up the Spark peer from scratch as far as needed (bench/spark/setup.sh: Java 17, a venv
# with pyspark==3.5.9 from PyPI, the Scala jobs compiled against its jars), builds dstream's
# bench binaries, then for each job runs one max-sustained-rate search on Spark and one on
# dstream, alternately, REPS times (each repetition a fresh process, starting from the previous
# repetition's result), then one dstream probe at Spark's median rate (peak RSS at the same
# rate), and prints the table.
#
# Usage: bench/compare.sh [--reps 3] [--batch-ms 1000] [--jobs "stateless hashtag sessions mapws"]
#                         [--fresh] [--out DIR]
#   --batch-ms 100 runs the latency variant: 100 ms batches, sustained while the p99 total
#   delay stays under 2 batch intervals (--batch-ms 1000: processing time under the interval,
#   scheduling delay not growing).
#   --fresh removes the Spark venv and jar first; `mapws` is dstream's map_with_state variant of
#   the sessions job (no Spark peer; its ratio is against Spark's updateStateByKey).
#   --out: where the logs and the table go (default target/bench-compare/DATE).
#   --table DIR: only print the table of an earlier run's DIR/results.txt (with its options).
#   OPTS: more options for both sides' binaries, e.g. OPTS="--warmup 3 --batches 5" for a smoke
#   run (the figures of such a run mean nothing).
# A 1 s search is about 4-6 probes of 40 s (stateless) to 70 s (hashtag, sessions): the default
# run takes about 90 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
# dstream's binaries allocate with mimalloc (dstream's `mimalloc` feature); keep what batches
# free for the next ones rather than returning it to the OS (bench/README.md, "The allocator").
export MIMALLOC_PURGE_DELAY="${MIMALLOC_PURGE_DELAY:--1}"
reps=3
batch_ms=1000
jobs="stateless hashtag sessions mapws"
fresh=""
out=""
table_only=""
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps="$2"; shift 2 ;;
        --batch-ms) batch_ms="$2"; shift 2 ;;
        --jobs) jobs="$2"; shift 2 ;;
        --fresh) fresh="--fresh"; shift ;;
        --out) out="$2"; shift 2 ;;
        --table) table_only=1; out="$2"; shift 2 ;;
        *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
    esac
done
case "$batch_ms" in
    1000) judge=throughput ;;
    *) judge=latency ;;
esac
out="${out:-target/bench-compare/$(date -u +%Y%m%d-%H%M%S)-${batch_ms}ms}"
mkdir -p "$out"
results="$out/results.txt"
[ -z "$table_only" ] && : > "$results"

# Where each search starts (rates/s, from earlier runs on this machine; the search steps away
# from a wrong start).
start() { # side job
    case "$batch_ms:$1:$2" in
        1000:spark:stateless) echo 7000000 ;;
        1000:spark:hashtag) echo 4000000 ;;
        1000:spark:sessions) echo 3000000 ;;
        1000:dstream:stateless) echo 105000000 ;;
        1000:dstream:hashtag) echo 22000000 ;;
        1000:dstream:sessions) echo 36000000 ;;
        1000:dstream:mapws) echo 28000000 ;;
        *:spark:stateless) echo 7000000 ;;
        *:spark:hashtag) echo 1600000 ;;
        *:spark:sessions) echo 250000 ;;
        *:dstream:stateless) echo 110000000 ;;
        *:dstream:hashtag) echo 16000000 ;;
        *:dstream:sessions) echo 2000000 ;;
        *:dstream:mapws) echo 10000000 ;;
    esac
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }
# The median rate of a side's searches of a job (sorted, the middle one).
median_rate() { # side job
    rates "$1" "$2" | sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int(NR / 2) + 1] }'
}
# The rates of a side's searches of a job, in the order they ran.
rates() { # side job
    { grep "tag=search side=$1 job=$2 " "$results" || true; } | field rate
}
# The rate the latest search of a side and job ended at.
last_rate() { rates "$1" "$2" | tail -1; }
# The job Spark runs as the peer of a job (map_with_state's is updateStateByKey's sessions).
peer_of() { if [ "$1" = mapws ]; then echo sessions; else echo "$1"; fi; }
# The RESULT line of the median search of a side and job.
median_line() { # side job
    local m
    m="$(median_rate "$1" "$2")"
    [ -n "$m" ] && grep "tag=search side=$1 job=$2 " "$results" | grep " rate=$m " | head -1
}

if [ -z "$table_only" ]; then
echo "== setting up the Spark peer" >&2
bench/spark/setup.sh $fresh
echo "== building dstream's benchmarks" >&2
cargo build --release -q -p dstream-bench --features mimalloc
bin="${CARGO_TARGET_DIR:-target}/release"

read -r -a extra_opts <<< "${OPTS:-}"
common=(--batch-ms "$batch_ms" --judge "$judge" "${extra_opts[@]}")
# Runs one side's search (or probe) and appends its RESULT line, tagged, to the results.
run_side() { # side job tag args...
    local side="$1" job="$2" tag="$3"
    shift 3
    local log="$out/$side-$job-$tag.log"
    case "$side:$job" in
        spark:*) bench/spark/run-job.sh "$job" "$@" "${common[@]}" > "$log" 2>&1 ;;
        dstream:mapws) "$bin/sessions" --mode mapws "$@" "${common[@]}" > "$log" 2>&1 ;;
        dstream:*) "$bin/$job" "$@" "${common[@]}" > "$log" 2>&1 ;;
    esac || { echo "   $side $job failed: see $log" >&2; return 0; }
    grep -E "^ *(spark )?rate .*/s:" "$log" | sed -E "s/^ *(spark )?/   $side /" >&2 || true
    grep '^warning' "$log" >&2 || true
    grep '^RESULT' "$log" | sed "s/^RESULT /RESULT tag=$tag /; s/ job=[^ ]*/ job=$job/" >> "$results" || true
}

# The most a dstream sessions search may probe: its input is generated up to that rate first.
sessions_max() { echo $(( $(start dstream "$1") * 13 / 10 )); }
for job in $jobs; do
    peer="$(peer_of "$job")"
    s_start="$(start spark "$peer")"
    d_start="$(start dstream "$job")"
    extra=()
    case "$job" in sessions | mapws) extra=(--max "$(sessions_max "$job")") ;; esac
    for i in $(seq 1 "$reps"); do
        if [ "$job" != mapws ]; then
            echo "== $job, repetition $i/$reps: Spark" >&2
            run_side spark "$job" search --reps 1 --start "$s_start"
            r="$(last_rate spark "$job")"
            [ -n "$r" ] && [ "$r" != 0 ] && s_start="$r"
        fi
        echo "== $job, repetition $i/$reps: dstream" >&2
        run_side dstream "$job" search --reps 1 --start "$d_start" "${extra[@]}"
        r="$(last_rate dstream "$job")"
        [ -n "$r" ] && [ "$r" != 0 ] && d_start="$r"
    done
    s_rate="$(median_rate spark "$peer")"
    if [ -n "$s_rate" ] && [ "$s_rate" != 0 ]; then
        echo "== $job: dstream at Spark's median rate $s_rate/s (peak RSS at the same rate)" >&2
        run_side dstream "$job" at-spark-rate --rate "$s_rate"
    fi
done

fi

# The table: per job, each side's median search, the ratio, and peak RSS.
table="$out/table.md"
{
    echo "Machine: $(nproc) cores, $(free -g | awk '/^Mem:/ { print $2 }') GiB; ${batch_ms} ms batches," \
        "$judge rule; median of $reps searches per side; $(date -u +%Y-%m-%d)."
    echo
    if [ "$judge" = latency ]; then
        echo "| job | Spark max rate/s | dstream max rate/s | ratio | Spark p50 / p99 batch, p99 total delay (ms) | dstream p50 / p99 batch, p99 total delay (ms) | Spark peak RSS | dstream peak RSS: at its max / at Spark's rate | RSS ratio at the same rate |"
    else
        echo "| job | Spark max rate/s | dstream max rate/s | ratio | Spark p50 / p99 batch (ms) | dstream p50 / p99 batch (ms) | Spark peak RSS | dstream peak RSS: at its max / at Spark's rate | RSS ratio at the same rate |"
    fi
    echo "|---|---|---|---|---|---|---|---|---|"
    for job in $jobs; do
        peer="$(peer_of "$job")"
        s="$(median_line spark "$peer" || true)"
        d="$(median_line dstream "$job" || true)"
        a="$(grep "tag=at-spark-rate side=dstream job=$job " "$results" | tail -1 || true)"
        [ -z "$s" ] && [ -z "$d" ] && continue
        awk -v job="$job" -v s="$s" -v d="$d" -v a="$a" -v latency="$judge" 'function f(line, k,   n, i, kv) {
                n = split(line, kv, " ")
                for (i = 1; i <= n; i++) if (index(kv[i], k "=") == 1) return substr(kv[i], length(k) + 2)
                return ""
            }
            function rate(r,   s) {
                if (r == "") return "-"
                s = sprintf("%d", r)
                while (s ~ /[0-9][0-9][0-9][0-9]/) sub(/[0-9][0-9][0-9]($|,)/, ",&", s)
                return s
            }
            function times(line) {
                if (line == "") return "-"
                t = f(line, "p50_ms") " / " f(line, "p99_ms")
                if (latency == "latency") t = t ", " f(line, "p99_total_ms")
                return t
            }
            function mib(line) { return line == "" ? "-" : f(line, "rss_mib") " MiB" }
            BEGIN {
                sr = f(s, "rate"); dr = f(d, "rate")
                ratio = (sr > 0 && dr != "") ? sprintf("**%.1fx**", dr / sr) : "-"
                rss = (s != "" && a != "" && f(a, "rss_mib") > 0) ? sprintf("%.1fx", f(s, "rss_mib") / f(a, "rss_mib")) : "-"
                name = job == "mapws" ? "sessions (dstream: map_with_state)" : job
                printf "| %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |\n", name, rate(sr), rate(dr), ratio, times(s), times(d), mib(s), mib(d), mib(a), rss
            }'
    done
    echo
    echo "Each search's result (rate/s):"
    for job in $jobs; do
        for side in spark dstream; do
            r="$(rates "$side" "$job" | paste -sd, -)"
            [ -n "$r" ] && echo "- $job, $side: $r"
        done
    done
} > "$table"
echo >&2
cat "$table"
echo >&2
echo "logs and this table: $out" >&2
