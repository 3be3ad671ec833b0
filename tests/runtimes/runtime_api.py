"""A small AWS Lambda Runtime API (2018-06-01) server for driving the runtime clients.

It speaks the same protocol as the daemon: GET /invocation/next long-polls until an event is
queued, and the client POSTs /response, /error or /init/error. Everything the client sends is
recorded so tests can check bodies, headers and timing.
"""

import json
import os
import queue
import select
import socket
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_BOOTSTRAP = REPO_ROOT / "runtimes" / "python" / "bootstrap.py"
NODE_BOOTSTRAP = REPO_ROOT / "runtimes" / "node" / "bootstrap.js"
PYTHON = "/usr/bin/python3"
NODE = "/usr/bin/node"
PREFIX = "/2018-06-01/runtime"
# How long a test waits for the client to answer one invocation before failing.
WAIT_SECONDS = 15.0


class Invocation:
    def __init__(self, payload, deadline_ms, headers):
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.deadline_ms = deadline_ms
        self.extra_headers = headers
        self.done = threading.Event()
        self.kind = None  # "response" or "error"
        self.body = None
        self.headers = None
        self.queued_at = time.monotonic()
        self.answered_at = None

    def wait(self, timeout=WAIT_SECONDS):
        if not self.done.wait(timeout):
            raise AssertionError(f"runtime did not answer invocation {self.request_id} in time")
        return self

    def json(self):
        return json.loads(self.body)


class RuntimeApiServer:
    def __init__(self):
        self.pending = queue.Queue()
        self.invocations = {}
        self.init_error = None  # (headers, body)
        self.init_error_event = threading.Event()
        self.first_next_at = None  # time.monotonic() of the first GET /next
        self.first_next_event = threading.Event()
        self.next_count = 0
        self.connections = 0
        # Answers to this many invocation POSTs carry `Connection: close` and end the connection.
        self.close_after_posts = 0
        # When set, each invocation POST records whether the client had already sent its next
        # request (pipelined) by the time the POST was read.
        self.observe_pipelining = False
        self.pipelined = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                # Without it a reply written as headers then body waits ~40 ms for the
                # client's delayed ACK (Nagle).
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with server.lock:
                    server.connections += 1

            def log_message(self, *args):
                pass

            def _reply(self, status, body=b"", close=False):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    if close:
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    # The client was killed while its long poll was open (end of a test).
                    self.close_connection = True

            def do_GET(self):
                if self.path != PREFIX + "/invocation/next":
                    return self._reply(404, b'{"errorType":"NotFound"}')
                with server.lock:
                    server.next_count += 1
                    if server.first_next_at is None:
                        server.first_next_at = time.monotonic()
                        server.first_next_event.set()
                while True:
                    try:
                        inv = server.pending.get(timeout=0.2)
                        break
                    except queue.Empty:
                        if server.stopping.is_set():
                            self.close_connection = True
                            return self._reply(410, b'{"errorType":"ShuttingDown"}')
                body = inv.payload
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Lambda-Runtime-Aws-Request-Id", inv.request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(inv.deadline_ms))
                self.send_header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:000000000000:function:fn",
                )
                if "Lambda-Runtime-Trace-Id" not in inv.extra_headers:
                    self.send_header("Lambda-Runtime-Trace-Id", "Root=1-abc;Parent=def;Sampled=0")
                for name, value in inv.extra_headers.items():
                    if value is not None:  # None: leave the header out
                        self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path == PREFIX + "/init/error":
                    server.init_error = (headers, body)
                    server.init_error_event.set()
                    return self._reply(202, b'{"status":"OK"}')
                parts = self.path[len(PREFIX) :].split("/")
                # ['', 'invocation', id, 'response'|'error']
                if len(parts) != 4 or parts[1] != "invocation":
                    return self._reply(404, b'{"errorType":"NotFound"}')
                inv = server.invocations.get(parts[2])
                if inv is None or inv.done.is_set() or parts[3] not in ("response", "error"):
                    return self._reply(400, b'{"errorType":"InvalidRequestID"}')
                if server.observe_pipelining:
                    server.pipelined.append(self._next_request_waiting())
                inv.kind, inv.body, inv.headers = parts[3], body, headers
                inv.answered_at = time.monotonic()
                inv.done.set()
                with server.lock:
                    close = server.close_after_posts > 0
                    server.close_after_posts -= int(close)
                return self._reply(202, b'{"status":"OK"}', close)

            def _next_request_waiting(self):
                # Already read into rfile's buffer along with this request...
                self.connection.setblocking(False)
                try:
                    if self.rfile.peek(1):
                        return True
                except OSError:
                    pass
                finally:
                    self.connection.setblocking(True)
                # ...or arriving without waiting for this request's answer.
                return bool(select.select([self.connection], [], [], 1.0)[0])

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # Clients are killed at the end of tests, often mid-connection.
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def invoke(self, event, *, payload=None, timeout_ms=3000, headers=None):
        """Queues one event and returns its Invocation (call .wait())."""
        if payload is None:
            payload = json.dumps(event).encode()
        inv = Invocation(payload, int(time.time() * 1000) + timeout_ms, headers or {})
        self.invocations[inv.request_id] = inv
        self.pending.put(inv)
        return inv

    def stop(self):
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def runtime_env(api, task_root, handler, extra=None):
    env = {
        "AWS_LAMBDA_RUNTIME_API": api.address,
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(REPO_ROOT / "runtimes"),
        "AWS_LAMBDA_FUNCTION_NAME": "fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]abc",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EXECUTION_ENV": "AWS_Lambda_tamaya",
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
    }
    env.update(extra or {})
    return env


class RuntimeProcess:
    """A runtime client started the way the daemon starts it, with its output collected."""

    def __init__(self, kind, api, task_root, handler, extra_env=None):
        if kind == "python":
            argv = [PYTHON, "-I", str(PYTHON_BOOTSTRAP)]
        else:
            argv = [NODE, str(NODE_BOOTSTRAP)]
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            cwd=str(task_root),
            env=runtime_env(api, task_root, handler, extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._out = []
        self._err = []
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _drain(stream, sink):
        for line in iter(stream.readline, b""):
            sink.append(line.decode("utf-8", "replace"))

    def stdout_lines(self):
        return [line.rstrip("\n") for line in list(self._out)]

    def stdout(self):
        return "".join(self._out)

    def stderr(self):
        return "".join(self._err)

    def wait_for_output(self, needle, timeout=WAIT_SECONDS):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.stdout():
                return
            time.sleep(0.01)
        raise AssertionError(f"{needle!r} not in output: {self.stdout()!r} {self.stderr()!r}")

    def wait_exit(self, timeout=WAIT_SECONDS):
        code = self.proc.wait(timeout)
        for t in self._readers:
            t.join(timeout)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for t in self._readers:
            t.join(5)


def write_files(root, files):
    for name, text in files.items():
        path = Path(root) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return Path(root)


def have_interpreters():
    return os.path.exists(PYTHON) and os.path.exists(NODE)
