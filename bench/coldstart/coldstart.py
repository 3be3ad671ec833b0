#!/usr/bin/env python3
"""Driver of bench/coldstart/run.sh: cold-start latency of sandboxed instances, next to the
interpreter and fork+exec references measured in the same run, and PSS of idle warm Python
instances. Standard library only; talks to 127.0.0.1 only; every wait is bounded.

  coldstart.py --bin TAMAYA --spawn-time SPAWN_TIME --tmp DIR --samples N --idle N --out FILE.md

A cold start is forced per sample by a new revision of the function (PATCH of an environment
variable): the daemon retires the old instance and the next invoke starts a new one, with the
same code (so the same zygote). The time is request to response of that invoke, sent on a kept
connection by a minimal HTTP client (urllib's own work, about 0.3 ms a request here, is not the
platform's). Each runtime is sampled twice: back to back (the invoke right after the PATCH) and
after a quiet spell (BENCH_GAP_MS between the PATCH and the invoke), as most cold starts come.

Each of those rows is measured in blocks of BLOCK samples that alternate with blocks of its
reference (`python3 -I -S -c pass`, `node -e 0`, fork+exec of /bin/true), taken the same way
(back to back or after the same quiet spell): the host's speed drifts over minutes (one run's
reference p50 was 10.7 ms, against 7.5-7.9 in four other runs of the same hour), and a
ratio of two medians measured minutes apart carries that drift.
"""

import argparse
import base64
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile

REQUEST_TIMEOUT_S = 30
START_TIMEOUT_S = 20
NODE_POOL_SIZE = 2  # generic Node.js instances the daemon keeps ready (node_pool_size)
POOL_REFILL_TIMEOUT_S = 20
# The quiet spell before each sample of the "apart" rows: the host idles (CPUs halt, RCU and
# timers go lazy) and, for Python, the zygote's child forked ahead of need is ready, as they are
# when cold starts do not follow each other. From the environment: BENCH_GAP_MS.
GAP_S = int(os.environ.get("BENCH_GAP_MS", "300")) / 1000
# Samples of a row, then as many of its reference, in turn: long enough that a back-to-back
# block is a sustained burst of cold starts rather than a few after a rest, short enough that
# the reference is never far in time from its row.
BLOCK = 50
# Before each block of the reference: the daemon's work after the last cold start (the zygote
# preparing its next child, the retired instance's end) is over, as it is before the row's own
# first sample.
SETTLE_S = 0.2

PY_APP = b"def handler(event, context):\n    return {'ok': True}\n"
PY_SLEEP = (b"import os, time\n"
            b"def handler(event, context):\n    time.sleep(event.get('sleep', 0))\n    return os.getpid()\n")
NODE_APP = b"exports.handler = async () => ({ok: true});\n"


