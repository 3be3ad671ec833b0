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

Offers (started with `--prefork-tmp-bytes=N`, as the daemon does): the zygote forks a child
ahead of need, at start and on each {"prefork": true}, and sends the daemon
{"offer": pid} + SCM_RIGHTS [a SOCK_SEQPACKET socket to that child, with SO_PASSCRED] (the
daemon keeps `python_zygote_prefork` of them, asking for one more each time it takes one). The
child does everything that needs nothing of the instance (its own pid, mount, ipc and uts
namespaces, /proc, a /tmp of N bytes, the zygote's plumbing closed, _rehearse), says "hello"
on that socket and waits, as root and running no function code. A cold start then talks to it
directly, without the zygote:
  daemon           reads "hello" (the child's pid), writes that pid into the instance's cgroups
  daemon -> child  the spawn request, as above, + SCM_RIGHTS [stdout, stderr(, netns)]: "go"
  child            network namespace, /tmp size, environment, rlimits, uid/gid, no_new_privs,
                   seccomp; then "ok" or "error: ..." as above
So the fork, its copy-on-write faults, the namespaces and mounts are off the request path, and
every wall that depends on the instance comes after the request, as for a child forked on
demand. An offered child that is closed unused exits. _rehearse runs, on made-up data, the code
the child runs after "go" up to the first response (specialising, the environment, the client's
first GET, the handler's call, the POST), so that almost none of its copy-on-write faults are
left for the request.
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
REHEARSAL_ENV_VARS = 40  # the daemon sets ~20 (AWS_*, LAMBDA_*, _HANDLER, TZ, …) plus the function's
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


def _mm_fields():
    """This process's memory map fields from /proc/self/stat, read before the instance is known
    (they do not change: only brk moves, and that one is read when it is used)."""
    stat = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
    field = lambda n: int(stat[n - 3])  # noqa: E731 - proc(5) numbers fields from 1; [0] is 3
    return [field(n) for n in (26, 27, 45, 46, 47, 28, 48, 49)]


def _mm_map(env, fields):
    block = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items()) or b"\0"
    buf = ctypes.create_string_buffer(block, len(block))
    start_code, end_code, start_data, end_data, start_brk, start_stack, arg_start, arg_end = fields
    mm = _MmMap(start_code, end_code, start_data, end_data, start_brk, _libc.sbrk(0), start_stack,
                arg_start, arg_end, ctypes.addressof(buf), ctypes.addressof(buf) + len(block),
                0, 0, 0xFFFFFFFF)
    return mm, buf


def _set_proc_environ(env, fields):
    # os.environ changes only this interpreter's copy; /proc/<pid>/environ shows the block the
    # kernel was told about, which is the zygote's. Point the kernel at the instance's own, so
    # operators (and tests) see what the instance really runs with. PR_SET_MM_MAP (all fields
    # at once, the others as they are) needs no CAP_SYS_RESOURCE, which containers often drop;
    # failure only costs that view.
    mm, buf = _mm_map(env, fields)
    _libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.byref(mm), ctypes.sizeof(mm), 0)
    return buf


def _tmp_options(tmp_bytes):
    return f"size={int(tmp_bytes)},mode=1777".encode()


def _prepare(tmp_bytes):
    """The walls that need nothing of the instance, as root, before (or right after) a spawn:
    new mount/ipc/uts namespaces, a fresh /proc (this process is pid 1 of its own pid
    namespace, so it shows only its own tree) with /proc/sys read-only, a private /tmp."""
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    _check(_libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None), "mount /proc")
    _check(_libc.mount(b"/proc/sys", b"/proc/sys", None, MS_BIND, None), "bind /proc/sys")
    _check(_libc.mount(None, b"/proc/sys", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None),
           "remount /proc/sys read-only")
    _check(_libc.mount(b"tmpfs", b"/tmp", b"tmpfs", MS_NOSUID | MS_NODEV, _tmp_options(tmp_bytes)), "mount /tmp")
    return {"tmp_bytes": int(tmp_bytes), "mm": _mm_fields()}


_REHEARSAL_MODULE = "tamaya_zygote_rehearsal"
_REHEARSAL_SOURCE = (
    "import os\n"
    "def handler(event, context):\n"
    "    return {'ok': True, 'event': event}\n"
)


def _rehearse(chan_fd):
    """Runs the code an instance runs after "go" once on made-up data, in the ready child.

    After a fork every page is shared with the zygote, and the first write to one (a reference
    count, a cache) copies it: tens of microseconds each on a virtual machine that has to shoot
    down TLBs across its CPUs, hundreds of them per start. Taking those faults here, before the
    request, leaves the request path only the pages its own data needs. Nothing of the function
    runs: the module imported is this file's own, from this child's private /tmp, and it is
    gone again (file, sys.modules, path caches) before the child waits."""
    try:
        _rehearse_steps(chan_fd)
    finally:
        os.environ.clear()
        gc.collect()


