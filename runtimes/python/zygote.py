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

Sandboxed (the daemon's sandbox/zygote.cpp), a spawn also carries "specialise": {...} and a
third fd, a SOCK_SEQPACKET handshake socket (and a fourth, the instance's network namespace,
when "netns" is set). The zygote then runs as root inside the function's namespaces but with no
function code loaded; each child is made pid 1 of a new pid namespace and walls itself in before
the handler is imported:
  child -> daemon  "hello"         (the kernel attaches the child's pid as the daemon sees it)
  daemon -> child  "go"            (after writing that pid into the instance's cgroups)
  child            new mount/ipc/uts namespaces, fresh /proc, private /tmp, network namespace,
                   environment, rlimits, uid/gid, no_new_privs, seccomp filter
  child -> daemon  "ok" or "error: ..."   then the runtime client's loop
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
    import resource

    _libc = ctypes.CDLL(None, use_errno=True)
except Exception:  # a host without ctypes still works, without the death signal
    _libc = None

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND = 1, 2, 4, 8, 32, 4096
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_SET_MM = 35
PR_SET_MM_MAP = 14
PR_SET_DUMPABLE = 4

_own_pidns = None  # the zygote's pid namespace, to return to after each fork


def _check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


if _libc is not None:
    class _SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    class _MmMap(ctypes.Structure):  # struct prctl_mm_map
        _fields_ = [(name, ctypes.c_uint64) for name in (
            "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
            "arg_start", "arg_end", "env_start", "env_end", "auxv")] + [
            ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]

    _libc.sbrk.restype = ctypes.c_void_p


def _set_proc_environ(env):
    # os.environ changes only this interpreter's copy; /proc/<pid>/environ shows the block the
    # kernel was told about, which is the zygote's. Point the kernel at the instance's own, so
    # operators (and tests) see what the instance really runs with. PR_SET_MM_MAP (all fields
    # at once, the others as they are) needs no CAP_SYS_RESOURCE, which containers often drop;
    # failure only costs that view.
    block = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()) or b"\0"
    buf = ctypes.create_string_buffer(block, len(block))
    stat = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    field = lambda n: int(stat[n - 3])  # noqa: E731 - proc(5) numbers fields from 1; [0] is 3
    mm = _MmMap(field(26), field(27), field(45), field(46), field(47), _libc.sbrk(0), field(28),
                field(48), field(49), ctypes.addressof(buf), ctypes.addressof(buf) + len(block),
                0, 0, 0xFFFFFFFF)
    _libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.byref(mm), ctypes.sizeof(mm), 0)
    return buf


def _specialise(spec, env, netns_fd):
    """Walls the child in, as the daemon's launcher does for a directly started instance."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    if netns_fd is not None:
        _check(_libc.setns(netns_fd, CLONE_NEWNET), "setns(network)")
        os.close(netns_fd)
    # This process is pid 1 of its own pid namespace: a fresh /proc shows only its own tree.
    _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
    _check(_libc.mount(b"/proc/sys", b"/proc/sys", None, MS_BIND, None), "bind /proc/sys")
    _check(_libc.mount(None, b"/proc/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None),
           "remount /proc/sys read-only")
    tmp_opts = f"size={int(spec['tmp_bytes'])},mode=1777".encode()
    _check(_libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, tmp_opts), "mount /tmp")
    keep = _set_proc_environ(env)
    for res, value in spec.get("rlimits", []):
        resource.setrlimit(res, (value, value))
    uid, gid = int(spec.get("uid", 0)), int(spec.get("gid", 0))
    if uid:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        # Changing uid made this process non-dumpable (its /proc files root's); an exec'd
        # instance is dumpable again after execve, and this one must look the same.
        _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    bpf = bytes.fromhex(spec.get("seccomp", ""))
    if bpf:
        prog_buf = ctypes.create_string_buffer(bpf, len(bpf))
        prog = _SockFprog(len(bpf) // 8, ctypes.addressof(prog_buf))
        _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")
    return keep


def _send(ctl, doc):
    ctl.send(json.dumps(doc).encode())


def _child(ctl, wake_r, wake_w, spec, fds):
    # The child keeps nothing of the zygote's plumbing.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.close(wake_r)
    os.close(wake_w)
    if _own_pidns is not None:
        os.close(_own_pidns)
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
    if "specialise" in spec:
        hs = socket.socket(fileno=fds[2])
        hs.send(b"hello")
        if hs.recv(16) != b"go":
            os._exit(1)  # the daemon gave up on this child
        try:
            keep = _specialise(spec["specialise"], spec.get("env") or {}, fds[3] if len(fds) > 3 else None)
            os.closerange(3, hs.fileno())
            os.closerange(hs.fileno() + 1, 1 << 16)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal to the zygote
            hs.send(f"error: {e}".encode()[:4000])
            os._exit(127)
        hs.send(b"ok")
        hs.close()
        spec["_environ_block"] = keep
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
    global _own_pidns
    ctl = socket.socket(fileno=0)
    _own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
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
        msg, fds, _, _ = socket.recv_fds(ctl, MAX_MESSAGE_BYTES, 4)
        if not msg:
            return 0  # the daemon is gone
        try:
            spec = json.loads(msg)
            if not isinstance(spec, dict):
                raise ValueError("not a JSON object")
            want = 2
            if "specialise" in spec:
                if _libc is None:
                    raise ValueError("specialising needs ctypes, which this Python lacks")
                want = 4 if spec["specialise"].get("netns") else 3
            if len(fds) != want:
                raise ValueError(f"expected {want} fds (stdout, stderr[, handshake, netns]), got {len(fds)}")
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            _send(ctl, {"error": f"bad spawn request: {e}"})
            continue
        try:
            # Each sandboxed child is pid 1 of a pid namespace of its own, as a directly started
            # instance is; the zygote goes back to its own namespace right after the fork.
            new_pidns = "specialise" in spec
            pid = -1
            if new_pidns:
                _check(_libc.unshare(CLONE_NEWPID), "unshare(pid)")
            try:
                pid = os.fork()
            finally:
                if new_pidns and pid != 0:
                    _check(_libc.setns(_own_pidns, CLONE_NEWPID), "setns(own pid namespace)")
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
            except BaseException:  # noqa: BLE001 - said on the instance's stderr, then exit 1
                import traceback

                traceback.print_exc()
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
