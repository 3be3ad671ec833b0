# bench/lib/wrk_pair.sh: what bench/invoke and bench/gateway share — argument
# checks, the temp dir and its cleanup, the nginx proxy → origin reference,
# wrk runs with a hard bound, rounds of interleaved cells and the report's
# metadata. Sourced by those scripts, not run.
#
# Before sourcing, the caller sets NAME (the bench's folder name), ROOT, and
# the defaults it wants for BENCH_DURATION / BENCH_ROUNDS (DEFAULT_DURATION,
# DEFAULT_ROUNDS). After starting its servers it sets URL, KEY and
# WRK_EXTRA_ARGS (associative arrays by target, KEY optional) and
# TARGET_ORDER, then calls measure_rounds and write_report.

TAMAYA_BIN="${TAMAYA_BIN:-$ROOT/build/release/tamaya}"
DURATION="${BENCH_DURATION:-$DEFAULT_DURATION}"
WARM_DURATION="${BENCH_WARM_DURATION:-3s}"
ROUNDS="${BENCH_ROUNDS:-$DEFAULT_ROUNDS}"
LIB="$ROOT/bench/lib"
# 64 concurrent connections and as many instances: enough to saturate two
# cores without the daemon's per-function queue (100) turning requests away.
# BENCH_MAX_CONCURRENCY caps the functions lower: what beyond it waits in
# that queue for a free instance (fewer processes on the same cores).
C_HIGH=64
MAX_CONCURRENCY="${BENCH_MAX_CONCURRENCY:-64}"
# wrk's own per-request timeout; a slower answer counts as an error.
WRK_TIMEOUT=5s
# Hard bound on any single wrk run beyond its -d, in case it hangs.
WRK_GRACE_S=30
START_TIMEOUT_S=20
WARM_INVOKES=5
# Server logs shown when the run fails (the caller may add its own).
FAILURE_LOGS=()
# BENCH_TAMAYA_SET="k=v k2=v2" as `tamaya serve` arguments.
TAMAYA_SET_ARGS=()
for kv in ${BENCH_TAMAYA_SET:-}; do TAMAYA_SET_ARGS+=(--set "$kv"); done

die() { echo "bench/$NAME: $*" >&2; exit 1; }

for tool in nginx wrk cc python3 timeout; do
  command -v "$tool" >/dev/null || die "'$tool' is not installed; run scripts/setup.sh"
done
[[ -x "$TAMAYA_BIN" ]] || die "no tamaya binary at $TAMAYA_BIN; build it or set TAMAYA_BIN"
[[ "$ROUNDS" =~ ^[1-9][0-9]?$ ]] || die "BENCH_ROUNDS must be 1..99, got '$ROUNDS'"
[[ "$MAX_CONCURRENCY" =~ ^[1-9][0-9]?$ ]] && ((MAX_CONCURRENCY <= C_HIGH)) ||
  die "BENCH_MAX_CONCURRENCY must be 1..$C_HIGH, got '$MAX_CONCURRENCY'"
for d in "$DURATION" "$WARM_DURATION"; do
  [[ "$d" =~ ^[1-9][0-9]*s$ ]] || die "durations are whole seconds like 10s, got '$d'"
done
duration_s() { echo "${1%s}"; }

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
# How this run was started, for the report: the settings that change it.
COMMAND="bench/$NAME/run.sh"
for v in BENCH_ROUNDS BENCH_WARM_DURATION BENCH_DURATION TAMAYA_BIN BENCH_TAMAYA_SET \
  BENCH_MAX_CONCURRENCY; do
  if [[ -n "${!v:-}" ]]; then COMMAND="$v='${!v}' $COMMAND"; fi
done

TMP="$(mktemp -d "/tmp/tamaya-bench-$NAME.XXXXXX")"
# Instances may run under their own uid: they must be able to reach the
# code below the data dir.
chmod 755 "$TMP"
PIDS=()

# shellcheck source=bench/lib/procs.sh
source "$ROOT/bench/lib/procs.sh"

