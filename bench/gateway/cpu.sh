#!/usr/bin/env bash
# bench/gateway/cpu.sh: CPU time per request on the gateway's hot path, by
# daemon thread, for the function's instances, for wrk and for the whole
# machine, during one bounded wrk run at c=64 to POST /open. CPU time per
# request moves far less with the machine's load than throughput does, so
# A/B comparisons of two builds or settings can be made on a shared host.
#
#   TAMAYA_BIN=build/release/tamaya [FN=native|python] [C=64] [MAXC=C] [D=5] [WARM=5] \
#     [VIA=gateway|invoke|floor] [BENCH_TAMAYA_SET="key=value ..."] bench/gateway/cpu.sh
# VIA=invoke sends the same POSTs to the admin API's invoke path instead of
# the gateway's route: the function then gets the body as its event rather
# than a payload 2.0 event, and the gateway's own work drops out.
# VIA=floor measures broker_floor.c instead (the Runtime API's floor, see
# run.sh) in front of FLOOR_INSTANCES (default 8) unsandboxed instances of
# the same function, which get the event the gateway built: its "daemon
# thread" is the broker.
# MAXC is the function's max_concurrency (instances at most; requests beyond
# them wait in the daemon's queue).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN=${TAMAYA_BIN:-$ROOT/build/release/tamaya}
FN=${FN:-native}; C=${C:-64}; D=${D:-5}; WARM=${WARM:-5}; VIA=${VIA:-gateway}
[[ "$FN" == native || "$FN" == python ]] || { echo "FN must be native or python" >&2; exit 2; }
[[ "$VIA" == gateway || "$VIA" == invoke || "$VIA" == floor ]] ||
  { echo "VIA must be gateway, invoke or floor" >&2; exit 2; }
FLOOR_INSTANCES=${FLOOR_INSTANCES:-8}
[[ "$FLOOR_INSTANCES" =~ ^[1-9][0-9]?$ ]] || { echo "FLOOR_INSTANCES must be 1..99" >&2; exit 2; }
[[ "$C" =~ ^[1-9][0-9]{0,2}$ && "$D" =~ ^[1-9][0-9]?$ && "$WARM" =~ ^[1-9][0-9]?$ ]] ||
  { echo "C must be 1..999, D and WARM 1..99 (seconds)" >&2; exit 2; }
command -v wrk >/dev/null || { echo "wrk is not installed; run scripts/setup.sh" >&2; exit 1; }
SET_ARGS=()
for kv in ${BENCH_TAMAYA_SET:-}; do SET_ARGS+=(--set "$kv"); done

T=$(mktemp -d /tmp/tamaya-gateway-cpu.XXXXXX); chmod 755 "$T"
ADMIN_PORT=$(python3 "$ROOT/bench/invoke/admin.py" free-port)
GATEWAY_PORT=$(python3 "$ROOT/bench/invoke/admin.py" free-port)
ADMIN="http://127.0.0.1:$ADMIN_PORT"
URL="http://127.0.0.1:$GATEWAY_PORT/open"
[[ $VIA == invoke ]] && URL="$ADMIN/v1/functions/echo/invoke"
"$BIN" serve --data-dir "$T/d" --admin-port "$ADMIN_PORT" --set gateway_port="$GATEWAY_PORT" \
  --set gateway_access_log=access.log --set log_level=warn --set drain_timeout_ms=2000 \
  "${SET_ARGS[@]}" >"$T/log" 2>&1 &
PID=$!
FLOOR_PIDS=()
trap 'kill $PID "${FLOOR_PIDS[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
python3 "$ROOT/bench/invoke/admin.py" wait-http "$ADMIN/v1/health" 20
mkdir -p "$T/fn"
if [[ $FN == native ]]; then
  cc -O2 -o "$T/fn/bootstrap" "$ROOT/bench/invoke/echo_bootstrap.c"
  python3 "$ROOT/bench/invoke/admin.py" deploy "$ADMIN" echo provided - "${MAXC:-$C}" \
    "$T/fn/bootstrap=bootstrap" >/dev/null
else
  printf 'def handler(event, context):\n    return event\n' >"$T/fn/app.py"
  python3 "$ROOT/bench/invoke/admin.py" deploy "$ADMIN" echo python3 app.handler "${MAXC:-$C}" \
    "$T/fn/app.py=app.py" >/dev/null
