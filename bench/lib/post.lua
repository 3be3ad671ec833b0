-- wrk script for bench/invoke and bench/gateway: POSTs a small JSON event and,
-- at the end, prints one machine-readable line ("BENCH_RESULT {...}") that
-- the summarize.py scripts read, so nothing depends on wrk's human-readable
-- layout.
--
-- Script arguments (`wrk ... -s post.lua URL -- KEY COUNT`):
--   KEY    sent as x-api-key when not empty (the gateway's keyed route);
--   COUNT  "count-function-errors" counts answers carrying
--          X-Tamaya-Function-Error: the admin API answers a function error
--          with HTTP 200 (as Lambda does), which wrk would count as a success.
--          Off otherwise, because a response() callback makes wrk parse every
--          header, which costs the client CPU the machine's two cores share.

wrk.method = "POST"
wrk.body = '{"hello":"world","n":42}'
wrk.headers["Content-Type"] = "application/json"

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  if args[1] ~= nil and args[1] ~= "" then
    wrk.headers["x-api-key"] = args[1]
  end
  function_errors = 0
  -- wrk asks whether response() exists after init(): defined here, only when asked for.
  if args[2] == "count-function-errors" then
    response = function(status, headers, body)
      if headers["X-Tamaya-Function-Error"] ~= nil or headers["x-tamaya-function-error"] ~= nil then
        function_errors = function_errors + 1
      end
    end
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