def _rehearse_steps(chan_fd):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with a, b:
        socket.send_fds(a, [b"{}"], [a.fileno()])
        _, fds, _, _ = socket.recv_fds(b, MAX_MESSAGE_BYTES, 3)
        for fd in fds:
            os.close(fd)
    json.loads(json.dumps({"env": {"K": "v"}, "specialise": {"tmp_bytes": 1, "rlimits": [[7, 1]], "uid": 1,
                                                            "gid": 1, "seccomp": "00", "netns": False}}))
    probe = socket.socket(fileno=os.dup(chan_fd))
    probe.close()
    # The same calls as _specialise, each one changing nothing (still root, same limits).
    _set_proc_environ({"K": "v"}, _mm_fields())
    prog_buf = ctypes.create_string_buffer(bytes.fromhex("00" * 8), 8)
    ctypes.byref(_SockFprog(1, ctypes.addressof(prog_buf)))
    for res in (resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE, resource.RLIMIT_CORE):
        resource.setrlimit(res, resource.getrlimit(res))
    os.setgroups(os.getgroups())
    os.setresgid(*os.getresgid())
    os.setresuid(*os.getresuid())
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
    # The instance replaces the environment: the zygote's own (PATH, LANG, TZ) goes now.
    # As many variables as a Lambda environment has, so the real one fits in memory touched here.
    os.environ.clear()
    os.environ.update({f"TAMAYA_REHEARSAL_{i}": "v" * 40 for i in range(REHEARSAL_ENV_VARS)})
    os.environ.clear()
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    tamaya_runtime.RuntimeApiClient("127.0.0.1:9")
    folder = "/tmp/.tamaya-rehearsal"
    os.mkdir(folder, 0o700)
    path = f"{folder}/{_REHEARSAL_MODULE}.py"
    try:
        with open(path, "w") as f:
            f.write(_REHEARSAL_SOURCE)
        sys.path.insert(0, folder)
        write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
        try:
            _rehearse_client(tamaya_runtime.load_handler(f"{_REHEARSAL_MODULE}.handler"))
        finally:
            sys.dont_write_bytecode = write_bytecode
            sys.path.remove(folder)
            sys.path_importer_cache.pop(folder, None)
            sys.modules.pop(_REHEARSAL_MODULE, None)
    finally:
        os.unlink(path)
        os.rmdir(folder)


_REHEARSAL_EVENT = (
    b"HTTP/1.1 200 OK\r\nServer: tamaya\r\nContent-Type: application/json\r\n"
    b"Lambda-Runtime-Aws-Request-Id: 00000000-0000-0000-0000-000000000000\r\n"
    b"Lambda-Runtime-Deadline-Ms: 1\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:::function:f\r\n"
    b"Lambda-Runtime-Trace-Id: Root=1-0-0\r\nContent-Length: 11\r\n\r\n{\"k\": [1.5]}"
)
_REHEARSAL_ACCEPTED = (
    b"HTTP/1.1 202 Accepted\r\nServer: tamaya\r\nContent-Type: application/json\r\n"
    b"Content-Length: 15\r\n\r\n{\"status\":\"OK\"}"
)


def _rehearse_client(handler):
    """The runtime client's first invocation (GET next, the handler's call, POST + next GET), on
    a socket pair whose other end has the daemon's answers queued already: its code and the
    objects it touches are this child's own before the real one runs them."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    client = tamaya_runtime.RuntimeApiClient("127.0.0.1:9")
    try:
        client.sock = theirs
        ours.sendall(_REHEARSAL_EVENT)
        headers, body = client.next_invocation()
        ours.sendall(_REHEARSAL_ACCEPTED + _REHEARSAL_EVENT)
        client.post_and_next(*tamaya_runtime.handle_invocation(handler, headers, body))
    finally:
        client._close()
        ours.close()
        tamaya_runtime._current_request_id = None


def _specialise(spec, env, netns_fd, prepared):
    """Walls the child in, as the daemon's launcher does for a directly started instance; runs
    after "go", i.e. inside the instance's cgroups."""
    if netns_fd is not None:
        _check(_libc.setns(netns_fd, CLONE_NEWNET), "setns(network)")
        os.close(netns_fd)
    if int(spec["tmp_bytes"]) != prepared["tmp_bytes"]:
        _check(_libc.mount(None, b"/tmp", None, MS_REMOUNT | MS_NOSUID | MS_NODEV, _tmp_options(spec["tmp_bytes"])),
               "resize /tmp")
    keep = _set_proc_environ(env, prepared["mm"])
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


