#!/usr/bin/env bash
# bench/gateway/profile.sh: where the daemon spends its time on the gateway's
# hot path. perf samples the daemon (cpu-clock: hardware counters are not
# available on the VMs this runs on) while a fixed count of requests goes
# through POST /open to the native echo. Prints the profile directory
# (perf.data, flat.txt); read more with `perf report -i DIR/perf.data`.
#   TAMAYA_BIN=build/<you>/tamaya N=3000 bench/gateway/profile.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"; BIN=${TAMAYA_BIN:-$ROOT/build/release/tamaya}; N=${N:-3000}
T=$(mktemp -d /tmp/tamaya-gateway-profile.XXXXXX); chmod 755 $T
AP=$(python3 $ROOT/bench/invoke/admin.py free-port); GP=$(python3 $ROOT/bench/invoke/admin.py free-port)
$BIN serve --data-dir $T/d --admin-port $AP --set gateway_port=$GP --set gateway_access_log=access.log --set log_level=warn --set drain_timeout_ms=2000 > $T/log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null' EXIT
python3 $ROOT/bench/invoke/admin.py wait-http http://127.0.0.1:$AP/v1/health 20
mkdir -p $T/fn; cc -O2 -o $T/fn/bootstrap $ROOT/bench/invoke/echo_bootstrap.c
python3 $ROOT/bench/invoke/admin.py deploy http://127.0.0.1:$AP native-echo provided - 4 $T/fn/bootstrap=bootstrap
python3 $ROOT/bench/gateway/setup.py route http://127.0.0.1:$AP "POST /open" native-echo none >/dev/null
python3 $ROOT/bench/gateway/load.py 127.0.0.1 $GP /open 200
perf record -e cpu-clock -F 2000 -g -p $PID -o $T/perf.data -- sleep 1000 > /dev/null 2>&1 &
PERF=$!
sleep 1
python3 $ROOT/bench/gateway/load.py 127.0.0.1 $GP /open $N
kill -INT $PERF; wait $PERF || true
perf report -i $T/perf.data --no-children --sort symbol --stdio -g none 2>/dev/null | grep -v "^#" | grep "%" | head -40 > $T/flat.txt
echo $T
