"""Measures a runtime client's cost per warm invocation: CPU time of the client process (all
threads, from /proc/<pid>/task/*/schedstat) and wall time, over N sequential invocations of an
echo handler on one kept-alive connection.

    /usr/bin/python3 tests/runtimes/measure_warm.py [--kind python|node] [-n 20000]
        [--runtimes DIR] [--event '{"hello":"world","n":42}'] [--strace]

The Runtime API here is a small single-threaded server that answers as the daemon does (same
headers, HTTP/1.1 keep-alive, pipelined requests answered in order), so what is measured is
the client's own work. `--runtimes DIR` runs another copy of the clients (e.g. the previous
version) for a before/after in the same conditions; `--strace` prints `strace -c` of the
client's syscalls for the measured invocations. Not a test: the numbers depend on the machine.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = "/usr/bin/python3"
NODE = "/usr/bin/node"
PREFIX = b"/2018-06-01/runtime"
HANDLERS = {
    "python": ("app.py", "def handler(event, context):\n    return event\n"),
    "node": ("app.js", "exports.handler = async (event) => event;\n"),
}
# Invocations before measuring: imports, first-call caches, JIT warm-up (Node).
WARMUP = 2000
# Bound on waiting for the client at any step, so a broken client fails the run quickly.
STEP_TIMEOUT_S = 30


def cpu_ns_of(pid):
    """CPU time (ns) and context switches (voluntary + involuntary) of all the threads."""
    total = switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    switches += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total, switches


class Conn:
    """The server side of the client's connection: reads requests, writes answers."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def read_request(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("client closed the connection")
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        method, path, _ = lines[0].split(b" ", 2)
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("client closed the connection mid-body")
            rest += chunk
        self.buf = rest[length:]
        return method, path, rest[:length]


def serve(conn, events, total, seq, gap_s=0.0):
    """Answers `total` invocations; returns the number answered with a function error."""
    errors = 0
    answered = 0
    sent = 0
    arn = b"arn:aws:lambda:us-east-1:000000000000:function:fn"
    while answered < total:
        method, path, body = conn.read_request()
        if method == b"GET" and path == PREFIX + b"/invocation/next":
            if gap_s and sent:
                # As the daemon under load: the 202 goes out at once, the next event later.
                time.sleep(gap_s)
            if sent == total:
                raise RuntimeError("client asked for more events than were sent")
            sent += 1
            seq[0] += 1
            rid = b"%08d-0000-4000-8000-000000000000" % seq[0]
            deadline = b"%d" % (int(time.time() * 1000) + 300000)
            conn.sock.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                b"Lambda-Runtime-Aws-Request-Id: %s\r\nLambda-Runtime-Deadline-Ms: %s\r\n"
                b"Lambda-Runtime-Invoked-Function-Arn: %s\r\n"
                b"Lambda-Runtime-Trace-Id: Root=1-5e1b4151-5ac6c58f5b5dbd6a6fbd2d5c;Sampled=0\r\n"
                b"\r\n%s" % (len(events), rid, deadline, arn, events)
            )
        elif method == b"POST":
            if path.endswith(b"/error"):
                errors += 1
            elif body != events and json.loads(body) != json.loads(events):
                raise RuntimeError(f"client answered {body[:200]!r}, not the event")
            answered += 1
            conn.sock.sendall(
                b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
                b"Content-Length: 15\r\n\r\n{\"status\":\"OK\"}"
            )
        else:
            raise RuntimeError(f"unexpected request {method!r} {path!r}")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kind", choices=sorted(HANDLERS), default="python")
    parser.add_argument("-n", type=int, default=20000, help="measured invocations")
    parser.add_argument("--runtimes", default=str(REPO_ROOT / "runtimes"))
    parser.add_argument("--event", default='{"hello":"world","n":42}')
    parser.add_argument("--strace", action="store_true")
    parser.add_argument(
        "--gap-us",
        type=int,
        default=0,
        help="wait this long between answering a POST and sending the next event",
    )
    args = parser.parse_args()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(STEP_TIMEOUT_S)
    address = "127.0.0.1:%d" % listener.getsockname()[1]
    task_root = Path(tempfile.mkdtemp(prefix="tamaya-warm-"))
    name, code = HANDLERS[args.kind]
    (task_root / name).write_text(code)
    runtimes = Path(args.runtimes).resolve()
    if args.kind == "python":
        argv = [PYTHON, "-I", str(runtimes / "python" / "bootstrap.py")]
    else:
        argv = [NODE, str(runtimes / "node" / "bootstrap.js")]
    env = {
        "AWS_LAMBDA_RUNTIME_API": address,
        "_HANDLER": "app.handler",
        "LAMBDA_TASK_ROOT": str(task_root),
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]abc",
        "TZ": ":UTC",
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.Popen(argv, cwd=task_root, env=env, stdout=subprocess.DEVNULL)
    strace = None
    try:
        sock, _ = listener.accept()
        sock.settimeout(STEP_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = Conn(sock)
        event = args.event.encode()
        seq = [0]
        serve(conn, event, WARMUP, seq)
        if args.strace:
            strace_out = task_root / "strace.txt"
            strace = subprocess.Popen(
                ["strace", "-c", "-f", "-o", str(strace_out), "-p", str(proc.pid)],
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # strace attaches asynchronously
        (cpu0, cs0), t0 = cpu_ns_of(proc.pid), time.perf_counter()
        errors = serve(conn, event, args.n, seq, args.gap_us / 1e6)
        (cpu1, cs1), t1 = cpu_ns_of(proc.pid), time.perf_counter()
        if strace is not None:
            strace.send_signal(signal.SIGINT)
            strace.wait(STEP_TIMEOUT_S)
            print(strace_out.read_text())
        if errors:
            raise RuntimeError(f"{errors} invocations answered with an error")
        per = args.n
        print(
            f"{args.kind} ({runtimes}): {args.n} invocations, "
            f"client CPU {(cpu1 - cpu0) / 1000 / per:.1f} us/inv, "
            f"wall {(t1 - t0) * 1e6 / per:.1f} us/inv, "
            f"context switches {(cs1 - cs0) / per:.2f}/inv, "
            f"loadavg {open('/proc/loadavg').read().split()[0]}"
        )
    finally:
        proc.kill()
        proc.wait()
        listener.close()
        shutil.rmtree(task_root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
