"""The Python zygote: instances forked from one process serve invocations like a fresh client."""

import json
import os
import select
import signal
import socket
import subprocess
import time

import pytest

from runtime_api import PYTHON, REPO_ROOT, runtime_env, write_files

ZYGOTE = REPO_ROOT / "runtimes" / "python" / "zygote.py"


class Zygote:
    def __init__(self, *args):
        self.ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([PYTHON, "-I", str(ZYGOTE), *args], stdin=theirs,
                                     env={"PATH": "/usr/bin:/bin"})
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


LOADER_APP = (
    "import sys\n"
    "def handler(event, context):\n"
    "    return {'loader': type(__loader__).__name__, 'says': 'compiled',\n"
    "            'finder_left': any(type(f).__name__ == '_CompiledAheadFinder' for f in sys.meta_path)}\n"
)


def test_instances_run_the_handler_module_the_zygote_compiled_ahead(api, tmp_path):
    root = write_files(tmp_path / "task", {"app.py": LOADER_APP})
    z = Zygote("--handler=app.handler", f"--task-root={root}")
    try:
        z.spawn(runtime_env(api, root, "app.handler"))
        # The module came from the zygote's code object, and the finder is gone once used.
        assert api.invoke({}).wait().json() == {"loader": "_CompiledAheadLoader", "says": "compiled",
                                                "finder_left": False}
    finally:
        z.close()


def test_a_handler_module_changed_since_the_zygote_compiled_it_is_compiled_again(api, tmp_path):
    root = write_files(tmp_path / "task", {"app.py": LOADER_APP})
    z = Zygote("--handler=app.handler", f"--task-root={root}")
    try:
        write_files(root, {"app.py": LOADER_APP.replace("'compiled'", "'changed since'")})
        z.spawn(runtime_env(api, root, "app.handler"))
        answer = api.invoke({}).wait().json()
        assert (answer["loader"], answer["says"]) == ("SourceFileLoader", "changed since")
    finally:
        z.close()


IMPORTING_APP = (
    "import sys\n"
    "import helper\n"
    "from pkg import sub\n"
    "def handler(event, context):\n"
    "    if event.get('late'):\n"
    "        import late\n"
    "    mods = ('app', 'helper', 'pkg', 'pkg.sub', 'pkg.sibling', 'late')\n"
    "    left = [sorted(f.entries) for f in sys.meta_path if type(f).__name__ == '_CompiledAheadFinder']\n"
    "    return {'loaders': {m: type(sys.modules[m].__loader__).__name__ for m in mods if m in sys.modules},\n"
    "            'says': helper.SAYS + sub.SAYS, 'left': left}\n"
)
IMPORTED = {
    "helper.py": "SAYS = 'helper '\n",
    "pkg/__init__.py": "",
    "pkg/sub.py": "from . import sibling\nSAYS = 'sub ' + sibling.SAYS\n",
    "pkg/sibling.py": "SAYS = 'sibling'\n",
    "late.py": "X = 1\n",
    "unused.py": "X = 1\n",
}


def test_modules_the_handler_imports_are_compiled_ahead_too(api, tmp_path):
    root = write_files(tmp_path / "task", {"app.py": IMPORTING_APP, **IMPORTED})
    z = Zygote("--handler=app.handler", f"--task-root={root}")
    try:
        z.spawn(runtime_env(api, root, "app.handler"))
        answer = api.invoke({}).wait().json()
        assert answer["says"] == "helper sub sibling"
        # Plain, package and relative imports all came compiled; an import inside the handler
        # was compiled too (not yet run), a module nothing imports was not.
        assert answer["loaders"] == {m: "_CompiledAheadLoader" for m in ("app", "helper", "pkg", "pkg.sub",
                                                                          "pkg.sibling")}
        assert answer["left"] == [["late"]]
        answer = api.invoke({"late": True}).wait().json()
        assert answer["loaders"]["late"] == "_CompiledAheadLoader"
        assert answer["left"] == []  # the finder leaves once its last module is taken
    finally:
        z.close()