def _detach(keep_fds):
    """The first thing a forked child does: it keeps nothing of the zygote's plumbing (its
    control socket on fd 0, signal pipe, namespace fd) but stdout, stderr and `keep_fds`, gets
    its own session and dies with the zygote."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    low = 3
    for fd in sorted(set(keep_fds) | {devnull}):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 16)
    os.close(devnull)
    os.setsid()
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _become(spec, fds, prepared, hs=None):
    """Turns a forked child into the instance `spec` asks for, then runs the runtime client:
    never returns. fds: [stdout, stderr(, handshake)(, netns)]; an offered child has its
    handshake socket (`hs`) already and has said hello on it: `spec` is its "go". stdin is
    /dev/null already (_detach)."""
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in (fds[0], fds[1]):
        if fd > 2:
            os.close(fd)
    if "specialise" in spec:
        rest = fds[2:]
        if hs is None:
            hs = socket.socket(fileno=rest.pop(0))
            hs.send(b"hello")
            if hs.recv(16) != b"go":
                os._exit(1)  # the daemon gave up on this child
        try:
            keep = _specialise(spec["specialise"], spec.get("env") or {}, rest[0] if rest else None, prepared)
            os.closerange(3, hs.fileno())
            os.closerange(hs.fileno() + 1, 1 << 16)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none is fatal to the zygote
            hs.send(f"error: {e}".encode()[:4000])
            os._exit(127)
        hs.send(b"ok")
        hs.close()
        spec["_environ_block"] = keep
        # /var/task is mounted read-only: no import can cache its bytecode there, so do not try
        # (a stat, a refused mkdir and an exception per module imported).
        sys.dont_write_bytecode = True
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


def _run_child(body):
    """The forked child's whole life: `body()` never returns into the zygote's loop."""
    code = 1
    try:
        body()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # noqa: BLE001 - said on the instance's stderr, then exit 1
        import traceback

        traceback.print_exc()
    finally:
        # Never return into the zygote's loop, and never run its atexit hooks.
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _fork(new_pidns):
    """os.fork(); with `new_pidns` the child is pid 1 of a pid namespace of its own, as a
    directly started instance is, and the zygote goes back to its own namespace right after."""
    pid = -1
    if new_pidns:
        _check(_libc.unshare(CLONE_NEWPID), "unshare(pid)")
    try:
        pid = os.fork()
    finally:
        if new_pidns and pid != 0:
            _check(_libc.setns(_own_pidns, CLONE_NEWPID), "setns(own pid namespace)")
    return pid


def _offer(ctl, tmp_bytes):
    """Forks a child ahead of need and hands the daemon a socket to it (see the module
    docstring): {"offer": pid} with the socket as SCM_RIGHTS. The socket has SO_PASSCRED, so
    the child's "hello" tells the daemon its pid. A fork that fails is said as
    {"offer_error": "..."}; spawns then fork on demand."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    try:
        pid = _fork(True)
    except OSError as e:
        ours.close()
        theirs.close()
        _send(ctl, {"offer_error": f"fork failed: {e}"})
        return
    if pid == 0:
        def wait_for_instance():
            ours.detach()  # closed by _detach, with the rest of the zygote's fds
            _detach([theirs.fileno()])
            try:
                prepared = _prepare(tmp_bytes)
                _rehearse(theirs.fileno())
            except Exception as e:  # noqa: BLE001 - said to the daemon, which forks on demand instead
                theirs.send(f"error: {e}".encode()[:4000])
                os._exit(127)
            theirs.send(b"hello")
            msg, fds, _, _ = socket.recv_fds(theirs, MAX_MESSAGE_BYTES, 3)
            if not msg:
                os._exit(0)  # not wanted after all (the daemon or the zygote is going away)
            _become(json.loads(msg), fds, prepared, hs=theirs)

        _run_child(wait_for_instance)
    theirs.close()
    try:
        socket.send_fds(ctl, [json.dumps({"offer": pid}).encode()], [ours.fileno()])
    finally:
        ours.close()


def _reap(ctl):
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(ctl, {"exit": pid, "status": status})


def _prefork_tmp_bytes(argv):
    for arg in argv:
        if arg.startswith("--prefork-tmp-bytes="):
            return int(arg.split("=", 1)[1])
    return None


def main():
    global _own_pidns
    ctl = socket.socket(fileno=0)
    _own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    prefork_tmp = _prefork_tmp_bytes(sys.argv[1:])
    # Everything imported so far is shared with every instance; keep the collector off it.
    gc.collect()
    gc.freeze()
    _send(ctl, {"ready": True})
    if prefork_tmp is not None and _libc is None:
        prefork_tmp = None
        _send(ctl, {"offer_error": "offered children need ctypes, which this Python lacks"})
    if prefork_tmp is not None:
        _offer(ctl, prefork_tmp)
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
            if "prefork" in spec:
                for fd in fds:
                    os.close(fd)
                if prefork_tmp is not None:
                    _offer(ctl, prefork_tmp)
                else:
                    _send(ctl, {"offer_error": "this zygote was started without --prefork-tmp-bytes"})
                continue
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
        sandboxed = "specialise" in spec
        try:
            pid = _fork(sandboxed)
        except OSError as e:
            for fd in fds:
                os.close(fd)
            _send(ctl, {"error": f"fork failed: {e}"})
            continue
        if pid == 0:
            def on_demand():
                _detach(fds)
                prepared = _prepare(spec["specialise"]["tmp_bytes"]) if sandboxed else None
                _become(spec, fds, prepared)

            _run_child(on_demand)
        for fd in fds:
            os.close(fd)
        _send(ctl, {"pid": pid})


if __name__ == "__main__":
    sys.exit(main())
