#!/usr/bin/env bash
# Scale-out, on one machine: a Kafka broker, a feeder of tweets and three instances of the
# hashtags example in one application (consumer group). Each instance prints the tasks (topic
# partitions) it runs; the one running the first task prints the top 10 every 5 s. Stop an
# instance (kill -TERM, or -KILL) to watch its tasks move. Ctrl-C stops everything it started.
#
#   scripts/cluster-demo.sh          # on a real single-node Apache Kafka (jars from Maven Central)
#   scripts/cluster-demo.sh tansu    # on the test broker
set -euo pipefail
cd "$(dirname "$0")/.."
kind="${1:-kafka}"
case "$kind" in kafka | tansu) ;; *) echo "usage: $0 [kafka|tansu]" >&2; exit 2 ;; esac
# shellcheck source=scripts/rocksdb-env.sh
source scripts/rocksdb-env.sh
echo "building the hashtags example (release)..." >&2
cargo build --release --example hashtags
bin=target/release/examples/hashtags

broker_arg=(); [ "$kind" = kafka ] && broker_arg=(kafka)
started_broker=0
if ! scripts/kafka-broker.sh status "${broker_arg[@]}" >/dev/null 2>&1; then
    scripts/kafka-broker.sh start "${broker_arg[@]}"
    started_broker=1
fi
eval "$(scripts/kafka-broker.sh env "${broker_arg[@]}")"
brokers="${KAFKA_BROKERS:-}"
[ "$kind" = kafka ] && brokers="$KAFKA_REAL_BROKERS"

run_id="$$"
topic="tweets-demo-$run_id"
app="hashtags-demo-$run_id"
state="$(mktemp -d -t dstream-demo.XXXXXX)"
pids=()
stop_all() {
    trap - EXIT INT TERM
    echo "stopping..." >&2
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$state"
    if [ "$started_broker" = 1 ]; then scripts/kafka-broker.sh stop "${broker_arg[@]}" >/dev/null; fi
}
trap stop_all EXIT INT TERM

"$bin" --kafka "$brokers" --topic "$topic" --feed-only --rate 2000 &
pids+=($!)
sleep 2
# The prefixing filters ignore Ctrl-C's SIGINT, so that they outlive the instances and take
# what those print while they stop (an instance whose output pipe closed under it could not
# print its last batches).
for i in 1 2 3; do
    "$bin" --kafka "$brokers" --topic "$topic" --app "$app" --checkpoint "$state/instance$i" \
        --window 30 --slide 5 \
        > >(trap '' INT; exec sed -u "s/^/[instance $i] /") \
        2> >(trap '' INT; grep --line-buffered -v PartitionEOF | sed -u "s/^/[instance $i] /" >&2) &
    pids+=($!)
    echo "[demo] instance $i: pid $!" >&2
    sleep 3
done
echo "[demo] topic $topic (6 partitions), application $app, brokers $brokers; Ctrl-C to stop" >&2
wait