fi
python3 "$ROOT/bench/gateway/setup.py" route "$ADMIN" "POST /open" echo none >/dev/null
# The processes measured: the daemon's threads, and its descendants as
# instances (direct starts are its children, Python instances the zygote's);
# with VIA=floor the broker's thread and the instances it was started with.
MEASURED=$PID
if [[ $VIA == floor ]]; then
  # shellcheck source=bench/lib/floor.sh
  source "$ROOT/bench/lib/floor.sh"
  fetch_floor_event "$URL" "$T/event.json" || { echo "no event from $URL" >&2; exit 1; }
  if [[ $FN == native ]]; then CMD=("$T/fn/bootstrap"); else
    CMD=(/usr/bin/python3 -I "$ROOT/runtimes/python/bootstrap.py"); fi
  start_floor "$T" "$T/event.json" "$FLOOR_INSTANCES" "$T/fn" "$T/floor.log" "${CMD[@]}" ||
    exit 1
  FLOOR_PIDS=("$FLOOR_BROKER_PID" "${FLOOR_INSTANCE_PIDS[@]}")
  MEASURED=$FLOOR_BROKER_PID
  URL="$FLOOR_URL"
fi
# Warm-up: every instance the concurrency needs is started before measuring.
wrk -t1 -c"$C" -d"${WARM}s" -s "$ROOT/bench/lib/post.lua" "$URL" >/dev/null

ticks() { awk '{print $14 + $15}' "$1"; }  # utime + stime, in clock ticks
threads() { for t in /proc/$MEASURED/task/*; do echo "$(basename "$t")-$(cat "$t/comm") $(ticks "$t/stat")"; done | sort; }
descendants() { local p; for p in $(pgrep -P "$1"); do echo "$p"; descendants "$p"; done; }
instance_pids() {
  if [[ $VIA == floor ]]; then printf '%s\n' "${FLOOR_INSTANCE_PIDS[@]}"; else descendants $PID; fi
}
instances() { for p in $(instance_pids); do ticks "/proc/$p/stat" 2>/dev/null; done | awk '{s += $1} END {print s + 0}'; }
# Busy counts interrupt and softirq time too: on loopback the receiver's
# packet processing runs as softirq in the sender's context. Time the
# hypervisor took (steal) is neither; it is shown apart.
machine() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8, $5 + $6, $9}' /proc/stat; }
HZ=$(getconf CLK_TCK)

threads >"$T/t0"; I0=$(instances); read -r B0 IDLE0 STEAL0 < <(machine)
/usr/bin/time -f "%U %S" -o "$T/wrk_time" \
  wrk -t1 -c"$C" -d"${D}s" -s "$ROOT/bench/lib/post.lua" "$URL" >"$T/wrk"
# The machine first: walking the instances takes a while, and the machine's
# figures are wall-clock shares, so they must end with wrk's run.
read -r B1 IDLE1 STEAL1 < <(machine); threads >"$T/t1"; I1=$(instances)

REQ=$(grep -o '[0-9]* requests in' "$T/wrk" | awk '{print $1}')
[[ -n "$REQ" && "$REQ" -gt 0 ]] || { echo "wrk made no requests" >&2; cat "$T/wrk" >&2; exit 1; }
per() { awk -v t="$1" -v r="$REQ" -v hz="$HZ" 'BEGIN {printf "%.1f", t * 1e6 / hz / r}'; }
echo "function=$FN via=$VIA c=$C duration=${D}s requests=$REQ $(grep Requests/sec "$T/wrk" | tr -s ' ') load=$(cut -d' ' -f1-3 /proc/loadavg)"
echo "CPU per request (µs):"
join "$T/t0" "$T/t1" | while read -r name a b; do
  if ((b > a)); then echo "  daemon thread ${name#*-} (tid ${name%%-*}): $(per $((b - a)))"; fi
done
echo "  instances and zygotes ($(instance_pids | wc -l) processes): $(per $((I1 - I0)))"
read -r wu ws <"$T/wrk_time"
echo "  wrk: $(awk -v u="$wu" -v s="$ws" -v r="$REQ" 'BEGIN {printf "%.1f", (u + s) * 1e6 / r}')"
echo "  machine busy: $(per $((B1 - B0))), idle: $(per $((IDLE1 - IDLE0))), stolen: $(per $((STEAL1 - STEAL0)))"
