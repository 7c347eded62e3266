# Sourced by scripts/test and .ci/run: points ROCKSDB_LIB_DIR at a RocksDB library compiled once,
# so that every build links it instead of compiling RocksDB's C++ again (10-20 minutes on 2
# cores): the test build, and the separate target directory in which trybuild compiles the DSL's
# compile-fail cases. A ROCKSDB_LIB_DIR already set is left alone.
if [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
    rocksdb_prebuilt="$PWD/target/rocksdb-prebuilt"
    if [ ! -f "$rocksdb_prebuilt/librocksdb.a" ]; then
        echo "building RocksDB once (10-20 minutes on 2 cores)..." >&2
        cargo build --locked -p librocksdb-sys
        rocksdb_lib="$(find target/debug/build -path '*librocksdb-sys-*/out/librocksdb.a' | head -1)"
        mkdir -p "$rocksdb_prebuilt"
        cp "$rocksdb_lib" "$rocksdb_prebuilt/"
    fi
    export ROCKSDB_LIB_DIR="$rocksdb_prebuilt" ROCKSDB_STATIC=1
fi
