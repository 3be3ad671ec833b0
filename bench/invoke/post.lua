-- wrk script for bench/invoke: POSTs a small JSON event and, at the end,
-- prints one machine-readable line ("BENCH_RESULT {...}") that
-- summarize.py reads, so nothing depends on wrk's human-readable layout.
--
-- Function errors come back as HTTP 200 (as in Lambda) with
-- X-Tamaya-Function-Error; wrk would count them as successes, so they are
-- counted here and reported next to wrk's own error counts.

wrk.method = "POST"
wrk.body = '{"hello":"world","n":42}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  function_errors = 0
  responses = 0
end

function response(status, headers, body)
  responses = responses + 1
  if headers["X-Tamaya-Function-Error"] ~= nil or headers["x-tamaya-function-error"] ~= nil then
    function_errors = function_errors + 1
  end
end

function done(summary, latency, requests)
  local fn_errors = 0
  for _, t in ipairs(threads) do
    fn_errors = fn_errors + (t:get("function_errors") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"max_us":%d,"mean_us":%.1f,"err_connect":%d,"err_read":%d,"err_write":%d,' ..
    '"err_status":%d,"err_timeout":%d,"function_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status,
    e.timeout, fn_errors))
end