cleanup() {
  local rc=$?
  set +e
  # Newest first: tamaya before the nginx pair it does not depend on.
  local newest_first=()
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do newest_first+=("${PIDS[i]}"); done
  stop_processes "${newest_first[@]}"
  if ((rc != 0)); then
    echo "bench/$NAME: failed; last lines of the server logs:" >&2
    for f in "$TMP"/tamaya.log "${FAILURE_LOGS[@]}" "$TMP"/origin/error.log "$TMP"/proxy/error.log; do
      [[ -s "$f" ]] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
  fi
  finish_tmp "$NAME" "$TMP" "$rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { python3 "$ROOT/bench/invoke/admin.py" free-port; }

# --- nginx: origin answers a fixed body, proxy forwards with upstream keepalive.
# shellcheck source=bench/lib/nginx.sh
source "$ROOT/bench/lib/nginx.sh"

# Writes DIR/nginx.conf for the reference proxy: one worker forwarding to
# ORIGIN_PORT with upstream keep-alive, listening on PROXY_PORT.
write_proxy_conf() {  # DIR ORIGIN_PORT PROXY_PORT
  write_nginx_conf "$1" "
  upstream origin {
    server 127.0.0.1:$2;
    keepalive 128;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$3;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
}

# Starts the pair and waits for it; sets PROXY_URL (the reference's /echo).
start_nginx_pair() {
  local origin_port proxy_port
  origin_port="$(port)"
  proxy_port="$(port)"
  write_nginx_conf "$TMP/origin" "
  server {
    listen 127.0.0.1:$origin_port;
    location / { default_type application/json; return 200 '{\"ok\":true}'; }
  }"
  write_proxy_conf "$TMP/proxy" "$origin_port" "$proxy_port"
  for side in origin proxy; do
    start_nginx "$TMP/$side"
    PIDS+=($!)
  done
  PROXY_URL="http://127.0.0.1:$proxy_port/echo"
  python3 "$ROOT/bench/invoke/admin.py" wait-http "http://127.0.0.1:$origin_port/echo" \
    "$START_TIMEOUT_S"
  python3 "$ROOT/bench/invoke/admin.py" wait-http "$PROXY_URL" "$START_TIMEOUT_S"
}

# The echo functions both benches deploy: a C Runtime API client and a Python
# handler, in $TMP/fn.
build_echo_functions() {
  mkdir -p "$TMP/fn"
  cc -O2 -o "$TMP/fn/bootstrap" "$ROOT/bench/invoke/echo_bootstrap.c"
  printf 'def handler(event, context):\n    return event\n' >"$TMP/fn/app.py"
}

run_wrk() {  # target c duration out-file
  local threads=2 extra=()
  if (($2 == 1)); then threads=1; extra=(--latency); fi
  timeout "$(($(duration_s "$3") + WRK_GRACE_S))" \
    wrk -t"$threads" -c"$2" -d"$3" --timeout "$WRK_TIMEOUT" "${extra[@]}" \
    -s "$LIB/post.lua" "${URL[$1]}" -- "${KEY[$1]:-}" "${WRK_SCRIPT_FLAG:-}" >"$4" 2>&1 ||
    die "wrk against $1 at c=$2 failed: $(tail -n 5 "$4")"
}

# Warms every target, then runs the cells (c=64 and c=1 per target) in rounds,
# interleaved so that drift in machine load hits every target alike. Results:
# $TMP/results.jsonl, one line per wrk run.
measure_rounds() {
  # Warm-up: start every instance c=64 will use, so no cold start is measured.
  echo "warming up (${WARM_DURATION} at c=$C_HIGH per target)…" >&2
  for t in "${TARGET_ORDER[@]}"; do
    run_wrk "$t" "$C_HIGH" "$WARM_DURATION" "$TMP/warm-$t.txt"
  done
  RESULTS="$TMP/results.jsonl"
  : >"$RESULTS"
  local round c t out line
  for round in $(seq "$ROUNDS"); do
    for c in "$C_HIGH" 1; do
      for t in "${TARGET_ORDER[@]}"; do
        echo "round $round/$ROUNDS: $t c=$c ($DURATION)…" >&2
        out="$TMP/wrk-$round-$t-$c.txt"
        run_wrk "$t" "$c" "$DURATION" "$out"
        line="$(grep '^BENCH_RESULT ' "$out" | tail -n 1)" ||
          die "wrk against $t at c=$c printed no result: $(tail -n 5 "$out")"
        python3 -c 'import json,sys
r = json.loads(sys.argv[1]); r.update(target=sys.argv[2], c=int(sys.argv[3]), round=int(sys.argv[4]))
print(json.dumps(r))' "${line#BENCH_RESULT }" "$t" "$c" "$round" >>"$RESULTS"
      done
    done
  done
}

# Writes the run's metadata and has bench/$NAME/summarize.py print the table
# and write bench/results/$NAME-<stamp>.md. $1: the daemon's admin URL.
write_report() {
  mkdir -p "$ROOT/bench/results"
  local out="$ROOT/bench/results/$NAME-$STAMP.md"
  python3 - "$TMP/meta.json" "$1" <<PY
import json, os, subprocess, sys, urllib.request
def run(*cmd):
    # wrk -v exits non-zero after printing its version: keep whatever it said.
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd="$ROOT")
        lines = (p.stdout + p.stderr).strip().splitlines()
        return lines[0] if lines else "?"
    except Exception:
        return "?"
try:
    with urllib.request.urlopen(sys.argv[2] + "/v1/health", timeout=10) as r:
        version = json.load(r).get("version", "?")
except Exception:
    version = "?"
json.dump({
    "started": "$STAMP", "host": os.uname().nodename, "cpus": os.cpu_count(),
    "loadavg": "$LOADAVG_START",
    "duration": "$DURATION", "rounds": $ROUNDS, "c_high": $C_HIGH,
    "tamaya_version": version, "tamaya_bin": "$TAMAYA_BIN",
    "nginx_version": run("nginx", "-v"), "wrk_version": run("wrk", "-v").split(" Copyright")[0],
    "git": run("git", "rev-parse", "--short", "HEAD"),
    "command": "$COMMAND",
}, open(sys.argv[1], "w"))
PY
  echo
  python3 "$ROOT/bench/$NAME/summarize.py" "$RESULTS" "$TMP/meta.json" "$out"
  echo
  echo "written to ${out#"$ROOT"/}"
}
