"""A Python zygote: imports the runtime client once, then forks instances on request.

Started by the daemon as `python3 -I zygote.py` inside the function's sandbox, with a
SOCK_SEQPACKET control socket as fd 0. Each instance is a fork of this process, so the
interpreter start and the runtime client's imports are paid once per function, not per
instance, and their pages stay shared between instances (gc.freeze keeps the collector from
touching them). The handler's module is imported in each instance after the fork, as Lambda
runs a function's init code once per execution environment.

Protocol (one JSON document per message):
  daemon -> zygote  {"env": {...}, "cgroup_procs": "path or empty"}  + SCM_RIGHTS [stdout, stderr]
  zygote -> daemon  {"pid": N} or {"error": "..."}   (the answer to each spawn, in order)
                    {"exit": N, "status": S}         (waitpid status of an instance that ended)
The zygote exits when the daemon closes the socket.
"""

import sys

sys.path.insert(0, __file__.rpartition("/")[0] or ".")
try:
    import tamaya_runtime
finally:
    del sys.path[0]

import gc
import json
import os
import select
import signal
import socket

MAX_MESSAGE_BYTES = 1 << 20
PR_SET_PDEATHSIG = 1

try:
    import ctypes

    _libc = ctypes.CDLL(None, use_errno=True)
except Exception:  # a host without ctypes still works, without the death signal
    _libc = None


def _send(ctl, doc):
    ctl.send(json.dumps(doc).encode())


def _child(ctl, wake_r, wake_w, spec, fds):
    # The child keeps nothing of the zygote's plumbing.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.close(wake_r)
    os.close(wake_w)
    os.setsid()
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in (devnull, fds[0], fds[1]):
        if fd > 2:
            os.close(fd)
    ctl.close()
    procs = spec.get("cgroup_procs")
    if procs:
        with open(procs, "w") as f:
            f.write(str(os.getpid()))
    env = spec.get("env") or {}
    os.environ.clear()
    os.environ.update(env)
    root = env.get("LAMBDA_TASK_ROOT")
    if root:
        os.chdir(root)
    tamaya_runtime.run()


def _reap(ctl):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(ctl, {"exit": pid, "status": status})


def main():
    ctl = socket.socket(fileno=0)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    # Everything imported so far is shared with every instance; keep the collector off it.
    gc.collect()
    gc.freeze()
    _send(ctl, {"ready": True})
    while True:
        try:
            readable, _, _ = select.select([ctl, wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in readable:
            os.read(wake_r, 4096)
            _reap(ctl)
        if ctl not in readable:
            continue
        msg, fds, _, _ = socket.recv_fds(ctl, MAX_MESSAGE_BYTES, 2)
        if not msg:
            return 0  # the daemon is gone
        try:
            spec = json.loads(msg)
            if len(fds) != 2:
                raise ValueError(f"expected 2 fds (stdout, stderr), got {len(fds)}")
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            _send(ctl, {"error": f"bad spawn request: {e}"})
            continue
        try:
            pid = os.fork()
        except OSError as e:
            for fd in fds:
                os.close(fd)
            _send(ctl, {"error": f"fork failed: {e}"})
            continue
        if pid == 0:
            code = 1
            try:
                _child(ctl, wake_r, wake_w, spec, fds)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            finally:
                # Never return into the zygote's loop, and never run its atexit hooks.
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        for fd in fds:
            os.close(fd)
        _send(ctl, {"pid": pid})


if __name__ == "__main__":
    sys.exit(main())
