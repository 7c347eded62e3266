#!/usr/bin/env bash
# Sets up the Spark Streaming peer of dstream's benchmarks from scratch, as far as needed:
#   - Java 17 (a JDK: the Scala compiler and `jar`); installed with apt-get if missing and root;
#   - a Python venv with pyspark==3.5.9 from PyPI (Spark 3.5.9, Scala 2.12, its jars);
#   - the Scala DStream jobs (*.scala here) compiled against those jars into one jar.
# Usage: bench/spark/setup.sh [--fresh]   (--fresh: remove the venv and the jar first)
# The venv is bench/spark/.venv, or $SPARK_VENV. Prints nothing on success but what it did.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${SPARK_VENV:-$here/.venv}"
out="$here/target"
jar="$out/jobs.jar"
if [ "${1:-}" = "--fresh" ]; then
    echo "spark peer: removing $venv and $out" >&2
    rm -rf "$venv" "$out"
fi
if ! command -v javac > /dev/null || ! javac -version 2>&1 | grep -q ' 17\.'; then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "spark peer: installing openjdk-17-jdk-headless" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless > /dev/null
    else
        echo "spark peer: needs Java 17 (javac, jar): apt-get install openjdk-17-jdk-headless" >&2
        exit 1
    fi
fi
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import pyspark' 2> /dev/null; then
    echo "spark peer: creating $venv with pyspark==3.5.9 (about 320 MB from PyPI)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q pyspark==3.5.9
fi
spark_home="$("$venv/bin/python" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')"
srcs=("$here"/*.scala)
stale=0
[ -f "$jar" ] || stale=1
for s in "${srcs[@]}"; do [ "$s" -nt "$jar" ] && stale=1; done
if [ "$stale" = 1 ]; then
    echo "spark peer: compiling ${#srcs[@]} Scala sources against Spark's jars" >&2
    rm -rf "$out/classes"
    mkdir -p "$out/classes"
    # (DStreams are deprecated since Spark 3.4: the compiler says so.)
    java -cp "$spark_home/jars/*" scala.tools.nsc.Main -classpath "$spark_home/jars/*" \
        -d "$out/classes" "${srcs[@]}" 2>&1 | grep -v -i -E "deprecat|warnings? found" >&2 || true
    [ -f "$out/classes/Bench.class" ] || { echo "spark peer: the Scala build failed" >&2; exit 1; }
    (cd "$out/classes" && jar cf "$jar" .)
fi
