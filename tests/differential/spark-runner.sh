#!/usr/bin/env bash
# The Spark Streaming 3.5 side of the differential test (SPEC.md): runs every case of CASES in
# Spark Streaming on a manual clock and writes one JSON line per case to OUT.
# Usage: tests/differential/spark-runner.sh CASES.jsonl OUT.jsonl
# Sets up Spark first (bench/spark/setup.sh: Java 17, a venv with pyspark==3.5.9), then compiles
# SparkRunner.scala into tests/differential/target/runner.jar when it is stale. Spark's own log
# goes to tests/differential/target/spark-runner.log. Exits non-zero only when the runner itself
# fails, not for a case's error (that is a line of OUT). SPARK_RUNNER_HEAP sets the heap (2g);
# SPARK_RUNNER_VERBOSE=1 prints each case's time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
if [ $# != 2 ]; then
    echo "usage: $0 CASES.jsonl OUT.jsonl" >&2
    exit 2
fi
cases="$1"
out_file="$2"
"$root/bench/spark/setup.sh"
venv="${SPARK_VENV:-$root/bench/spark/.venv}"
spark_home="$("$venv/bin/python" -c 'import pyspark, os; print(os.path.dirname(pyspark.__file__))')"
out="$here/target"
jar="$out/runner.jar"
src="$here/SparkRunner.scala"
mkdir -p "$out"
if [ ! -f "$jar" ] || [ "$src" -nt "$jar" ] || [ "$0" -nt "$jar" ]; then
    echo "spark runner: compiling SparkRunner.scala against Spark's jars" >&2
    rm -rf "$out/classes" "$jar"
    mkdir -p "$out/classes"
    # (DStreams are deprecated since Spark 3.4: the compiler says so.)
    java -cp "$spark_home/jars/*" scala.tools.nsc.Main -classpath "$spark_home/jars/*" \
        -d "$out/classes" "$src" 2>&1 | grep -v -i -E "deprecat|warnings? found" >&2 || true
    [ -f "$out/classes/org/apache/spark/streaming/differential/SparkRunner.class" ] \
        || { echo "spark runner: the Scala build failed" >&2; exit 1; }
    (cd "$out/classes" && jar cf "$jar" .)
fi
log="$out/spark-runner.log"
cat > "$out/log4j2.properties" <<LOG
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = $log
appender.file.append = false
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n%ex
LOG
export SPARK_LOCAL_IP=127.0.0.1
# The module options are those Spark's launcher gives Java 17 (JavaModuleOptions).
exec java -Xmx"${SPARK_RUNNER_HEAP:-2g}" \
    -XX:+IgnoreUnrecognizedVMOptions \
    --add-opens=java.base/java.lang=ALL-UNNAMED \
    --add-opens=java.base/java.lang.invoke=ALL-UNNAMED \
    --add-opens=java.base/java.lang.reflect=ALL-UNNAMED \
    --add-opens=java.base/java.io=ALL-UNNAMED \
    --add-opens=java.base/java.net=ALL-UNNAMED \
    --add-opens=java.base/java.nio=ALL-UNNAMED \
    --add-opens=java.base/java.util=ALL-UNNAMED \
    --add-opens=java.base/java.util.concurrent=ALL-UNNAMED \
    --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED \
    --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED \
    --add-opens=java.base/sun.nio.cs=ALL-UNNAMED \
    --add-opens=java.base/sun.security.action=ALL-UNNAMED \
    --add-opens=java.base/sun.util.calendar=ALL-UNNAMED \
    --add-opens=java.security.jgss/sun.security.krb5=ALL-UNNAMED \
    -Djdk.reflect.useDirectMethodHandle=false \
    -Dlog4j2.configurationFile="file:$out/log4j2.properties" \
    -cp "$jar:$spark_home/jars/*" \
    org.apache.spark.streaming.differential.SparkRunner "$cases" "$out_file"
