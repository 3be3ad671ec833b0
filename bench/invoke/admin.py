#!/usr/bin/env python3
"""Admin-API steps of bench/invoke/run.sh: wait for a port, deploy a function,
check that it echoes. Standard library only; talks to 127.0.0.1 only.

  admin.py free-port
  admin.py wait-http URL TIMEOUT_S
  admin.py deploy ENDPOINT NAME RUNTIME HANDLER|- MAX_CONCURRENCY FILE[=ARCNAME]...
  admin.py check-echo ENDPOINT NAME COUNT
"""

import base64
import io
import json
import socket
import sys
import time
import urllib.error
import urllib.request
import zipfile

# Every request here is a control step, not load: a short bound is plenty and
# keeps a hung daemon from hanging the benchmark.
REQUEST_TIMEOUT_S = 30


def fail(message):
    print(f"admin.py: {message}", file=sys.stderr)
    sys.exit(1)


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except (urllib.error.URLError, OSError) as e:
        fail(f"{method} {url} failed: {getattr(e, 'reason', e)}; see the server's log below")


def free_port():
    # The kernel picks an unused port; a race with another process taking it
    # before the server binds is possible but shows up as a failed start.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        print(s.getsockname()[1])


def wait_http(url, timeout_s):
    deadline = time.monotonic() + float(timeout_s)
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, method="GET")
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
                status = resp.status
            if status < 500:
                return
            last = f"status {status}"
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return
            last = f"status {e.code}"
        except (urllib.error.URLError, OSError) as e:
            last = str(getattr(e, "reason", e))
        time.sleep(0.1)
    fail(f"{url} did not answer within {timeout_s}s ({last}); see the server's log above")


def deploy(endpoint, name, runtime, handler, max_concurrency, files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for spec in files:
            path, _, arcname = spec.partition("=")
            arcname = arcname or path.rsplit("/", 1)[-1]
            info = zipfile.ZipInfo(arcname)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o100755 << 16)  # regular file, executable
            with open(path, "rb") as f:
                z.writestr(info, f.read())
    body = {
        "name": name,
        "runtime": runtime,
        "max_concurrency": int(max_concurrency),
        "timeout_s": 10,
        "code": {"zip_base64": base64.b64encode(buf.getvalue()).decode()},
    }
    if handler != "-":  # `provided` needs none
        body["handler"] = handler
    status, _, answer = request("POST", f"{endpoint}/v1/functions", json.dumps(body).encode(),
                                {"Content-Type": "application/json"})
    if status != 201:
        fail(f"deploying {name} answered {status}: {answer[:500]!r}")


def check_echo(endpoint, name, count):
    event = {"hello": "world", "n": 42}
    for i in range(int(count)):
        status, headers, answer = request(
            "POST", f"{endpoint}/v1/functions/{name}/invoke", json.dumps(event).encode(),
            {"Content-Type": "application/json"})
        error = {k.lower(): v for k, v in headers.items()}.get("x-tamaya-function-error")
        if status != 200 or error:
            fail(f"invoke {i + 1} of {name} answered {status} (function error: {error}): "
                 f"{answer[:500]!r}")
        try:
            echoed = json.loads(answer)
        except ValueError:
            fail(f"invoke of {name} answered a body that is not JSON: {answer[:200]!r}")
        if echoed != event:
            fail(f"invoke of {name} did not echo the event: {answer[:200]!r}")


def main(argv):
    if len(argv) < 2:
        fail(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "free-port" and not args:
        free_port()
    elif cmd == "wait-http" and len(args) == 2:
        wait_http(*args)
    elif cmd == "deploy" and len(args) >= 6:
        deploy(args[0], args[1], args[2], args[3], args[4], args[5:])
    elif cmd == "check-echo" and len(args) == 3:
        check_echo(*args)
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv)
