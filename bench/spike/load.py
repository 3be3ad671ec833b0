#!/usr/bin/env python3
"""Load steps of bench/spike/run.sh. Standard library only; talks to 127.0.0.1 only; every loop is
bounded in count and time.

  load.py setup ADMIN BOOTSTRAP          deploys A (flooded) and B (steady), routes POST /a, /b
  load.py steady URL RATE COUNT OUT      open-loop POSTs at RATE/s; latency from the scheduled
                                         send time (no coordinated omission); JSON summary to OUT
  load.py flood URL CONNECTIONS SECONDS OUT   closed loop on CONNECTIONS keep-alive connections;
                                         counts and latencies per status; JSON summary to OUT
  load.py rss PID                        the process's VmRSS in KiB
"""

import asyncio
import base64
import io
import json
import sys
import time
import urllib.error
import urllib.request
import zipfile

REQUEST_TIMEOUT_S = 30
BODY = b'{"page":"event"}'


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


class Conn:
    def __init__(self, host, port, path):
        self.host, self.port, self.path = host, port, path
        self.reader = self.writer = None
        self.request = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
                        ).encode() + BODY

    async def send(self):
        """One request; (status, seconds). Reconnects when the server closed the connection."""
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                self.writer.write(self.request)
                head = await self.reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                close = False
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    k = k.strip().lower()
                    if k == b"content-length":
                        length = int(v)
                    elif k == b"connection" and v.strip().lower() == b"close":
                        close = True
                if length:
                    await self.reader.readexactly(length)
                if close:
                    self.close()
                return status
            except (asyncio.IncompleteReadError, ConnectionError):
                self.close()
                if attempt == 1:
                    raise
        return -1

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def split_url(url):
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    return host, int(port), "/" + path


def percentile(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def summary(latencies):
    ms = [v * 1000 for v in latencies]
    return {"count": len(ms), "p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99),
            "max_ms": max(ms) if ms else None}


async def steady(url, rate, count):
    host, port, path = split_url(url)
    idle = []
    by_status = {}
    errors = []
    start = time.monotonic() + 0.05
    interval = 1.0 / rate
    tasks = []

    async def one(scheduled):
        conn = idle.pop() if idle else Conn(host, port, path)
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            status = await asyncio.wait_for(conn.send(), REQUEST_TIMEOUT_S)
        except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError) as e:
            errors.append(repr(e))
            conn.close()
            return
        by_status.setdefault(status, []).append(time.monotonic() - scheduled)
        idle.append(conn)

    for i in range(count):
        scheduled = start + i * interval
        delay = scheduled - time.monotonic() - 0.002
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    for c in idle:
        c.close()
    ok = by_status.get(200, [])
    return {"rate": rate, "sent": count, "ok": summary(ok),
            "non_200": {str(k): len(v) for k, v in by_status.items() if k != 200},
            "errors": len(errors), "error_samples": errors[:3]}


async def flood(url, connections, seconds):
    host, port, path = split_url(url)
    by_status = {}
    errors = []
    stop = time.monotonic() + seconds

    async def worker():
        conn = Conn(host, port, path)
        while time.monotonic() < stop:
            t0 = time.monotonic()
            try:
                status = await asyncio.wait_for(conn.send(), REQUEST_TIMEOUT_S)
            except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError) as e:
                errors.append(repr(e))
                conn.close()
                continue
            by_status.setdefault(status, []).append(time.monotonic() - t0)
        conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return {"connections": connections, "seconds": seconds,
            "by_status": {str(k): summary(v) for k, v in sorted(by_status.items())},
            "errors": len(errors), "error_samples": errors[:3]}


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
    elif cmd == "steady" and len(args) == 4:
        out = asyncio.run(steady(args[0], float(args[1]), int(args[2])))
        json.dump(out, open(args[3], "w"))
    elif cmd == "flood" and len(args) == 4:
        out = asyncio.run(flood(args[0], int(args[1]), float(args[2])))
        json.dump(out, open(args[3], "w"))
    elif cmd == "rss" and len(args) == 1:
        rss(args[0])
    else:
        fail(__doc__)


if __name__ == "__main__":
    main(sys.argv)
