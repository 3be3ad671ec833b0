#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (clang-14 and libclang-rt-14-dev):
#   tests/fuzz/run.sh [gateway|http] [libFuzzer flags]
# e.g. -runs=20000 (the test suite's short run of each) or -max_total_time=600
# by hand. Without a target name, both run in turn with the same flags.
#   gateway: route matching, event building and response mapping from a
#            structured request (corpus/gateway);
#   http:    raw bytes through the server's request parser (pipelined
#            requests, reads split anywhere), then route matching and event
#            building for each request it hands on (corpus/http).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${FUZZ_OUT:-$ROOT/build/fuzz}"
mkdir -p "$OUT"
TARGETS=(gateway http)
if [[ $# -gt 0 && ( $1 == gateway || $1 == http ) ]]; then
  TARGETS=("$1")
  shift
fi
COMMON=("$ROOT/src/gateway/routes.cpp" "$ROOT/src/gateway/event.cpp" "$ROOT/src/common/encoding.cpp"
        "$ROOT/src/common/status.cpp" "$ROOT/src/common/strings.cpp" "$ROOT/src/common/boost_assert.cpp"
        "$ROOT/src/net/server.cpp" "$ROOT/src/net/request_parser.cpp")
for target in "${TARGETS[@]}"; do
  BIN="$OUT/${target}_fuzz"
  SRC=("$ROOT/tests/fuzz/${target}_fuzz.cpp" "${COMMON[@]}")
  if [[ ! -x "$BIN" ]] || [[ -n "$(find "${SRC[@]}" "$ROOT/src/net" "$ROOT/src/gateway" "$ROOT/src/common" \
                                     -newer "$BIN" 2>/dev/null)" ]]; then
    clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined \
      -DBOOST_ENABLE_ASSERT_DEBUG_HANDLER -I"$ROOT/src" "${SRC[@]}" \
      -o "$BIN" -lcrypto -lfmt -lspdlog -lboost_system -lpthread
  fi
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  echo "fuzz target $target" >&2
  "$BIN" "$WORK" "$ROOT/tests/fuzz/corpus/$target" "$@"
  rm -rf "$WORK"
done
