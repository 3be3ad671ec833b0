#!/usr/bin/env bash
# bench/invoke: warm invocation throughput and latency of tamaya, against a
# pair of nginx instances (proxy -> origin) measured in the same run.
#
# A benchmark, not a test: it prints numbers and writes them to
# bench/results/invoke-<timestamp>.md; it fails only when something could not
# be started or a request failed to echo. See bench/README.md.
#
# Environment (all optional):
#   TAMAYA_BIN           tamaya binary            (default build/release/tamaya)
#   BENCH_DURATION       wrk -d per measured cell (default 10s)
#   BENCH_WARM_DURATION  wrk -d of the c=64 warm-up per target (default 3s)
#   BENCH_ROUNDS         rounds of all cells; cells report the median (default 1)
#   BENCH_KEEP_TMP=1     keep the temp dir (configs, logs, raw wrk output)
#   BENCH_TAMAYA_SET     extra tamaya settings, "key=value key2=value2"
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/bench/invoke"
NAME=invoke
DEFAULT_DURATION=10s
DEFAULT_ROUNDS=1
# shellcheck source=bench/lib/wrk_pair.sh
source "$ROOT/bench/lib/wrk_pair.sh"

start_nginx_pair

# --- tamaya
TAMAYA_PORT="$(port)"
TAMAYA="http://127.0.0.1:$TAMAYA_PORT"
"$TAMAYA_BIN" serve --data-dir "$TMP/tamaya" --admin-port "$TAMAYA_PORT" \
  --set gateway_port=0 --set log_level=warn --set drain_timeout_ms=2000 "${TAMAYA_SET_ARGS[@]}" \
  >"$TMP/tamaya.log" 2>&1 &
PIDS+=($!)
python3 "$HERE/admin.py" wait-http "$TAMAYA/v1/health" "$START_TIMEOUT_S"

# --- functions
build_echo_functions
python3 "$HERE/admin.py" deploy "$TAMAYA" native-echo provided - "$MAX_CONCURRENCY" \
  "$TMP/fn/bootstrap=bootstrap"
python3 "$HERE/admin.py" deploy "$TAMAYA" py-echo python3 app.handler "$MAX_CONCURRENCY" \
  "$TMP/fn/app.py=app.py"
python3 "$HERE/admin.py" check-echo "$TAMAYA" native-echo "$WARM_INVOKES"
python3 "$HERE/admin.py" check-echo "$TAMAYA" py-echo "$WARM_INVOKES"

declare -A URL=(
  [nginx]="$PROXY_URL"
  [native]="$TAMAYA/v1/functions/native-echo/invoke"
  [python]="$TAMAYA/v1/functions/py-echo/invoke"
)
declare -A KEY=()
TARGET_ORDER=(nginx native python)
# The admin API answers a function error with 200 and X-Tamaya-Function-Error.
WRK_SCRIPT_FLAG=count-function-errors

measure_rounds
write_report "$TAMAYA"
