#!/usr/bin/env python3
"""Set-up steps of bench/spike/run.sh (the load itself is loadgen.c). Standard library only; talks
to 127.0.0.1 only; every loop is bounded in count and time.

  load.py setup ADMIN BOOTSTRAP          deploys A (flooded) and B (steady), routes POST /a, /b
  load.py rss PID                        the process's VmRSS in KiB
"""

import base64
import io
import json
import sys
import time
import urllib.error
import urllib.request
import zipfile

REQUEST_TIMEOUT_S = 30


def fail(message):
    print(f"load.py: {message}", file=sys.stderr)
    sys.exit(1)


def call(method, url, doc=None):
    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def setup(admin, bootstrap, a_max, a_delay_ms, b_max, b_min, b_reserved):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        with open(bootstrap, "rb") as f:
            zf.writestr(info, f.read())
    code = {"zip_base64": base64.b64encode(buf.getvalue()).decode()}
    functions = [
        {"name": "a", "runtime": "provided", "code": code, "max_concurrency": int(a_max),
         "timeout_s": 10, "environment": {"ECHO_DELAY_MS": str(a_delay_ms)}},
        {"name": "b", "runtime": "provided", "code": code, "max_concurrency": int(b_max),
         "timeout_s": 10, "min_instances": int(b_min), "reserved_concurrency": int(b_reserved)},
    ]
    for fn in functions:
        status, answer = call("POST", f"{admin}/v1/functions", fn)
        if status != 201:
            fail(f"deploying {fn['name']} answered {status}: {answer[:300]!r}")
    for name in ("a", "b"):
        status, answer = call("POST", f"{admin}/v1/routes",
                              {"route_key": f"POST /{name}", "target": name, "auth": "none"})
        if status != 201:
            fail(f"route /{name} answered {status}: {answer[:300]!r}")
    # B's provisioned instances come up off the request path.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status, answer = call("GET", f"{admin}/v1/functions/b")
        if status == 200 and json.loads(answer)["instances"]["provisioned_ready"] >= int(b_min):
            return
        time.sleep(0.05)
    fail(f"b's {b_min} provisioned instances were not ready within 20 s")


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                print(line.split()[1])
                return
    fail(f"no VmRSS for pid {pid}")


def main(argv):
    cmd, args = (argv[1], argv[2:]) if len(argv) > 1 else ("", [])
    if cmd == "setup" and len(args) == 7:
        setup(*args)
    elif cmd == "rss" and len(args) == 1:
        rss(args[0])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv)
