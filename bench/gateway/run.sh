#!/usr/bin/env bash
# bench/gateway: the API gateway in front of warm functions, against a pair of
# nginx instances (proxy -> origin) measured in the same run.
#
# A benchmark, not a test: it prints numbers and writes them to
# bench/results/gateway-<timestamp>.md; it fails only when something could not
# be started or a request failed to echo. See bench/README.md.
#
# Environment (all optional):
#   TAMAYA_BIN           tamaya binary            (default build/release/tamaya)
#   BENCH_DURATION       wrk -d per measured cell (default 5s)
#   BENCH_WARM_DURATION  wrk -d of the c=64 warm-up per target (default 3s)
#   BENCH_ROUNDS         rounds of all cells; cells report the median (default 3)
#   BENCH_KEEP_TMP=1     keep the temp dir (configs, logs, raw wrk output)
#   BENCH_TAMAYA_SET     extra tamaya settings, "key=value key2=value2"
#   BENCH_FLOOR_INSTANCES instances behind the minimal broker (default 8)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/bench/gateway"
INVOKE="$ROOT/bench/invoke"
NAME=gateway
DEFAULT_DURATION=5s
DEFAULT_ROUNDS=3
# shellcheck source=bench/lib/wrk_pair.sh
source "$ROOT/bench/lib/wrk_pair.sh"
FAILURE_LOGS=("$TMP/tamaya/access.log" "$TMP/shaped/error.log" "$TMP/forked_origin.log"
  "$TMP/floor.log" "$TMP/pyfloor.log")
# As many instances as tamaya keeps busy while it holds a CPU-bound
# function's scale-out (scale_hold_busy_per_core × CPUs); more only add
# process switches (64 gave 16–18k req/s against 21k with 8, native echo).
FLOOR_INSTANCES="${BENCH_FLOOR_INSTANCES:-8}"
[[ "$FLOOR_INSTANCES" =~ ^[1-9][0-9]?$ ]] ||
  die "BENCH_FLOOR_INSTANCES must be 1..99, got '$FLOOR_INSTANCES'"

start_nginx_pair

# --- The instances' shape without tamaya: the same nginx proxy in front of
# forked_origin.c, a process per connection that each request wakes, as it
# wakes an instance waiting in its long poll. Not a goal's reference: it shows
# how much of the gap to the pair the shape alone costs on this host.
cc -O2 -o "$TMP/forked_origin" "$HERE/forked_origin.c"
SHAPED_ORIGIN_PORT="$(port)"
SHAPED_PROXY_PORT="$(port)"
"$TMP/forked_origin" "$SHAPED_ORIGIN_PORT" >"$TMP/forked_origin.log" 2>&1 &
PIDS+=($!)
write_proxy_conf "$TMP/shaped" "$SHAPED_ORIGIN_PORT" "$SHAPED_PROXY_PORT"
start_nginx "$TMP/shaped"
PIDS+=($!)
SHAPED_URL="http://127.0.0.1:$SHAPED_PROXY_PORT/echo"
python3 "$INVOKE/admin.py" wait-http "$SHAPED_URL" "$START_TIMEOUT_S"

# --- tamaya: admin port and the gateway's public port
TAMAYA_PORT="$(port)"
GATEWAY_PORT="$(port)"
TAMAYA="http://127.0.0.1:$TAMAYA_PORT"
GATEWAY="http://127.0.0.1:$GATEWAY_PORT"
# The access log goes to a file, as in production, so its cost is measured.
"$TAMAYA_BIN" serve --data-dir "$TMP/tamaya" --admin-port "$TAMAYA_PORT" \
  --set gateway_port="$GATEWAY_PORT" --set gateway_access_log=access.log \
  --set log_level=warn --set drain_timeout_ms=2000 "${TAMAYA_SET_ARGS[@]}" >"$TMP/tamaya.log" 2>&1 &
PIDS+=($!)

python3 "$INVOKE/admin.py" wait-http "$TAMAYA/v1/health" "$START_TIMEOUT_S"

# --- functions and routes
build_echo_functions
python3 "$INVOKE/admin.py" deploy "$TAMAYA" native-echo provided - "$MAX_CONCURRENCY" \
  "$TMP/fn/bootstrap=bootstrap"
python3 "$INVOKE/admin.py" deploy "$TAMAYA" py-echo python3 app.handler "$MAX_CONCURRENCY" \
  "$TMP/fn/app.py=app.py"
python3 "$HERE/setup.py" route "$TAMAYA" "POST /open" native-echo none >/dev/null
python3 "$HERE/setup.py" route "$TAMAYA" "POST /py" py-echo none >/dev/null
# Key and route limits far above what two cores can do: every request pays
# for the checks, none is refused.
python3 "$HERE/setup.py" route "$TAMAYA" "POST /keyed" native-echo api_key 1000000 1000000 \
  >/dev/null
API_KEY="$(python3 "$HERE/setup.py" key "$TAMAYA" 1000000 1000000 1000000000)"
python3 "$HERE/setup.py" check "$GATEWAY/open" "$WARM_INVOKES"
python3 "$HERE/setup.py" check "$GATEWAY/py" "$WARM_INVOKES"
python3 "$HERE/setup.py" check "$GATEWAY/keyed" "$WARM_INVOKES" "$API_KEY"

# --- The Runtime API's floor, for context: broker_floor.c, a minimal broker
# with the same protocol (clients in, long polls and responses from
# instances) and nothing else, in front of the same functions run without a
# sandbox. What tamaya cannot beat on this host with unchanged runtimes.
# shellcheck source=bench/lib/floor.sh
source "$ROOT/bench/lib/floor.sh"
fetch_floor_event "$GATEWAY/py" "$TMP/event.json" ||
  die "could not fetch a payload 2.0 event from $GATEWAY/py"
start_floor "$TMP" "$TMP/event.json" "$FLOOR_INSTANCES" "$TMP/fn" "$TMP/floor.log" \
  "$TMP/fn/bootstrap" || die "the native floor did not start"
PIDS+=("$FLOOR_BROKER_PID" "${FLOOR_INSTANCE_PIDS[@]}")
NATIVE_FLOOR_URL="$FLOOR_URL"
start_floor "$TMP" "$TMP/event.json" "$FLOOR_INSTANCES" "$TMP/fn" "$TMP/pyfloor.log" \
  /usr/bin/python3 -I "$ROOT/runtimes/python/bootstrap.py" || die "the Python floor did not start"
PIDS+=("$FLOOR_BROKER_PID" "${FLOOR_INSTANCE_PIDS[@]}")
PYTHON_FLOOR_URL="$FLOOR_URL"

declare -A URL=(
  [nginx]="$PROXY_URL"
  [shaped]="$SHAPED_URL"
  [native]="$GATEWAY/open"
  [keyed]="$GATEWAY/keyed"
  [python]="$GATEWAY/py"
  [floor]="$NATIVE_FLOOR_URL"
  [pyfloor]="$PYTHON_FLOOR_URL"
)
declare -A KEY=([keyed]="$API_KEY")
TARGET_ORDER=(nginx shaped floor native keyed pyfloor python)

measure_rounds
write_report "$TAMAYA"
