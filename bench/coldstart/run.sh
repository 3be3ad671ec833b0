#!/usr/bin/env bash
# bench/coldstart: request-to-response time of an invoke that starts a new
# sandboxed instance (Python with the zygote on and off, Node.js, provided),
# next to `python3 -I -S -c pass`, `node -e 0` and fork+exec of /bin/true
# measured in the same run; the p50 ratios against issue 3's goals; the
# sandbox creation rate (bench_sandbox, when built); and the PSS of N idle
# warm Python instances.
#
# A benchmark, not a test: it prints numbers and writes them to
# bench/results/coldstart-<timestamp>.md. Run as root (the sandbox's layers).
#
# Environment (all optional):
#   TAMAYA_BIN       tamaya binary                    (default build/release/tamaya)
#   BENCH_SAMPLES    cold starts per row               (default 150: see bench/README.md)
#   BENCH_IDLE       idle warm Python instances to hold (default 200; 0 skips; 1000 for issue 3's goal)
#   BENCH_IDLE_TIMEOUT  seconds allowed for them all to be ready (default 900)
#   BENCH_GAP_MS     quiet spell before each cold start of the "apart" rows (default 300)
#   BENCH_SANDBOX    bench_sandbox binary, for the creation rate (skipped when absent)
#   BENCH_TAMAYA_SET extra tamaya settings, "key=value key2=value2" (e.g. runtimes_dir=…)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/bench/coldstart"
TAMAYA_BIN="${TAMAYA_BIN:-$ROOT/build/release/tamaya}"
SAMPLES="${BENCH_SAMPLES:-150}"
IDLE="${BENCH_IDLE:-200}"
IDLE_TIMEOUT="${BENCH_IDLE_TIMEOUT:-900}"
BENCH_SANDBOX="${BENCH_SANDBOX:-$(dirname "$TAMAYA_BIN")/bench/sandbox/bench_sandbox}"

die() { echo "bench/coldstart: $*" >&2; exit 1; }
for tool in cc python3 node timeout; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed; run scripts/setup.sh"
done
[[ -x "$TAMAYA_BIN" ]] || die "no tamaya binary at $TAMAYA_BIN; build it or set TAMAYA_BIN"
[[ "$SAMPLES" =~ ^[1-9][0-9]{0,3}$ ]] || die "BENCH_SAMPLES must be 1..9999, got '$SAMPLES'"
[[ "$IDLE" =~ ^[0-9]{1,4}$ ]] || die "BENCH_IDLE must be 0..9999, got '$IDLE'"
[[ "$IDLE_TIMEOUT" =~ ^[1-9][0-9]{0,3}$ ]] || die "BENCH_IDLE_TIMEOUT must be 1..9999 s, got '$IDLE_TIMEOUT'"

COMMAND="bench/coldstart/run.sh"
for v in BENCH_IDLE BENCH_SAMPLES BENCH_GAP_MS TAMAYA_BIN BENCH_TAMAYA_SET; do
  if [[ -n "${!v:-}" ]]; then COMMAND="$v=${!v} $COMMAND"; fi
done
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
TMP="$(mktemp -d /tmp/tamaya-bench-coldstart.XXXXXX)"
# Instances run under their own uids: they must reach the data dir below.
chmod 755 "$TMP"
# shellcheck source=bench/lib/procs.sh
source "$ROOT/bench/lib/procs.sh"
trap 'finish_tmp coldstart "$TMP" "$?"' EXIT

cc -O2 -o "$TMP/spawn_time" "$HERE/spawn_time.c"
cc -O2 -o "$TMP/echo_bootstrap" "$ROOT/bench/invoke/echo_bootstrap.c"
mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/coldstart-$STAMP.md"
# Bounded: samples × rows of cold starts and the idle fill, each invoke at most 30 s.
timeout $((1800 + IDLE_TIMEOUT)) python3 "$HERE/coldstart.py" --bin "$TAMAYA_BIN" --spawn-time "$TMP/spawn_time" \
  --native-bootstrap "$TMP/echo_bootstrap" --tmp "$TMP" --samples "$SAMPLES" --idle "$IDLE" \
  --idle-timeout "$IDLE_TIMEOUT" \
  --out "$OUT" --command "$COMMAND"

if [[ -x "$BENCH_SANDBOX" ]]; then
  # Serial latency (one sandbox at a time, to its exit) and the creation rate
  # with 1 and with one launching thread per CPU.
  timeout 600 "$BENCH_SANDBOX" 200 | tee -a "$OUT"
else
  echo "(bench_sandbox not built: no sandbox creation rate; ninja bench_sandbox)" | tee -a "$OUT"
fi
echo "bench/coldstart: wrote $OUT"
