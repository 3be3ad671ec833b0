#!/usr/bin/env python3
"""Gateway steps of bench/gateway/run.sh: routes, an API key, echo checks.
Standard library only; talks to 127.0.0.1 only.

  setup.py route ADMIN ROUTE_KEY TARGET AUTH [RATE BURST]   prints the route id
  setup.py key ADMIN RATE BURST DAILY_QUOTA                 prints the plain key
  setup.py check GATEWAY_URL COUNT [API_KEY]                the route echoes the body
"""

import json
import sys
import urllib.error
import urllib.request

REQUEST_TIMEOUT_S = 30


def fail(message):
    print(f"setup.py: {message}", file=sys.stderr)
    sys.exit(1)


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        fail(f"{method} {url} failed: {getattr(e, 'reason', e)}")


def post_json(url, doc):
    status, answer = request("POST", url, json.dumps(doc).encode(),
                             {"Content-Type": "application/json"})
    if status != 201:
        fail(f"POST {url} answered {status}: {answer[:500]!r}")
    return json.loads(answer)


def route(admin, route_key, target, auth, rate=None, burst=None):
    spec = {"route_key": route_key, "target": target, "auth": auth}
    if rate is not None:
        spec["rate_limit"] = {"rate": float(rate), "burst": int(burst)}
    print(post_json(f"{admin}/v1/routes", spec)["id"])


def key(admin, rate, burst, quota):
    doc = post_json(f"{admin}/v1/keys", {"name": "bench", "rate": float(rate),
                                         "burst": int(burst), "daily_quota": int(quota)})
    print(doc["key"])


def check(url, count, api_key=None):
    body = {"hello": "world", "n": 42}
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["x-api-key"] = api_key
    for i in range(int(count)):
        status, answer = request("POST", url, json.dumps(body).encode(), headers)
        if status != 200:
            fail(f"request {i + 1} to {url} answered {status}: {answer[:300]!r}")
        try:
            event = json.loads(answer)
        except ValueError:
            fail(f"{url} answered a body that is not JSON: {answer[:200]!r}")
        # The echo function returns the gateway's event: its body is ours.
        if json.loads(event.get("body") or "null") != body:
            fail(f"{url} did not pass the body through: {answer[:300]!r}")


def main(argv):
    cmd, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    if cmd == "route" and len(args) in (4, 6):
        route(*args)
    elif cmd == "key" and len(args) == 4:
        key(*args)
    elif cmd == "check" and len(args) in (2, 3):
        check(*args)
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv)
