#!/usr/bin/env bash
# bench/gateway/keyed_cpu.sh: what the API key and rate limits cost, as the
# daemon main thread's CPU per request on the open and the keyed route (same
# native echo), alternating three times in one daemon at c=64. Steadier than
# run.sh's throughput cells, whose order moves that figure.
#   TAMAYA_BIN=build/release/tamaya bench/gateway/keyed_cpu.sh
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN=${TAMAYA_BIN:-$ROOT/build/release/tamaya}
command -v wrk >/dev/null || { echo "wrk is not installed; run scripts/setup.sh" >&2; exit 1; }
T=$(mktemp -d /tmp/keyed.XXXXXX); chmod 755 $T
AP=$(python3 $ROOT/bench/invoke/admin.py free-port); GP=$(python3 $ROOT/bench/invoke/admin.py free-port)
$BIN serve --data-dir $T/d --admin-port $AP --set gateway_port=$GP --set gateway_access_log=access.log --set log_level=warn > $T/log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf $T' EXIT
A=http://127.0.0.1:$AP
python3 $ROOT/bench/invoke/admin.py wait-http $A/v1/health 20
mkdir -p $T/fn; cc -O2 -o $T/fn/bootstrap $ROOT/bench/invoke/echo_bootstrap.c
python3 $ROOT/bench/invoke/admin.py deploy $A echo provided - 64 $T/fn/bootstrap=bootstrap >/dev/null
python3 $ROOT/bench/gateway/setup.py route $A "POST /open" echo none >/dev/null
python3 $ROOT/bench/gateway/setup.py route $A "POST /keyed" echo api_key 1000000 1000000 >/dev/null
KEY=$(python3 $ROOT/bench/gateway/setup.py key $A 1000000 1000000 1000000000)
G=http://127.0.0.1:$GP
wrk -t1 -c64 -d4s -s $ROOT/bench/lib/post.lua $G/open >/dev/null
wrk -t1 -c64 -d4s -s $ROOT/bench/lib/post.lua $G/keyed -- $KEY >/dev/null
main() { awk '{print $14+$15}' /proc/$PID/task/$PID/stat; }
for r in 1 2 3; do
  for route in open keyed; do
    k=""; [[ $route == keyed ]] && k=$KEY
    c0=$(main)
    n=$(wrk -t1 -c64 -d4s -s $ROOT/bench/lib/post.lua $G/$route -- $k | grep -o '[0-9]* requests in' | awk '{print $1}')
    c1=$(main)
    echo "$route: $n requests, main thread $(awk -v a="$c0" -v b="$c1" -v n="$n" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.1f", (b-a)*1e6/hz/n}') us per request"
  done
done
