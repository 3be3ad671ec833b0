#!/usr/bin/env bash
# bench/async: async (Event) invocations — how many events per second the
# daemon accepts with an fsync before each 202 (group commit), and how fast
# the queue then delivers them to a warm Python function.
#
# Phase 1: delivery paused (events_delivery_concurrency=0), wrk posts Event
#          invokes to the admin API for BENCH_DURATION: accepted/s.
# Phase 2: SIGTERM, restart on the same data dir with delivery on: the time
#          until the queue is empty gives deliveries/s (it also shows that
#          what was accepted survived the restart).
#
# A benchmark, not a test: prints the figures and writes them to
# bench/results/async-<timestamp>.md. Environment (optional):
#   TAMAYA_BIN        tamaya binary (default build/release/tamaya)
#   BENCH_DURATION    wrk -d of the accept phase (default 5s)
#   BENCH_CONNECTIONS wrk -c (default 64)
#   BENCH_DELIVERY_CONCURRENCY  events_delivery_concurrency and the function's
#                     max_concurrency in phase 2 (default 16)
#   BENCH_DATA_PARENT where the data dir is made (default build/, a real disk)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/bench/async"
TAMAYA_BIN="${TAMAYA_BIN:-$ROOT/build/release/tamaya}"
DURATION="${BENCH_DURATION:-5s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
DELIVERY="${BENCH_DELIVERY_CONCURRENCY:-16}"
START_TIMEOUT_S=20
DRAIN_TIMEOUT_S=600  # bound of phase 2

die() { echo "bench/async: $*" >&2; exit 1; }
for tool in wrk python3 curl timeout; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed; run scripts/setup.sh"
done
[[ -x "$TAMAYA_BIN" ]] || die "no tamaya binary at $TAMAYA_BIN; build it or set TAMAYA_BIN"
[[ "$DURATION" =~ ^[1-9][0-9]*s$ ]] || die "BENCH_DURATION is whole seconds like 5s"

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
COMMAND="bench/async/run.sh"
for v in BENCH_DURATION BENCH_CONNECTIONS BENCH_DELIVERY_CONCURRENCY TAMAYA_BIN; do
  if [[ -n "${!v:-}" ]]; then COMMAND="$v=${!v} $COMMAND"; fi
done
# On disk, not /tmp: /tmp is often tmpfs, where fsync costs nothing and the
# figure would mean nothing.
DATA_PARENT="${BENCH_DATA_PARENT:-$ROOT/build}"
mkdir -p "$DATA_PARENT"
TMP="$(mktemp -d "$DATA_PARENT/tamaya-bench-async.XXXXXX")"
chmod 755 "$TMP"
PID=""
# shellcheck source=bench/lib/procs.sh
source "$ROOT/bench/lib/procs.sh"
cleanup() {
  local rc=$?
  set +e
  # shellcheck disable=SC2086  # unset, it is left out
  stop_processes $PID
  if ((rc != 0)); then tail -n 30 "$TMP"/tamaya-*.log >&2; fi
  finish_tmp async "$TMP" "$rc"
}
trap cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"

start() {  # $1 = log name, rest = --set values
  local log="$TMP/tamaya-$1.log"; shift
  local sets=()
  for kv in "$@"; do sets+=(--set "$kv"); done
  "$TAMAYA_BIN" serve --data-dir "$TMP/data" --admin-port "$PORT" --set gateway_port=0 \
    --set log_level=warn --set events_max_queue_depth=2000000 \
    --set events_max_queued_bytes=2000000000 "${sets[@]}" >"$log" 2>&1 &
  PID=$!
  for _ in $(seq $((START_TIMEOUT_S * 10))); do
    curl -fs "$BASE/v1/health" >/dev/null 2>&1 && return 0
    kill -0 "$PID" 2>/dev/null || die "tamaya exited at start"
    sleep 0.1
  done
  die "tamaya did not answer /v1/health within ${START_TIMEOUT_S}s"
}
stop() {
  kill -TERM "$PID"
  for _ in $(seq 300); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
  wait "$PID" 2>/dev/null || true
  PID=""
}
stat() { curl -fs "$BASE/v1/events/stats" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }

