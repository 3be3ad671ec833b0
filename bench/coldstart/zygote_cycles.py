#!/usr/bin/env python3
"""What one cold start from a Python zygote costs in CPU, without the daemon.

Starts runtimes/python/zygote.py (as the daemon does, with --prefork-tmp-bytes) and drives its
offered children: per cycle it takes a ready child (its "hello"), sends it a spawn request (the
"go": an instance with no uid change and no seccomp filter, as root), serves the instance's first
invocation on a minimal Runtime API over loopback TCP, kills it, and asks the zygote for the next
child. Prints, as medians over the cycles: go -> response time, the child's page faults and CPU
before its hello and after the go, the zygote's CPU and faults per cycle, and the CPU of the
reaped children (preparation, request and exit together). A measuring aid for zygote.py's
preparation, not a test and not the cold start a user sees (bench/coldstart/run.sh is that).

Root only (the children unshare namespaces and mount /proc and /tmp); run it in a private mount
namespace so those mounts stay there, e.g. from the repository root:

  unshare -m --propagation private python3 bench/coldstart/zygote_cycles.py --cycles 20
  unshare -m --propagation private python3 bench/coldstart/zygote_cycles.py --runtimes OTHER/runtimes

--back-to-back takes each child as soon as it is ready and keeps --prefork children asked for;
otherwise each cycle waits --gap-ms first. Every wait is bounded.
"""

import argparse
import array
import json
import os
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

WAIT_S = 20  # for any one answer of the zygote, a child or the instance
TMP_BYTES = 64 << 20
EVENT = b'{"n": 1}'
TICK = os.sysconf("SC_CLK_TCK")


