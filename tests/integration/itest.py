"""Helpers of the integration suite: code packaging, the Daemon wrapper (a real `tamaya serve`
and a client for its admin API and CLI), log and error assertions.

The binary comes from $TAMAYA_BIN (scripts/test.sh sets it), else build/release/tamaya.
"""

import base64
import io
import json
import os
import re
import signal
import socket
import stat
import subprocess
import time
import zipfile
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = Path(__file__).resolve().parent / "functions"
TAMAYA_BIN = Path(os.environ.get("TAMAYA_BIN", REPO / "build" / "release" / "tamaya"))

# Defaults of this suite, shorter than the daemon's so a test never waits long for a
# drain; a test overrides any of them with the `settings` marker.
SUITE_SETTINGS = {"drain_timeout_ms": 5000, "log_level": "info"}
START_TIMEOUT_S = 15.0  # the daemon answers /v1/health by then
STOP_GRACE_S = 5.0  # beyond drain_timeout_ms, for stopping instances and flushing logs
HTTP_TIMEOUT_S = 30.0  # any one admin API call of a test
CLI_TIMEOUT_S = 60.0
POLL_S = 0.02


# --- code packaging ---------------------------------------------------------------------------


def zip_tree(root):
    """A zip of the tree under root with unix modes kept (so `bootstrap` stays executable)."""
    root = Path(root)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if root.is_file():
            zf.write(root, root.name)
        else:
            for path in sorted(root.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    zf.write(path, path.relative_to(root).as_posix())
    return buf.getvalue()


def zip_entries(entries):
    """A zip from (name, bytes, unix_mode) triples; the mode may say symlink (S_IFLNK)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.create_system = 3  # unix, so external_attr carries the mode
            info.external_attr = (mode & 0xFFFF) << 16
            zf.writestr(info, data)
    return buf.getvalue()


def function_dir(name):
    path = FUNCTIONS / name
    assert path.is_dir(), f"test function {name} is missing at {path}"
    return path


def b64(data):
    return base64.b64encode(data).decode("ascii")


def log_tail(response):
    """The decoded X-Tamaya-Log-Result of an invoke answer."""
    value = response.headers.get("X-Tamaya-Log-Result")
    assert value is not None, f"no X-Tamaya-Log-Result header in {dict(response.headers)}"
    return base64.b64decode(value).decode("utf-8", "replace")


def report_line(log_text):
    lines = [line for line in log_text.splitlines() if line.startswith("REPORT RequestId:")]
    assert len(lines) == 1, f"expected one REPORT line in:\n{log_text}"
    return lines[0]


def assert_api_error(response, status, code):
    """The documented error shape: {"error": {"code", "message"}} with a useful message."""
    assert response.status_code == status, (
        f"expected {status} {code}, got {response.status_code}: {response.text[:500]}"
    )
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    doc = response.json()
    assert set(doc) == {"error"}, doc
    assert doc["error"]["code"] == code, doc
    assert isinstance(doc["error"]["message"], str) and len(doc["error"]["message"]) > 10, doc
    return doc["error"]["message"]


def wait_until(predicate, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(POLL_S)


def metric(daemon, name):
    """One unlabelled series of the daemon's /metrics, as a float."""
    text = daemon.get("/metrics").text
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"no {name} in /metrics"
    return float(m.group(1))


def pids_with_env(marker_key, marker_value):
    """Live processes whose environment holds marker_key=marker_value (this uid's only)."""
    needle = f"{marker_key}={marker_value}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env and state != b"Z":
            pids.append(int(entry))
    return pids


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the daemon ---------------------------------------------------------------------------------


class Daemon:
    """One `tamaya serve` process and a client for it."""

    def __init__(self, data_dir, log_dir, settings=None, env=None):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.settings = dict(SUITE_SETTINGS)
        self.settings.update(settings or {})
        self.extra_env = env or {}
        self.proc = None
        self.port = None
        self.base = None
        self.returncode = None
        self.runs = 0

    # lifecycle

    def start(self):
        assert TAMAYA_BIN.exists(), f"tamaya binary not found at {TAMAYA_BIN}; set TAMAYA_BIN"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAMAYA_")}
        env.update(self.extra_env)
        # The API gateway's public port (default 8080) must not collide between daemons run
        # side by side; through the environment so a --set in settings still wins.
        if "gateway_port" not in self.settings:
            self.gateway_port = free_port()
            env["TAMAYA_GATEWAY_PORT"] = str(self.gateway_port)
        # A port taken between free_port() and the daemon's bind makes it exit 1; try again.
        for _ in range(3):
            self.runs += 1
            self.port = free_port()
            self.base = f"http://127.0.0.1:{self.port}"
            self.stderr_path = self.log_dir / f"daemon-{self.runs}.stderr"
            self.stdout_path = self.log_dir / f"daemon-{self.runs}.stdout"
            cmd = [str(TAMAYA_BIN), "serve", "--data-dir", str(self.data_dir),
                   "--admin-host", "127.0.0.1", "--admin-port", str(self.port)]
            for key, value in self.settings.items():
                cmd += ["--set", f"{key}={value}"]
            with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
                self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                             env=env, cwd=self.log_dir)
            self.returncode = None
            if self._wait_healthy():
                return self
            if "address already in use" not in self.stderr().lower():
                break
        raise AssertionError(f"tamaya serve did not become healthy:\n{self.stderr()}")

    def _wait_healthy(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                return False
            try:
                r = requests.get(self.base + "/v1/health", timeout=1)
                if r.status_code == 200 and r.json().get("status") == "ok":
                    return True
            except requests.RequestException:
                pass
            time.sleep(POLL_S)
        self.proc.kill()
        self.proc.wait(5)
        return False

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def drain_deadline_s(self):
        return int(self.settings["drain_timeout_ms"]) / 1000 + STOP_GRACE_S

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait_exit(self):
        """Waits up to the drain deadline; the exit code, or None when still running."""
        try:
            self.returncode = self.proc.wait(self.drain_deadline_s)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self):
        """SIGTERM, then the exit code (None if it outlived the drain deadline: then killed)."""
        if not self.running:
            self.returncode = self.proc.returncode
            return self.returncode
        self.signal(signal.SIGTERM)
        rc = self.wait_exit()
        if rc is None:
            self.proc.kill()
            self.proc.wait(5)
        return rc

    def stderr(self, last_bytes=8000):
        try:
            return self.stderr_path.read_bytes()[-last_bytes:].decode("utf-8", "replace")
        except OSError:
            return ""

    # admin API

    def request(self, method, path, **kwargs):
        kwargs.setdefault("timeout", HTTP_TIMEOUT_S)
        return requests.request(method, self.base + path, **kwargs)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post_json(self, path, doc, **kwargs):
        return self.request("POST", path, data=json.dumps(doc),
                            headers={"Content-Type": "application/json"}, **kwargs)

    def create(self, name, code, runtime="python3", handler="app.handler", **config):
        """POST /v1/functions; code is a test function's name, a Path, or zip bytes."""
        if isinstance(code, str):
            code = zip_tree(function_dir(code))
        elif isinstance(code, Path):
            code = zip_tree(code)
        body = {"name": name, "runtime": runtime, "code": {"zip_base64": b64(code)}}
        if handler is not None:
            body["handler"] = handler
        body.update(config)
        return self.post_json("/v1/functions", body)

    def deploy(self, name, code, runtime="python3", handler="app.handler", **config):
        r = self.create(name, code, runtime=runtime, handler=handler, **config)
        assert r.status_code == 201, f"deploy {name}: {r.status_code} {r.text}"
        return r.json()

    def put_code(self, name, code):
        if isinstance(code, str):
            code = zip_tree(function_dir(code))
        elif isinstance(code, Path):
            code = zip_tree(code)
        return self.request("PUT", f"/v1/functions/{name}/code", data=code,
                            headers={"Content-Type": "application/zip"})

    def patch(self, name, fields):
        return self.request("PATCH", f"/v1/functions/{name}", data=json.dumps(fields),
                            headers={"Content-Type": "application/json"})

    def invoke(self, name, event=None, data=None, qualifier=None, tail=False, **kwargs):
        """POST /invoke; event is JSON-encoded, data is sent as it is."""
        if data is None:
            data = json.dumps({} if event is None else event)
        headers = {"Content-Type": "application/json"}
        if tail:
            headers["X-Tamaya-Log-Type"] = "Tail"
        params = {"qualifier": qualifier} if qualifier is not None else None
        return self.request("POST", f"/v1/functions/{name}/invoke", data=data, headers=headers,
                            params=params, **kwargs)

    def invoke_ok(self, name, event=None, **kwargs):
        r = self.invoke(name, event, **kwargs)
        assert r.status_code == 200, f"invoke {name}: {r.status_code} {r.text}"
        assert "X-Tamaya-Function-Error" not in r.headers, f"invoke {name} failed: {r.text}"
        return r

    def functions(self):
        r = self.get("/v1/functions")
        assert r.status_code == 200, r.text
        return r.json()["functions"]

    def logs(self, name, **params):
        r = self.get(f"/v1/functions/{name}/logs", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_logs(self, name, request_id, timeout_s=5.0):
        """The log events of one invocation, once its REPORT line is stored."""

        def complete():
            events = self.logs(name, request_id=request_id)["events"]
            if any(e["message"].startswith("REPORT RequestId:") for e in events):
                return events
            return None

        return wait_until(complete, timeout_s, f"the REPORT line of {request_id} in the logs")

    # CLI

    def cli(self, *args, input=None, timeout=CLI_TIMEOUT_S, endpoint=None):
        cmd = [str(TAMAYA_BIN), "--endpoint", endpoint or self.base, *map(str, args)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TAMAYA_")}
        return subprocess.run(cmd, input=input if input is not None else "",
                              capture_output=True, text=True, timeout=timeout, env=env)


def write_handler(directory, source, filename="app.py"):
    """A one-file function in directory (created), returned as its Path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_text(source)
    return directory


def parse_report(line):
    """The fields of a REPORT line as a dict of name -> text."""
    fields = {}
    for part in line.split("\t"):
        key, _, value = part.partition(":")
        fields[key.strip()] = value.strip()
    return fields


MB_RE = re.compile(r"(\d+) MB")


def executable(path):
    return bool(Path(path).stat().st_mode & stat.S_IXUSR)
