#!/usr/bin/env bash
# Builds and runs the libFuzzer targets (clang-14 and libclang-rt-14-dev):
#   tests/fuzz/run.sh [gateway|http|jwt] [libFuzzer flags]
# e.g. -runs=20000 (the test suite's short run of each) or -max_total_time=600
# by hand. Without a target name, all run in turn with the same flags.
#   gateway: route matching, event building and response mapping from a
#            structured request (corpus/gateway);
#   http:    raw bytes through the server's request parser (pipelined
#            requests, reads split anywhere), then route matching and event
#            building for each request it hands on (corpus/http);
#   jwt:     bearer token verification, malformed tokens and arbitrary
#            claims signed with the route's secret (corpus/jwt).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUT="${FUZZ_OUT:-$ROOT/build/fuzz}"
mkdir -p "$OUT"
TARGETS=(gateway http jwt)
if [[ $# -gt 0 && ( $1 == gateway || $1 == http || $1 == jwt ) ]]; then
  TARGETS=("$1")
  shift
fi
# The tree's sources the targets share are compiled once, into objects each
# target links; anything under src/ newer than an object rebuilds it.
COMMON=(gateway/routes.cpp gateway/event.cpp gateway/jwt.cpp common/encoding.cpp common/status.cpp
        common/strings.cpp common/boost_assert.cpp net/server.cpp net/request_parser.cpp
        net/refused_pace.cpp)
FLAGS=(-std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -DBOOST_ENABLE_ASSERT_DEBUG_HANDLER
       -I"$ROOT/src")
mkdir -p "$OUT/obj"
OBJECTS=()
PIDS=()
for src in "${COMMON[@]}"; do
  obj="$OUT/obj/${src//\//_}.o"
  if [[ ! -f "$obj" ]] || [[ -n "$(find "$ROOT/src" -newer "$obj" -name '*.[ch]*' -print -quit)" ]]; then
    clang++-14 "${FLAGS[@]}" -c "$ROOT/src/$src" -o "$obj" &
    PIDS+=($!)
  fi
  OBJECTS+=("$obj")
done
for pid in "${PIDS[@]}"; do wait "$pid"; done
for target in "${TARGETS[@]}"; do
  BIN="$OUT/${target}_fuzz"
  if [[ ! -x "$BIN" ]] || [[ -n "$(find "$ROOT/tests/fuzz/${target}_fuzz.cpp" "$ROOT"/tests/fuzz/*.h "${OBJECTS[@]}" \
                                     -newer "$BIN" 2>/dev/null)" ]]; then
    clang++-14 "${FLAGS[@]}" "$ROOT/tests/fuzz/${target}_fuzz.cpp" "${OBJECTS[@]}" \
      -o "$BIN" -lcrypto -lfmt -lspdlog -lboost_system -lpthread
  fi
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  echo "fuzz target $target" >&2
  "$BIN" "$WORK" "$ROOT/tests/fuzz/corpus/$target" "$@"
  rm -rf "$WORK"
done
