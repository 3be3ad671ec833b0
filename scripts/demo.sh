#!/usr/bin/env bash
# Sets up, builds, and runs `tamaya serve` with the demo function deployed.
# Stop it with Ctrl-C (SIGINT drains and exits cleanly).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh release
bin=build/release/tamaya
port=${TAMAYA_ADMIN_PORT:-9000}
gateway_port=${TAMAYA_GATEWAY_PORT:-8080}
export TAMAYA_ENDPOINT="http://127.0.0.1:$port"

"$bin" serve --admin-port "$port" --set gateway_port="$gateway_port" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
for _ in $(seq 1 100); do
  curl -fsS "$TAMAYA_ENDPOINT/v1/health" >/dev/null 2>&1 && break
  sleep 0.1
done
"$bin" deploy hello examples/demo --runtime python3 --handler app.handler >/dev/null
"$bin" route ls 2>/dev/null | grep -q "/hello" || "$bin" route add GET /hello hello >/dev/null
cat <<MSG

The demo function 'hello' is deployed. Try:

  curl -s -X POST $TAMAYA_ENDPOINT/v1/functions/hello/invoke -d '{"name":"tamaya"}'
  curl -s 'http://127.0.0.1:$gateway_port/hello?name=gateway'       # through the API gateway
  $bin invoke hello --data '{"name":"you"}' --log-tail
  $bin ls
  $bin logs hello

Admin API: $TAMAYA_ENDPOINT/v1/functions   Gateway: http://127.0.0.1:$gateway_port/
(Ctrl-C stops the daemon)
MSG
wait $pid
