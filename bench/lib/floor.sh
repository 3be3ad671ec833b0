# bench/lib/floor.sh: the Runtime API's floor (bench/gateway/broker_floor.c)
# in front of unsandboxed instances of an echo function, for
# bench/gateway/run.sh and bench/gateway/cpu.sh. Sourced, not run; the
# caller sets ROOT and stops what FLOOR_BROKER_PID and FLOOR_INSTANCE_PIDS
# name.

# Writes to FILE the payload 2.0 event the gateway builds for the benches'
# POST (the echo function behind GATEWAY_ROUTE_URL returns it), so the
# floor's instances read, parse and send what tamaya's do.
fetch_floor_event() {  # GATEWAY_ROUTE_URL FILE
  curl -sf -X POST -H 'Content-Type: application/json' -d '{"hello":"world","n":42}' "$1" >"$2"
}

# Builds broker_floor into BUILD_DIR (once), starts it on two free ports
# handing out EVENT_FILE, then COUNT instances of COMMAND with Lambda's
# environment (handler app.handler in FN_DIR), all logging to LOG, and
# checks that it echoes. Sets FLOOR_URL, FLOOR_BROKER_PID and
# FLOOR_INSTANCE_PIDS. Returns non-zero (and says why) on failure.
start_floor() {  # BUILD_DIR EVENT_FILE COUNT FN_DIR LOG COMMAND...
  local build=$1 event=$2 count=$3 fn=$4 log=$5 public runtime i
  shift 5
  if [[ ! -x "$build/broker_floor" ]]; then
    cc -O2 -o "$build/broker_floor" "$ROOT/bench/gateway/broker_floor.c" || return 1
  fi
  public="$(python3 "$ROOT/bench/invoke/admin.py" free-port)" || return 1
  runtime="$(python3 "$ROOT/bench/invoke/admin.py" free-port)" || return 1
  "$build/broker_floor" "$public" "$runtime" "$event" >"$log" 2>&1 &
  FLOOR_BROKER_PID=$!
  FLOOR_INSTANCE_PIDS=()
  for ((i = 0; i < count; i++)); do
    (cd "$fn" && exec env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
      AWS_LAMBDA_RUNTIME_API="127.0.0.1:$runtime" _HANDLER=app.handler LAMBDA_TASK_ROOT="$fn" \
      AWS_LAMBDA_FUNCTION_NAME=floor 'AWS_LAMBDA_FUNCTION_VERSION=$LATEST' \
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE=128 "$@") >>"$log" 2>&1 &
    FLOOR_INSTANCE_PIDS+=($!)
  done
  FLOOR_URL="http://127.0.0.1:$public/echo"
  python3 "$ROOT/bench/gateway/setup.py" check "$FLOOR_URL" 5 || {
    echo "the minimal broker does not echo; see $log" >&2
    return 1
  }
}