def proc_stat(pid):
    """(minor faults, own CPU ticks, reaped children's CPU ticks) of pid."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[7]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def cpu_ms(pid):
    """CPU time of pid so far, from the scheduler (ns; /proc/<pid>/stat counts 10 ms ticks)."""
    return int(open(f"/proc/{pid}/schedstat").read().split()[0]) / 1e6


def wait_readable(sock, what):
    if not select.select([sock], [], [], WAIT_S)[0]:
        sys.exit(f"zygote_cycles.py: no {what} within {WAIT_S} s")


def read_head(conn):
    buf = b""
    while b"\r\n\r\n" not in buf:
        wait_readable(conn, "request from the instance")
        chunk = conn.recv(65536)
        if not chunk:
            sys.exit("zygote_cycles.py: the instance closed its connection")
        buf += chunk


def serve_first_invocation(listener):
    """Serves the instance's first invocation; returns the connection, open: closed before the
    instance is killed, it would make the instance connect again (and a later cycle accept that
    connection as its own instance's)."""
    wait_readable(listener, "connection from the instance")
    conn, _ = listener.accept()
    read_head(conn)  # GET /next
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: r-1\r\n"
        b"Lambda-Runtime-Deadline-Ms: 9999999999999\r\n"
        b"Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:::function:f\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(EVENT), EVENT))
    read_head(conn)  # POST /response (+ the next GET, left waiting)
    conn.sendall(b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
                 b'{"status":"OK"}')
    return conn


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--runtimes", default=os.path.join(root, "runtimes"))
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--prefork", type=int, default=2)
    ap.add_argument("--back-to-back", action="store_true")
    ap.add_argument("--gap-ms", type=int, default=300)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("zygote_cycles.py: run as root (see the docstring)")

    # Not under /tmp: each child mounts a /tmp of its own.
    task = tempfile.mkdtemp(prefix="zygote-cycles-", dir=os.getcwd())
    os.chmod(task, 0o755)
    with open(f"{task}/app.py", "w") as f:
        f.write("def handler(event, context):\n    return {'ok': True}\n")
    listener = socket.create_server(("127.0.0.1", 0))
    env = {"AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{listener.getsockname()[1]}", "_HANDLER": "app.handler",
           "LAMBDA_TASK_ROOT": task, "AWS_LAMBDA_FUNCTION_NAME": "f", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
           "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "TZ": ":UTC"}
    env.update({f"AWS_EXTRA_{i}": "x" * 30 for i in range(15)})  # about as many as the daemon sets
    ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote = subprocess.Popen(
        ["/usr/bin/python3", "-I", f"{a.runtimes}/python/zygote.py", f"--prefork-tmp-bytes={TMP_BYTES}"],
        stdin=theirs, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    theirs.close()
    offers = []

    def next_message():
        wait_readable(ctl, "message from the zygote")
        msg, fds, _, _ = socket.recv_fds(ctl, 1 << 16, 4)
        if not msg:
            sys.exit("zygote_cycles.py: the zygote exited")
        doc = json.loads(msg)
        if "offer" in doc:
            offers.append(socket.socket(fileno=fds[0]))
        return doc

    try:
        if not next_message().get("ready"):
            sys.exit("zygote_cycles.py: the zygote did not say ready")
        for _ in range(a.prefork - 1):
            ctl.send(b'{"prefork":true}')
        rows = []
        z0 = proc_stat(zygote.pid)
        started = time.perf_counter()
        for _ in range(a.cycles):
            if not a.back_to_back:
                time.sleep(a.gap_ms / 1000)
            while not offers:
                next_message()
            chan = offers.pop(0)
            wait_readable(chan, "hello from an offered child")
            msg, anc, _, _ = chan.recvmsg(64, socket.CMSG_SPACE(12))
            if msg != b"hello":
                sys.exit(f"zygote_cycles.py: an offered child said {msg!r}")
            pid = next(array.array("i", data[:4])[0] for _, kind, data in anc if kind == socket.SCM_CREDENTIALS)
            at_hello = proc_stat(pid)[0], cpu_ms(pid)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            spec = {"env": env, "specialise": {"tmp_bytes": TMP_BYTES, "rlimits": [], "uid": 0, "gid": 0,
                                               "seccomp": "", "netns": False}}
            go = time.perf_counter()
            socket.send_fds(chan, [json.dumps(spec).encode()], [out_w, err_w])
            os.close(out_w)
            os.close(err_w)
            wait_readable(chan, "ok from the child")
            if chan.recv(64) != b"ok":
                sys.exit("zygote_cycles.py: the child could not specialise")
            try:
                conn = serve_first_invocation(listener)
            except SystemExit:
                time.sleep(0.2)
                for fd in (out_r, err_r):  # what the instance said before it ended
                    os.set_blocking(fd, False)
                    try:
                        sys.stderr.write(os.read(fd, 65536).decode(errors="replace"))
                    except BlockingIOError:
                        pass
                raise
            answered = time.perf_counter()
            at_response = proc_stat(pid)[0], cpu_ms(pid)
            os.kill(pid, signal.SIGKILL)
            conn.close()
            for fd in (out_r, err_r):
                os.close(fd)
            chan.close()
            ctl.send(b'{"prefork":true}')
            rows.append(((answered - go) * 1000, at_hello[0], at_hello[1], at_response[0] - at_hello[0],
                         at_response[1] - at_hello[1]))
        time.sleep(0.3)  # the last child's exit is reaped
        wall = time.perf_counter() - started
        z1 = proc_stat(zygote.pid)
    finally:
        for chan in offers:
            chan.close()  # an offered child closed unused exits
        # Read what the zygote sent last, so that closing does not reset the connection under it.
        while select.select([ctl], [], [], 0)[0] and ctl.recv(1 << 16):
            pass
        ctl.close()
        try:
            zygote.wait(10)
        except subprocess.TimeoutExpired:
            zygote.kill()
        shutil.rmtree(task, ignore_errors=True)
    n = a.cycles
    med = lambda i: statistics.median(r[i] for r in rows)  # noqa: E731
    print(f"{a.runtimes}: {n} cycles ({'back to back' if a.back_to_back else f'{a.gap_ms} ms apart'}), "
          f"load {open('/proc/loadavg').read().split()[0]}")
    print(f"  go -> response p50 {med(0):.2f} ms")
    print(f"  child before hello: {med(1):.0f} faults, {med(2):.1f} ms CPU; after go: {med(3):.0f} faults, "
          f"{med(4):.1f} ms CPU")
    print(f"  per cycle: zygote {(z1[1] - z0[1]) * 1000 / TICK / n:.1f} ms CPU, {(z1[0] - z0[0]) / n:.0f} faults; "
          f"reaped children {(z1[2] - z0[2]) * 1000 / TICK / n:.1f} ms CPU; wall {wall * 1000 / n:.1f} ms")


if __name__ == "__main__":
    main()
