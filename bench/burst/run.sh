#!/usr/bin/env bash
# bench/burst: does one function's scale-out stall the others? Function A
# (Python, each invocation sleeps 2 s) goes from zero to BURST_N instances at
# once while function B (native echo, warm) serves one request every 2 ms.
# The figure is B's p99 in the burst's first second against B's p99 in the
# second just before it (the reference, same run), median of BURST_ROUNDS
# rounds. From the second round on it also reports B's worst request in the
# second after A's last BURST_N instances are retired (a new revision of A).
# A benchmark, not a test: it fails only when something could not be
# started. Results: bench/results/burst-<timestamp>.md.
#
#   TAMAYA_BIN=build/release/tamaya [BURST_N=48] [BURST_ROUNDS=3] \
#     [BENCH_TAMAYA_SET="key=value ..."] bench/burst/run.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TAMAYA_BIN="${TAMAYA_BIN:-$ROOT/build/release/tamaya}"
N="${BURST_N:-48}"
ROUNDS="${BURST_ROUNDS:-3}"
die() { echo "bench/burst: $*" >&2; exit 1; }
[[ -x "$TAMAYA_BIN" ]] || die "no tamaya binary at $TAMAYA_BIN; build it or set TAMAYA_BIN"
[[ "$N" =~ ^[1-9][0-9]{0,2}$ && "$N" -le 200 ]] || die "BURST_N must be 1..200"
[[ "$ROUNDS" =~ ^[1-9]$ ]] || die "BURST_ROUNDS must be 1..9"
command -v cc >/dev/null || die "'cc' is not installed; run scripts/setup.sh"
SET_ARGS=()
for kv in ${BENCH_TAMAYA_SET:-}; do SET_ARGS+=(--set "$kv"); done

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
TMP="$(mktemp -d /tmp/tamaya-bench-burst.XXXXXX)"
chmod 755 "$TMP"
DAEMON_PID=""
# shellcheck source=bench/lib/procs.sh
source "$ROOT/bench/lib/procs.sh"
cleanup() {
  local rc=$?
  set +e
  # shellcheck disable=SC2086  # unset ones are left out
  stop_processes $DAEMON_PID
  if ((rc != 0)); then tail -n 20 "$TMP/tamaya.log" >&2; fi
  finish_tmp burst "$TMP" "$rc"
  exit "$rc"
}
trap cleanup EXIT

ADMIN_PORT=$(python3 "$ROOT/bench/invoke/admin.py" free-port)
ADMIN="http://127.0.0.1:$ADMIN_PORT"
"$TAMAYA_BIN" serve --data-dir "$TMP/data" --admin-port "$ADMIN_PORT" --set gateway_port=0 \
  --set log_level=warn --set drain_timeout_ms=5000 --set queue_timeout_ms=30000 \
  "${SET_ARGS[@]}" >"$TMP/tamaya.log" 2>&1 &
DAEMON_PID=$!
python3 "$ROOT/bench/invoke/admin.py" wait-http "$ADMIN/v1/health" 20
mkdir -p "$TMP/b" "$TMP/a"
cc -O2 -o "$TMP/b/bootstrap" "$ROOT/bench/invoke/echo_bootstrap.c"
python3 "$ROOT/bench/invoke/admin.py" deploy "$ADMIN" b provided - 4 "$TMP/b/bootstrap=bootstrap" >/dev/null
python3 "$ROOT/bench/invoke/admin.py" check-echo "$ADMIN" b 20 >/dev/null
cp "$ROOT/tests/integration/functions/py_sleep/app.py" "$TMP/a/app.py"
python3 "$ROOT/bench/invoke/admin.py" deploy "$ADMIN" a python3 app.handler "$N" "$TMP/a/app.py=app.py" >/dev/null
# A's timeout must cover its 2 s sleep with room for a slow start.
python3 - "$ADMIN" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/functions/a", method="PATCH",
                             data=json.dumps({"timeout_s": 30}).encode(),
                             headers={"Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=30).read()
PY

mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/burst-$STAMP.md"
{
  echo "# bench/burst $STAMP"
  echo
  echo "Command: \`BURST_N=$N BURST_ROUNDS=$ROUNDS BENCH_TAMAYA_SET=\"${BENCH_TAMAYA_SET:-}\" bench/burst/run.sh\`, load average at start $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo
} >"$OUT"
python3 "$ROOT/bench/burst/load.py" "$ADMIN_PORT" "$N" "$ROUNDS" "$OUT"
echo "bench/burst: wrote $OUT"