# Phase 1: accept only.
start accept events_delivery_concurrency=0
mkdir -p "$TMP/fn"
printf 'def handler(event, context):\n    return {"ok": True}\n' >"$TMP/fn/app.py"
ZIP_B64="$(cd "$TMP/fn" && python3 -c 'import base64,io,zipfile; b=io.BytesIO(); z=zipfile.ZipFile(b,"w"); z.write("app.py"); z.close(); print(base64.b64encode(b.getvalue()).decode())')"
curl -fs -X POST "$BASE/v1/functions" -H 'Content-Type: application/json' \
  -d "{\"name\":\"sink\",\"runtime\":\"python3\",\"handler\":\"app.handler\",\"max_concurrency\":$DELIVERY,\"code\":{\"zip_base64\":\"$ZIP_B64\"}}" >/dev/null \
  || die "deploy failed"
timeout $(( ${DURATION%s} + 30 )) wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --timeout 5s \
  -s "$HERE/event.lua" "$BASE/v1/functions/sink/invoke" >"$TMP/wrk.txt"
RESULT="$(grep '^BENCH_RESULT ' "$TMP/wrk.txt" | sed 's/^BENCH_RESULT //')"
[[ -n "$RESULT" ]] || die "wrk printed no result"
ACCEPTED_STAT="$(stat accepted)"
COMMITS="$(stat commits)"
DEPTH="$(stat queue_depth)"
stop

# Phase 2: deliver everything accepted, after a restart.
T0="$(date +%s.%N)"
start deliver events_delivery_concurrency="$DELIVERY"
deadline=$(( $(date +%s) + DRAIN_TIMEOUT_S ))
while :; do
  left="$(stat queue_depth)"
  [[ "$left" == 0 ]] && break
  (( $(date +%s) < deadline )) || die "queue not empty after ${DRAIN_TIMEOUT_S}s ($left left)"
  sleep 0.2
done
T1="$(date +%s.%N)"
SUCCEEDED="$(stat succeeded)"
stop

REPORT="$(python3 - "$RESULT" "$ACCEPTED_STAT" "$COMMITS" "$DEPTH" "$T0" "$T1" "$SUCCEEDED" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); accepted_stat, commits, depth = map(int, sys.argv[2:5])
t0, t1 = float(sys.argv[5]), float(sys.argv[6]); succeeded = int(sys.argv[7])
secs = r["duration_us"] / 1e6
print(f"accepted {r['accepted']} events in {secs:.1f} s = {r['accepted']/secs:.0f}/s "
      f"(refused {r['refused']}, socket errors {r['err_connect']+r['err_read']+r['err_timeout']}); "
      f"202 latency p50 {r['p50_us']/1000:.2f} ms p99 {r['p99_us']/1000:.2f} ms")
print(f"queue: {accepted_stat} accepted by the daemon, {depth} queued at the stop, "
      f"{commits} commits = {accepted_stat/max(commits,1):.1f} events per fsync")
print(f"delivered {succeeded} after the restart in {t1-t0:.1f} s (incl. start) = "
      f"{succeeded/(t1-t0):.0f}/s")
PY
)"
echo "$REPORT"
mkdir -p "$ROOT/bench/results"
{
  echo "# bench/async $STAMP"
  echo
  echo "command: \`$COMMAND\` (wrk -t2 -c$CONNECTIONS -d$DURATION; delivery concurrency $DELIVERY)"
  echo "host: $(nproc) cores, data dir on $(df -T "$DATA_PARENT" | awk 'NR==2{print $2}'), load at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "$REPORT" | sed 's/^/- /'
} >"$ROOT/bench/results/async-$STAMP.md"
echo "bench/async: wrote bench/results/async-$STAMP.md"
