#!/usr/bin/env bash
# Installs what building dstream needs on a fresh machine, once; run by scripts/hashtags,
# scripts/test and .ci/run, so all three use this one list.
#
#   scripts/setup.sh          the build's packages: libclang (RocksDB's bindings), cmake and the
#                             curl headers (librdkafka, built from source)
#   scripts/setup.sh test     and Chromium, which the dashboard's browser test drives
#
# On Debian or Ubuntu the missing packages are installed with apt-get (through sudo when not
# root). Elsewhere, what is missing is named (as Debian calls it) and the script stops.
set -euo pipefail

packages=(libclang-dev cmake libcurl4-openssl-dev)
if [ "${1:-}" = test ]; then
    packages+=(chromium)
fi

if command -v dpkg >/dev/null && command -v apt-get >/dev/null; then
    missing=()
    for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -eq 0 ]; then
        exit 0
    fi
    echo "setup: installing ${missing[*]} (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    sudo=()
    if [ "$(id -u)" != 0 ]; then
        if ! command -v sudo >/dev/null; then
            echo "setup: not root and no sudo: install ${missing[*]} as root, then run this again" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq "${missing[@]}"
    exit 0
fi

# Not Debian: look for the tools and headers themselves.
missing=()
command -v cmake >/dev/null || missing+=("cmake")
if ! { command -v llvm-config >/dev/null || ls /usr/lib*/libclang*.so* /usr/lib*/*/libclang*.so* /usr/local/lib/libclang*.so* >/dev/null 2>&1 || [ -n "${LIBCLANG_PATH:-}" ]; }; then
    missing+=("libclang (Debian: libclang-dev; Fedora: clang-devel; macOS: brew install llvm, then LIBCLANG_PATH)")
fi
if ! { [ -f /usr/include/curl/curl.h ] || [ -f /usr/local/include/curl/curl.h ] || [ -f /opt/homebrew/include/curl/curl.h ]; }; then
    missing+=("the curl headers (Debian: libcurl4-openssl-dev; Fedora: libcurl-devel; macOS: brew install curl)")
fi
if [ "${1:-}" = test ] && ! { command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; }; then
    missing+=("Chromium (for the dashboard's browser test)")
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: this is not a Debian or Ubuntu machine; install these, then run this again:" >&2
    for m in "${missing[@]}"; do echo "  - $m" >&2; done
    exit 1
fi
