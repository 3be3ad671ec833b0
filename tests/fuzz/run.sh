#!/usr/bin/env bash
# Builds and runs the gateway's libFuzzer target (clang-14 and
# libclang-rt-14-dev): tests/fuzz/run.sh [libFuzzer flags], e.g. -runs=20000
# (the test suite's short run) or -max_total_time=600 by hand.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${FUZZ_OUT:-$ROOT/build/fuzz}"
mkdir -p "$OUT"
BIN="$OUT/gateway_fuzz"
SRC=("$ROOT/tests/fuzz/gateway_fuzz.cpp" "$ROOT/src/gateway/routes.cpp" "$ROOT/src/gateway/event.cpp"
     "$ROOT/src/common/encoding.cpp" "$ROOT/src/common/status.cpp" "$ROOT/src/common/strings.cpp"
     "$ROOT/src/net/server.cpp")
if [[ ! -x "$BIN" ]] || [[ -n "$(find "${SRC[@]}" -newer "$BIN" 2>/dev/null)" ]]; then
  clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I"$ROOT/src" "${SRC[@]}" \
    -o "$BIN" -lcrypto -lfmt -lspdlog -lboost_system -lpthread
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$BIN" "$WORK" "$ROOT/tests/fuzz/corpus/gateway" "$@"