def _link_helper_from_outside(root, tmp_path):
    outside = write_files(tmp_path / "outside", {"secret.py": "SAYS = 'elsewhere '\n"})
    os.remove(root / "helper.py")
    os.symlink(outside / "secret.py", root / "helper.py")


# A module changed after the zygote compiled it is compiled again; one whose file is a link out
# of the code is not read by the zygote (root) at all, and the instance's import follows the
# link with the instance's own rights. Either way the rest stays compiled ahead.
@pytest.mark.parametrize("before_zygote, after_zygote", [
    (_link_helper_from_outside, None),
    (None, lambda root, _: write_files(root, {"helper.py": "SAYS = 'elsewhere '\n"})),
], ids=["linked from outside", "changed since"])
def test_a_module_not_compiled_ahead_is_imported_as_usual(api, tmp_path, before_zygote, after_zygote):
    root = write_files(tmp_path / "task", {"app.py": IMPORTING_APP, **IMPORTED})
    if before_zygote:
        before_zygote(root, tmp_path)
    z = Zygote("--handler=app.handler", f"--task-root={root}")
    try:
        if after_zygote:
            after_zygote(root, tmp_path)
        z.spawn(runtime_env(api, root, "app.handler"))
        answer = api.invoke({}).wait().json()
        assert answer["says"] == "elsewhere sub sibling"
        assert answer["loaders"]["helper"] == "SourceFileLoader"
        assert answer["loaders"]["pkg.sub"] == "_CompiledAheadLoader"
    finally:
        z.close()


# The zygote leaves a module that does not compile to the instance's import, which fails the
# init as it does without a zygote, naming the file.
@pytest.mark.parametrize("files, broken", [
    ({"app.py": "def handler(event, context)\n    return 1\n"}, "app.py"),
    ({"app.py": IMPORTING_APP, **IMPORTED, "pkg/sibling.py": "SAYS = (\n"}, "sibling.py"),
], ids=["the handler's module", "a module it imports"])
def test_a_module_that_does_not_compile_fails_in_the_instance_as_without_a_zygote(api, tmp_path, files, broken):
    root = write_files(tmp_path / "task", files)
    z = Zygote("--handler=app.handler", f"--task-root={root}")
    try:
        pid, _, _ = z.spawn(runtime_env(api, root, "app.handler"))
        assert api.init_error_event.wait(10)
        error = json.loads(api.init_error[1])
        assert error["errorType"] == "Runtime.UserCodeSyntaxError"
        assert broken in error["stackTrace"][0]
        assert z.wait_exit(pid) is not None
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


def test_a_spawn_is_served_before_children_asked_for_later_ones(tmp_path):
    """Cold starts in a burst: the daemon asks for children ahead of need after each start, so a
    spawn can arrive behind several such asks. The zygote forks the spawn's child first and the
    children ahead of need after it (all are still made)."""
    if os.geteuid() != 0:
        pytest.skip("children ahead of need unshare namespaces and mount /proc and /tmp: root only")
    ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # A private mount namespace: the children's /proc and /tmp mounts stay there.
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", PYTHON, "-I", str(ZYGOTE),
                             f"--prefork-tmp-bytes={8 << 20}"], stdin=theirs, env={"PATH": "/usr/bin:/bin"})
    theirs.close()
    offers = []

    def recv(timeout=15):
        ready, _, _ = select.select([ctl], [], [], timeout)
        assert ready, "zygote did not answer"
        msg, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 4)
        doc = json.loads(msg)
        if "offer" in doc:
            assert len(fds) == 1, doc
            offers.append(socket.socket(fileno=fds[0]))
        return doc

    try:
        assert recv()["ready"] is True
        assert "offer" in recv()  # the first child ahead of need comes unasked
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        # Everything arrives at once: held while the zygote is stopped.
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                ctl.send(b'{"prefork":true}')
            socket.send_fds(ctl, [json.dumps({"env": {}}).encode()], [out_w, err_w])
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        os.close(out_w)
        os.close(err_w)
        first = recv()
        while "exit" in first:
            first = recv()
        assert "pid" in first, first
        while len(offers) < 4:
            assert "error" not in recv(30)
    finally:
        for chan in offers:
            chan.close()  # an offered child closed unused exits
        ctl.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