def fail(message):
    print(f"coldstart.py: {message}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def zip_of(entries):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = (mode & 0xFFFF) << 16
            zf.writestr(info, data)
    return base64.b64encode(buf.getvalue()).decode()


class Daemon:
    def __init__(self, binary, data_dir, log_path, settings):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [binary, "serve", "--data-dir", data_dir, "--admin-host", "127.0.0.1",
               "--admin-port", str(self.port)]
        for k, v in settings.items():
            cmd += ["--set", f"{k}={v}"]
        # BENCH_TAMAYA_SET="key=value …": extra settings for every daemon the bench starts.
        for kv in os.environ.get("BENCH_TAMAYA_SET", "").split():
            cmd += ["--set", kv]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAMAYA_")}
        env["TAMAYA_GATEWAY_PORT"] = str(free_port())
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                fail(f"tamaya serve exited: see {log_path}")
            try:
                if self.call("GET", "/v1/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        fail(f"tamaya serve did not answer within {START_TIMEOUT_S} s: see {log_path}")

    def call(self, method, path, doc=None):
        body = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(self.base + path, data=body, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_S) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def deploy(self, name, runtime, handler, files, **config):
        doc = {"name": name, "runtime": runtime, "code": {"zip_base64": zip_of(files)}, **config}
        if handler:
            doc["handler"] = handler
        status, _, body = self.call("POST", "/v1/functions", doc)
        if status != 201:
            fail(f"deploy {name}: {status} {body[:300]!r}")

    def invoke(self, name, event=None):
        status, headers, body = self.call("POST", f"/v1/functions/{name}/invoke", event or {})
        if status != 200 or "X-Tamaya-Function-Error" in headers:
            fail(f"invoke {name}: {status} {body[:300]!r}; see {self.log_path}")
        return body

    def kept_connection(self):
        if getattr(self, "conn", None) is None:
            self.conn = socket.create_connection(("127.0.0.1", self.port), timeout=REQUEST_TIMEOUT_S)
            self.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self.conn

    def timed_invoke(self, name):
        """Request to response of one invoke, in ms, on a kept connection (lean_request)."""
        conn = self.kept_connection()
        start = time.perf_counter()
        status, head, body = lean_request(conn, "POST", f"/v1/functions/{name}/invoke", b"{}")
        took = (time.perf_counter() - start) * 1000
        if status != 200 or b"x-tamaya-function-error" in head.lower():
            fail(f"invoke {name}: {status} {body[:300]!r}; see {self.log_path}")
        return took

    def new_revision(self, name, n):
        """A new revision of `name` (the next invoke starts a new instance). On the kept
        connection with the lean client, as the timed invoke: urllib's work and a connection a
        request (about 0.3 ms of CPU here, and the daemon's accept and close) would take CPU
        from what the next cold start competes with on a small host, and is not the platform's."""
        body = json.dumps({"environment": {"SAMPLE": str(n)}}).encode()
        status, _, body = lean_request(self.kept_connection(), "PATCH", f"/v1/functions/{name}", body)
        if status != 200:
            fail(f"patch {name}: {status} {body[:300]!r}")

    def stop(self):
        if getattr(self, "conn", None) is not None:
            self.conn.close()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


def lean_request(conn, method, path, body):
    """A request with a JSON body on a kept HTTP/1.1 connection; returns (status, raw head,
    body). Only what the admin API answers is handled: a Content-Length body."""
    conn.sendall(b"%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (method.encode(), path.encode(), len(body), body))
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            fail(f"{method} {path}: the daemon closed the connection")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    length = int(m.group(1)) if m else 0
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            fail(f"{method} {path}: the daemon closed the connection mid-answer")
        rest += chunk
    return int(head.split(b" ", 2)[1]), head, rest[:length]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def metric(d, name):
    """One unlabelled series of the daemon's /metrics, None when it has none."""
    m = re.search(rb"^" + name.encode() + rb" (\S+)$", d.call("GET", "/metrics")[2], re.M)
    return float(m.group(1)) if m else None


def wait_node_pool(d):
    """Waits (bounded) until the daemon's pool of generic Node.js instances is full again, as it
    is in a steady state where cold starts are not back to back."""
    deadline = time.monotonic() + POOL_REFILL_TIMEOUT_S
    while time.monotonic() < deadline:
        ready = metric(d, "tamaya_node_pool_ready")
        if ready is None or ready >= NODE_POOL_SIZE:
            return
        time.sleep(0.05)
    fail(f"the node pool did not refill within {POOL_REFILL_TIMEOUT_S} s; see {d.log_path}")


def offered_count(d):
    """How many Python instances so far took a zygote's child ready ahead of need (the others
    were forked on demand)."""
    return int(metric(d, "tamaya_python_zygote_offered_total") or 0)


def cold_samples(d, name, n, before=None, gap_s=0.0, ready=None, first=True):
    """n cold starts of `name`, in ms. With `ready` (a list), appends how many of them took a
    Python zygote's child ready ahead of need. `first`: start one uncounted instance before."""
    if first:
        d.invoke(name)  # first start (for Python also the zygote's, for Node the pool's template) is not counted
    offered = offered_count(d) if ready is not None else 0
    out = []
    for i in range(n):
        if before:
            before(d)
        d.new_revision(name, i)
        if gap_s:
            time.sleep(gap_s)
        out.append(d.timed_invoke(name))
    if ready is not None:
        ready.append(offered_count(d) - offered)
    return out


def paired_samples(d, name, n, spawn_time, ref_argv, ref_per_sample=1, before=None, gap_s=0.0,
                   ready=None):
    """n cold starts of `name` and n x ref_per_sample runs of ref_argv (spawn_time, after the
    same quiet spell), in alternating blocks of BLOCK (see the module docstring): (reference,
    cold starts), in ms. `before(d)` runs before each cold start, and before each block of the
    reference that follows cold starts."""
    ref, cold, counts = [], [], []
    while len(cold) < n:
        k = min(BLOCK, n - len(cold))
        time.sleep(SETTLE_S)
        if before and cold:
            before(d)
        ref += reference(spawn_time, k * ref_per_sample, ref_argv, gap_s)
        cold += cold_samples(d, name, k, before=before, gap_s=gap_s,
                             ready=counts if ready is not None else None, first=not cold)
    if ready is not None:
        ready.append(sum(counts))
    return ref, cold


def reference(spawn_time, n, argv, gap_s=0.0):
    env = dict(os.environ, SPAWN_GAP_MS=str(int(gap_s * 1000)))
    r = subprocess.run([spawn_time, str(n)] + argv, capture_output=True, text=True, timeout=600,
                       env=env)
    if r.returncode != 0:
        fail(f"reference {argv}: {r.stderr.strip()}")
    return [float(x) for x in r.stdout.split()]


def pss_kb(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_of(pid):
    out = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


MAX_PER_FUNCTION = 1000  # the registry's cap on one function's max_concurrency


def meminfo_kb(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def idle_pss(a):
    """Holds n idle warm Python instances and sums their PSS (and their zygotes').

    The instances are provisioned concurrency (min_instances): started by the daemon off the
    request path, initialised (handler imported, waiting in invocation/next) and idle, which is
    what an idle warm instance is. n is spread over functions of at most MAX_PER_FUNCTION each
    (one zygote per function). A daemon of its own, with the limits n needs: concurrency_limit
    above n plus the unreserved minimum, and a start timeout long enough for n starts at once
    on a loaded machine. Bounded by --idle-timeout seconds."""
    n = a.idle
    d = Daemon(a.bin, f"{a.tmp}/data-idle", f"{a.tmp}/tamaya-idle.log",
               {"python_zygote": "on", "log_level": "warn", "concurrency_limit": n + 200,
                "instance_start_timeout_ms": a.idle_timeout * 1000,
                "python_zygote_start_timeout_ms": 60000})
    try:
        avail_before = meminfo_kb("MemAvailable")
        names = []
        started = time.perf_counter()
        left = n
        while left > 0:
            count = min(left, MAX_PER_FUNCTION)
            name = f"idle{len(names)}"
            d.deploy(name, "python3", "app.handler", [("app.py", PY_SLEEP, 0o100644)],
                     max_concurrency=count, min_instances=count, memory_mb=128, timeout_s=120)
            names.append(name)
            left -= count
        deadline = time.monotonic() + a.idle_timeout
        ready = 0
        while time.monotonic() < deadline:
            ready = 0
            for name in names:
                try:
                    status, _, body = d.call("GET", f"/v1/functions/{name}")
                except OSError:  # the event loop is busy starting instances: ask again
                    status = 0
                if status == 200:
                    ready += json.loads(body)["instances"].get("provisioned_ready", 0)
            if ready >= n:
                break
            time.sleep(1)
        wall = time.perf_counter() - started
        if ready < n:  # still worth measuring: the report says how many of n
            print(f"coldstart.py: only {ready} of {n} idle instances were ready after "
                  f"{a.idle_timeout} s; measuring those; see {d.log_path}", file=sys.stderr)
        # Instances are the daemon's children (direct) or its zygotes' children.
        direct = children_of(d.proc.pid)
        zygotes = [p for p in direct if b"zygote.py" in open(f"/proc/{p}/cmdline", "rb").read()]
        instances = [p for p in direct if p not in zygotes]
        for z in zygotes:
            instances += children_of(z)
        total = sum(pss_kb(p) for p in instances)
        zygote_kb = sum(pss_kb(p) for p in zygotes)
        daemon_kb = pss_kb(d.proc.pid)
        used_kb = avail_before - meminfo_kb("MemAvailable")
        return len(instances), total, zygote_kb, daemon_kb, used_kb, wall
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--spawn-time", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--native-bootstrap", required=True)
    ap.add_argument("--samples", type=int, default=150)
    ap.add_argument("--idle", type=int, default=200)
    ap.add_argument("--idle-timeout", type=int, default=900)
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", default="bench/coldstart/run.sh")
    a = ap.parse_args()

    idle = None
    rows = {}
    apart = f"{int(GAP_S * 1000)} ms apart"
    python_ref = ["/usr/bin/python3", "-I", "-S", "-c", "pass"]
    node_ref = ["/usr/bin/node", "-e", "0"]
    true_ref = ["/bin/true"]
    results = {}

    def pair(d, row, ref_row, name, ref_argv, ref_per_sample=1, **kw):
        rows[ref_row], results[row] = paired_samples(d, name, a.samples, a.spawn_time, ref_argv,
                                                     ref_per_sample, **kw)

    ready = []  # Python zygote on: starts that found a child ready, back to back and apart
    for zygote in ("on", "off"):
        d = Daemon(a.bin, f"{a.tmp}/data-{zygote}", f"{a.tmp}/tamaya-{zygote}.log",
                   {"python_zygote": zygote, "log_level": "warn", "node_pool_size": NODE_POOL_SIZE})
        try:
            d.deploy("py", "python3", "app.handler", [("app.py", PY_APP, 0o100644)])
            if zygote == "off":  # for comparison only: against the reference taken beside the zygote's row
                results["python3 (zygote off)"] = cold_samples(d, "py", a.samples)
                continue
            pair(d, "python3 (zygote on)", "python3 -I -S -c pass", "py", python_ref, ready=ready)
            pair(d, f"python3 (zygote on), {apart}", f"python3 -I -S -c pass, {apart}", "py", python_ref,
                 gap_s=GAP_S, ready=ready)
            d.deploy("node", "nodejs", "index.handler", [("index.js", NODE_APP, 0o100644)])
            pair(d, "nodejs", "node -e 0", "node", node_ref, before=wait_node_pool)
            pair(d, f"nodejs, {apart}", f"node -e 0, {apart}", "node", node_ref, before=wait_node_pool,
                 gap_s=GAP_S)
            with open(a.native_bootstrap, "rb") as f:
                boot = f.read()
            d.deploy("native", "provided", None, [("bootstrap", boot, 0o100755)])
            # The Node.js rows' last start leaves the pool refilling (tens of ms of CPU
            # per generic instance): not part of a `provided` start.
            wait_node_pool(d)
            # fork+exec of /bin/true takes about a millisecond: ten of them per cold start.
            pair(d, "provided", "fork+exec /bin/true", "native", true_ref, ref_per_sample=10)
            pair(d, f"provided, {apart}", f"fork+exec /bin/true, {apart}", "native", true_ref, gap_s=GAP_S)
        finally:
            d.stop()
    idle = idle_pss(a) if a.idle > 0 else None

    ref = {k: statistics.median(v) for k, v in rows.items()}
    lines = [f"# bench/coldstart {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}", "",
             f"Command: `{a.command}`; load average at start: {open('/proc/loadavg').read().split()[:3]}; "
             f"{os.cpu_count()} CPUs", "",
             "| what | p50 ms | p99 ms | n |", "|---|---:|---:|---:|"]
    for k, v in list(rows.items()) + list(results.items()):
        lines.append(f"| {k} | {statistics.median(v):.2f} | {pct(v, 99):.2f} | {len(v)} |")
    goals = [("python3 (zygote on)", "python3 -I -S -c pass", 0.35),
             (f"python3 (zygote on), {apart}", f"python3 -I -S -c pass, {apart}", 0.35),
             ("python3 (zygote off)", "python3 -I -S -c pass", None),  # for comparison: no goal
             ("nodejs", "node -e 0", 0.25),
             (f"nodejs, {apart}", f"node -e 0, {apart}", 0.25),
             ("provided", "fork+exec /bin/true", 2.5),
             (f"provided, {apart}", f"fork+exec /bin/true, {apart}", 2.5)]
    lines += ["", "| cold start | ratio (p50 / reference p50) | goal |", "|---|---:|---:|"]
    for k, r, goal in goals:
        ratio = statistics.median(results[k]) / ref[r]
        lines.append(f"| {k} vs {r} | {ratio:.2f}× | {f'≤ {goal}×' if goal else 'none (for comparison)'} |")
    if len(ready) == 2:
        lines += ["", f"Python (zygote on) starts that took a child the zygote had ready ahead of need "
                  f"(the others were forked on demand): back to back {ready[0]} of {a.samples}, "
                  f"{apart} {ready[1]} of {a.samples}."]
    if idle:
        count, total_kb, zygote_kb, daemon_kb, used_kb, wall = idle
        per = total_kb / max(count, 1)
        fit = int(4 * 1024 * 1024 / per) if per else 0
        lines += ["", f"Idle warm Python instances (provisioned, measured, not extrapolated): {count} "
                  f"running (asked {a.idle}), all ready {wall:.1f} s after the deploy; PSS "
                  f"(smaps_rollup) of the instances {total_kb / 1024:.1f} MiB = {per / 1024:.2f} MiB "
                  f"each; zygotes {zygote_kb / 1024:.1f} MiB; daemon {daemon_kb / 1024:.1f} MiB; "
                  f"MemAvailable fell by {used_kb / 1024:.1f} MiB. Goal: >= 1000 within 4 GiB: "
                  f"{'met' if count >= 1000 and total_kb + zygote_kb <= 4 * 1024 * 1024 else 'not met'} "
                  f"(at {per / 1024:.2f} MiB each, 4 GiB holds about {fit})."]
    text = "\n".join(lines) + "\n"
    with open(a.out, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
