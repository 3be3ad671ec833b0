"""runtimes/node/generic.js: a generic Node.js instance that waits on its stdin socket, takes one
function's identity and environment, then runs bootstrap.js against the Runtime API.
(The sandbox side, the mounts and cgroups, is tested in tests/unit/sandbox_node_pool_test.cpp and
tests/integration/test_node_pool.py.)"""

import json
import os
import shutil
import socket
import subprocess
import tempfile

import pytest

from runtime_api import NODE, REPO_ROOT, WAIT_SECONDS, runtime_env, write_files

GENERIC = REPO_ROOT / "runtimes" / "node" / "generic.js"

APP = """
exports.handler = async (event) => ({
  echo: event, uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(),
  cwd: process.cwd(), only: process.env.ONLY_HERE, pool: process.env.POOL_ONLY || null,
  argv1: process.argv[1],
});
"""


def recv_line(sock):
    sock.settimeout(WAIT_SECONDS)
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(256)
        if not chunk:
            break
        data += chunk
    return data.decode().strip()


@pytest.fixture
def generic(tmp_path):
    procs = []

    def start():
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen([NODE, str(GENERIC)], stdin=theirs, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd="/",
                                env={"PATH": "/usr/bin:/bin", "POOL_ONLY": "1"})
        theirs.close()
        procs.append((proc, ours))
        return proc, ours

    yield start
    for proc, sock in procs:
        sock.close()
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=WAIT_SECONDS)


@pytest.fixture
def task_root():
    # Under /tmp, which any uid may traverse (the basetemp's parents may not be).
    root = tempfile.mkdtemp(prefix="tamaya-generic-")
    os.chmod(root, 0o755)
    task = write_files(root, {"app.js": APP})
    os.chmod(task / "app.js", 0o644)
    yield task
    shutil.rmtree(root, ignore_errors=True)


def test_specialised_instance_runs_the_function(api, generic, task_root):
    task = task_root
    proc, sock = generic()
    assert recv_line(sock) == "ready"
    uid = 65534 if os.geteuid() == 0 else 0
    env = runtime_env(api, task, "app.handler", {"ONLY_HERE": "yes"})
    sock.sendall((json.dumps({"uid": uid, "gid": uid, "env": env, "cwd": str(task)}) + "\n").encode())
    assert recv_line(sock) == "ok"
    body = api.invoke({"k": 1}).wait().json()
    assert body["echo"] == {"k": 1}
    assert body["uid"] == body["gid"] == (uid if uid else os.geteuid())
    if uid:
        assert body["groups"] in ([], [uid])
    assert body["cwd"] == str(task)
    assert body["only"] == "yes" and body["pool"] is None  # the pool's environment is gone
    assert body["argv1"].endswith("bootstrap.js")


def test_bad_spec_is_refused_before_any_function_code(generic):
    proc, sock = generic()
    assert recv_line(sock) == "ready"
    sock.sendall(b"{not json\n")
    assert recv_line(sock).startswith("error ")
    assert proc.wait(WAIT_SECONDS) == 1


def test_daemon_gone_before_specialising_ends_it(generic):
    proc, sock = generic()
    assert recv_line(sock) == "ready"
    sock.close()
    assert proc.wait(WAIT_SECONDS) == 0
