#!/usr/bin/env bash
# bench/gateway/c1.sh: the c=1 p50 of the native echo behind the gateway, for
# an A/B of two binaries run alternately (bench/gateway/run.sh's c=1 cell,
# without nginx and the other cells).
#   bench/gateway/c1.sh path/to/tamaya
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN=${1:?usage: bench/gateway/c1.sh path/to/tamaya}
T=$(mktemp -d /tmp/c1.XXXXXX); chmod 755 $T
AP=$(python3 $ROOT/bench/invoke/admin.py free-port); GP=$(python3 $ROOT/bench/invoke/admin.py free-port)
$BIN serve --data-dir $T/d --admin-port $AP --set gateway_port=$GP --set gateway_access_log=access.log --set log_level=warn > $T/log 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf $T' EXIT
python3 $ROOT/bench/invoke/admin.py wait-http http://127.0.0.1:$AP/v1/health 20
mkdir -p $T/fn; cc -O2 -o $T/fn/bootstrap $ROOT/bench/invoke/echo_bootstrap.c
python3 $ROOT/bench/invoke/admin.py deploy http://127.0.0.1:$AP echo provided - 4 $T/fn/bootstrap=bootstrap >/dev/null
python3 $ROOT/bench/gateway/setup.py route http://127.0.0.1:$AP "POST /open" echo none >/dev/null
wrk -t1 -c1 -d2s -s $ROOT/bench/lib/post.lua http://127.0.0.1:$GP/open >/dev/null
wrk -t1 -c1 -d4s --latency -s $ROOT/bench/lib/post.lua http://127.0.0.1:$GP/open | grep -E "^ +50%|Requests/sec"
