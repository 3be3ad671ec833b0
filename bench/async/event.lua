-- wrk script for bench/async: POSTs a small event as an async (Event)
-- invocation and counts the answers by status; prints one line
-- "BENCH_RESULT {...}" at the end for run.sh.
wrk.method = "POST"
wrk.body = '{"hello":"world","n":42}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Tamaya-Invocation-Type"] = "Event"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  accepted = 0
  refused = 0
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  else
    refused = refused + 1
  end
end

function done(summary, latency, requests)
  local a, r = 0, 0
  for _, t in ipairs(threads) do
    a = a + (t:get("accepted") or 0)
    r = r + (t:get("refused") or 0)
  end
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"accepted":%d,"refused":%d,"duration_us":%d,' ..
    '"p50_us":%d,"p99_us":%d,"err_connect":%d,"err_read":%d,"err_timeout":%d}\n',
    summary.requests, a, r, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect, summary.errors.read, summary.errors.timeout))
end
