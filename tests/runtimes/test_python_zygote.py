"""The Python zygote: instances forked from one process serve invocations like a fresh client."""

import json
import os
import select
import socket
import subprocess
import time

from runtime_api import PYTHON, REPO_ROOT, runtime_env, write_files

ZYGOTE = REPO_ROOT / "runtimes" / "python" / "zygote.py"


class Zygote:
    def __init__(self):
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([PYTHON, "-I", str(ZYGOTE)], stdin=theirs, env={"PATH": "/usr/bin:/bin"})
        theirs.close()
        self.exits = {}
        assert self.recv()["ready"] is True

    def recv(self, timeout=15):
        ready, _, _ = select.select([self.ctl], [], [], timeout)
        assert ready, "zygote did not answer"
        return json.loads(self.ctl.recv(1 << 20))

    def spawn(self, env):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        socket.send_fds(self.ctl, [json.dumps({"env": env}).encode()], [out_w, err_w])
        os.close(out_w)
        os.close(err_w)
        while True:
            msg = self.recv()
            if "exit" in msg:
                self.exits[msg["exit"]] = msg["status"]
                continue
            assert "pid" in msg, msg
            return msg["pid"], out_r, err_r

    def wait_exit(self, pid, timeout=10):
        deadline = time.monotonic() + timeout
        while pid not in self.exits and time.monotonic() < deadline:
            msg = self.recv(deadline - time.monotonic())
            if "exit" in msg:
                self.exits[msg["exit"]] = msg["status"]
        return self.exits.get(pid)

    def close(self):
        self.ctl.close()
        self.proc.wait(timeout=10)


def test_forked_instances_serve_invocations_with_their_own_state(api, tmp_path):
    root = write_files(tmp_path / "task", {
        "app.py": "import os\ncount = 0\ndef handler(event, context):\n"
                  "    global count\n    count += 1\n    print('hi', event['n'])\n"
                  "    return {'count': count, 'pid': os.getpid(), 'fn': context.function_name}\n"
    })
    z = Zygote()
    try:
        env = runtime_env(api, root, "app.handler")
        pid_a, out_a, _ = z.spawn(env)
        pid_b, _, _ = z.spawn(env)
        assert pid_a != pid_b
        results = [api.invoke({"n": i}).wait().json() for i in range(4)]
        # Each instance counts its own invocations from 1: state is not shared.
        pids = {r["pid"] for r in results}
        assert pids <= {pid_a, pid_b}
        for pid in pids:
            counts = [r["count"] for r in results if r["pid"] == pid]
            assert counts == list(range(1, len(counts) + 1))
        assert all(r["fn"] == env["AWS_LAMBDA_FUNCTION_NAME"] for r in results)
        os.kill(pid_a, 9)
        assert z.wait_exit(pid_a) == 9  # waitpid status of SIGKILL
        os.set_blocking(out_a, False)
    finally:
        z.close()


def test_zygote_exits_when_the_daemon_closes_the_socket():
    z = Zygote()
    z.ctl.close()
    assert z.proc.wait(timeout=10) == 0


def test_bad_request_is_an_error_not_a_crash():
    z = Zygote()
    try:
        z.ctl.send(b"not json")
        assert "error" in z.recv()
        z.ctl.send(b"{}")  # no fds
        assert "error" in z.recv()
    finally:
        z.close()
