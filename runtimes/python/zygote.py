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

Started with `--handler=module.function --task-root=DIR` (as the daemon does), the zygote also
compiles the handler's module file ahead, and the modules under DIR that it imports
(recursively, within a budget), without running any: an instance's import of such a module then
uses the code object it inherited instead of reading and compiling the source
(_CompiledAheadFinder; once per instance, and only while the file is the one compiled).

Sandboxed (the daemon's sandbox/zygote.cpp), a spawn also carries "specialise": {...} and a
third fd, a SOCK_SEQPACKET handshake socket (and a fourth, the instance's network namespace,
when "netns" is set). The zygote then runs as root inside the function's namespaces but with no
function code loaded; each child is made pid 1 of a new pid namespace and walls itself in before
the handler is imported:
  child -> daemon  "hello"         (the kernel attaches the child's pid as the daemon sees it)
  daemon -> child  "go"            (after writing that pid into the instance's cgroups)
  child            new mount/ipc/uts namespaces, fresh /proc, private /tmp, network namespace,
                   environment, rlimits, uid/gid, no_new_privs, seccomp filter ("seccomp": true
                   loads the one the zygote was started with, in TAMAYA_SECCOMP_BPF as hex; a
                   hex string, that program)
  child -> daemon  "ok" or "error: ..."   then the runtime client's loop

Offers (started with `--prefork-tmp-bytes=N`, as the daemon does): the zygote forks a child
ahead of need, at start and on each {"prefork": true}, and sends the daemon
{"offer": pid} + SCM_RIGHTS [a SOCK_SEQPACKET socket to that child, with SO_PASSCRED] (the
daemon keeps `python_zygote_prefork` of them, asking for one more each time it takes one). A
spawn request is served before {"prefork"}s that came ahead of it: in a burst of cold starts,
one forked on demand does not wait for children meant for later ones. The
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
first GET, the handler's call, the POST), so that the request finds it warm. Every offered child
first copies the pages it and the zygote are known to write soon, in bulk (_populate), and the
zygote has run that code once itself before gc.freeze (_warm_up).
"""

import sys

sys.path.insert(0, __file__.rpartition("/")[0] or ".")
try:
    import tamaya_runtime
finally:
    del sys.path[0]

import gc
import importlib.machinery
import importlib.util
import json
import opcode
import os
import select
import signal
import socket
import struct
import time

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
MADV_POPULATE_WRITE = 23  # Linux 5.14; older kernels refuse it (EINVAL) and nothing changes
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

PREFORK_REQUEST = b'{"prefork":true}'  # as the daemon sends it (other spellings work, unhurried)

_own_pidns = None  # the zygote's pid namespace, to return to after each fork
_ctl = None  # the control socket to the daemon
_wake_r = None  # the read end of the SIGCHLD wake-up pipe
_offers_wanted = 0  # {"prefork"}s read and not yet served: spawn requests go first


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


# --- copy-on-write in bulk ----------------------------------------------------------------------
# After a fork, the first write to each page the child shares with the zygote copies it. On this
# project's 2-CPU virtual machine (measured with perf and a C test: 700 pages written one by one
# ~25 us each, populated in one call ~5 us each) that is a trap, a copy and a TLB flush per page,
# and in the zygote, whose memory has been used on both CPUs, the flush also interrupts the other
# CPU. A child ready for a request writes ~700 such pages (interpreter state, reference counts,
# allocator pools), the zygote ~150 per child it forks (its own loop). madvise
# (MADV_POPULATE_WRITE) makes the same copies for whole ranges without the traps. So each
# offered child first populates the pages known to be written soon, the zygote's included, while
# the zygote waits (_fork): the zygote's own writes then find pages that are its alone, which
# need no copy and no flush. Which pages: the first offered child reports the pages it wrote up
# to its "hello" (its rehearsal covers the request path), and the zygote compares its own page
# map across its first forks (frame numbers, which root can read). Nothing is populated before
# that is known, and an instance's memory is what it would have been: the pages populated are
# ones it (or the zygote, leaving it the old copy) would have copied anyway.

# Forks whose writes in the zygote are learnt (the loop is the same each time).
ZYGOTE_LEARN_FORKS = 2
# Runs of written pages this close together are populated as one range (one madvise). 0: only
# pages known to be written are copied, so an instance holds no page it would not have copied.
HOT_GAP_PAGES = 0
# How long the zygote waits for a child to populate before going on regardless.
POPULATE_WAIT_S = 1.0
_PFN_MASK = (1 << 55) - 1

_hot_pages = set()  # page addresses learnt so far
_hot_ranges = ()  # the same as [(start, length)], what each new child populates
_child_learnt = False  # a child has reported (or cannot)
_learning = None  # the zygote's end of the pipe the learning child reports on
_zygote_snapshot = None  # the zygote's page map at its last fork, while it learns its own writes
_zygote_forks_to_learn = ZYGOTE_LEARN_FORKS


def _writable_ranges():
    """(start, end) of this process's private writable mappings."""
    fd = os.open("/proc/self/maps", os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(fd)
    out = []
    for line in b"".join(chunks).split(b"\n"):
        fields = line.split(None, 2)
        if len(fields) >= 2 and fields[1] == b"rw-p":
            lo, _, hi = fields[0].partition(b"-")
            out.append((int(lo, 16), int(hi, 16)))
    return out


def _page_map(ranges):
    """The /proc/self/pagemap entries of `ranges`: (ranges, [bytes, 8 per page])."""
    fd = os.open("/proc/self/pagemap", os.O_RDONLY)
    try:
        return ranges, [os.pread(fd, (hi - lo) // PAGE_BYTES * 8, lo // PAGE_BYTES * 8) for lo, hi in ranges]
    finally:
        os.close(fd)


def _written(before, after):
    """Pages present in `after` that were absent in `before` or are another frame now (a copy
    made on a write). Without frame numbers (no CAP_SYS_ADMIN) every page mapped exclusively in
    `after` counts, which can include some another process wrote."""
    pages = []
    for (lo, _), old, new in zip(before[0], before[1], after[1]):
        if old == new:
            continue
        was, now = memoryview(old).cast("Q"), memoryview(new).cast("Q")
        for i in range(min(len(was), len(now))):
            a, b = was[i], now[i]
            if not b >> 63:
                continue
            if not a >> 63 or (a ^ b) & _PFN_MASK or (not b & _PFN_MASK and b >> 56 & 1):
                pages.append(lo + i * PAGE_BYTES)
    return pages


def _has_frame_numbers(snapshot):
    for entries in snapshot[1]:
        for entry in memoryview(entries).cast("Q"):
            if entry >> 63:
                return bool(entry & _PFN_MASK)
    return False


def _learn(pages):
    """Adds pages to those each new child populates."""
    global _hot_ranges
    _hot_pages.update(pages)
    ranges = []
    for page in sorted(_hot_pages):
        if ranges and page - (ranges[-1][0] + ranges[-1][1]) <= HOT_GAP_PAGES * PAGE_BYTES:
            ranges[-1][1] = page + PAGE_BYTES - ranges[-1][0]
        else:
            ranges.append([page, PAGE_BYTES])
    _hot_ranges = tuple((start, length) for start, length in ranges)


def _learn_zygote_writes():
    """Before a fork, while learning: the pages this zygote copied since its last fork."""
    global _zygote_snapshot, _zygote_forks_to_learn
    try:
        now = _page_map(_writable_ranges())
    except OSError:
        _zygote_forks_to_learn = 0
        return
    if _zygote_snapshot is None:
        if not _has_frame_numbers(now):
            _zygote_forks_to_learn = 0  # the exclusive bit cannot tell our writes from a child's
            return
    else:
        _learn(_written(_zygote_snapshot, _page_map(_zygote_snapshot[0])))
        _zygote_forks_to_learn -= 1
    _zygote_snapshot = now if _zygote_forks_to_learn > 0 else None


def _populate(ranges):
    """Copies `ranges` of the zygote's memory into this child now, one madvise each. A range
    the zygote has unmapped since is refused (ENOMEM) and skipped; all of them are the zygote's
    own private mappings, so populating one changes no data."""
    madvise = _libc.madvise
    for start, length in ranges:
        madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), MADV_POPULATE_WRITE)


_REHEARSAL_MODULE = "tamaya_zygote_rehearsal"
_REHEARSAL_SOURCE = (
    "import os\n"
    "def handler(event, context):\n"
    "    return {'ok': True, 'event': event}\n"
)


def _rehearse(chan_fd):
    """Runs the code an instance runs after "go" once on made-up data, in the ready child.

    A child is a new address space, and its first run of any code path costs several times a
    later one even when every page it writes is copied already (measured: ~3x for the code
    after "go"; page faults explain only part of it). Running the request path here leaves it
    warm for the request. Nothing of the function runs: the module imported is this file's own,
    from this child's private /tmp, and it is gone again (file, sys.modules, path caches) before
    the child waits. (Rehearsing after "hello" instead, in steps that stop when the request
    comes, was measured slower back to back: the request waited for the step in progress and
    then ran cold.)"""
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
                                                            "gid": 1, "seccomp": True, "netns": False}}))
    probe = socket.socket(fileno=os.dup(chan_fd))
    probe.close()
    # The same calls as _specialise, each one changing nothing (still root, same limits).
    _set_proc_environ({"K": "v"}, _mm_fields())
    prog = _seccomp_program(_seccomp is not None)
    if prog is not None:
        ctypes.byref(prog[1])
    for res in (resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE, resource.RLIMIT_CORE):
        resource.setrlimit(res, resource.getrlimit(res))
    os.setgroups(os.getgroups())
    os.setresgid(*os.getresgid())
    os.setresuid(*os.getresuid())
    _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
    # The instance replaces the environment: the zygote's own (PATH, LANG, TZ) goes now.
    # As many variables as a Lambda environment has, so the real one fits in memory touched here.
    _set_environ({f"TAMAYA_REHEARSAL_{i}": "v" * 40 for i in range(REHEARSAL_ENV_VARS)})
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


def _warm_up():
    """Runs the code every instance runs after "go" once in the zygote itself, before
    gc.freeze, on made-up data and changing nothing: what CPython and ctypes set up on first use
    (the compiler's AST types, ~2.5 ms; function lookups; the bytecode's specialisation) is then
    done once and shared by every child instead of done again in each. No function code: the
    handler is compiled from a string and called, nothing is imported or written to disk, the
    specialising calls are given the values the zygote has."""
    code = compile(_REHEARSAL_SOURCE, f"<{_REHEARSAL_MODULE}>", "exec")
    module = type(sys)(_REHEARSAL_MODULE)
    exec(code, module.__dict__)
    for name in ("unshare", "setns", "mount", "prctl", "madvise", "sbrk"):
        getattr(_libc, name)
    json.loads(json.dumps({"env": {"K": "v"}, "specialise": {"tmp_bytes": 1, "rlimits": [[7, 1]], "uid": 1,
                                                            "gid": 1, "seccomp": True, "netns": False}}))
    _mm_map({"K": "v"}, _mm_fields())
    ctypes.byref(_seccomp_program("00" * 8)[1])
    for res in (resource.RLIMIT_NOFILE, resource.RLIMIT_FSIZE, resource.RLIMIT_CORE):
        resource.setrlimit(res, resource.getrlimit(res))
    os.setgroups(os.getgroups())
    os.setresgid(*os.getresgid())
    os.setresuid(*os.getresuid())
    own_env = dict(os.environ)
    for _ in range(3):
        _set_environ({f"TAMAYA_REHEARSAL_{i}": "v" * 40 for i in range(REHEARSAL_ENV_VARS)})
    _set_environ(own_env)
    trace_id = os.environ.get("_X_AMZN_TRACE_ID")
    try:
        for _ in range(3):  # enough for CPython to specialise the loop's bytecode
            _rehearse_client(module.handler)
    finally:
        if trace_id is None:
            os.environ.pop("_X_AMZN_TRACE_ID", None)
        else:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id


_REHEARSAL_EVENT = (
    b"HTTP/1.1 200 OK\r\nServer: tamaya\r\nContent-Type: application/json\r\n"
    b"Lambda-Runtime-Aws-Request-Id: 00000000-0000-0000-0000-000000000000\r\n"
    b"Lambda-Runtime-Deadline-Ms: 1\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:::function:f\r\n"
    b"Lambda-Runtime-Trace-Id: Root=1-0-0\r\nContent-Length: 12\r\n\r\n{\"k\": [1.5]}"
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
    prog = _seccomp_program(spec.get("seccomp"))
    if prog is not None:
        _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog[1]), 0, 0), "seccomp")
    return keep


# The filter every instance loads, as the daemon gave it to the zygote (SECCOMP_ENV, hex of the
# classic BPF program): decoded once, so a child only hands it to the kernel. A spawn request
# says "seccomp": true for it (or brings a program of its own, in hex).
SECCOMP_ENV = "TAMAYA_SECCOMP_BPF"
_seccomp = None  # (buffer, struct sock_fprog) or None


def _seccomp_program(value):
    """(buffer, struct sock_fprog) for a spawn request's "seccomp": true is the zygote's filter,
    a non-empty hex string that program; None for none."""
    if value is True:
        if _seccomp is None:
            raise ValueError(f"the spawn asks for the zygote's seccomp filter, and it has none ({SECCOMP_ENV})")
        return _seccomp
    if not value:
        return None
    bpf = bytes.fromhex(value)
    if not bpf or len(bpf) % 8:
        raise ValueError(f"a seccomp program is whole 8-byte instructions, got {len(bpf)} bytes")
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    return buf, _SockFprog(len(bpf) // 8, ctypes.addressof(buf))


def _set_environ(env):
    """os.environ.clear(); os.environ.update(env), with os.environ's own encoding and putenv
    per variable but without the mapping's generic update, which took about twice as long in a
    new child (~80-110 us against ~45 for 22 variables)."""
    os.environ.clear()
    environ = os.environ
    data, put, key_of, value_of = environ._data, os.putenv, environ.encodekey, environ.encodevalue
    for key, value in env.items():
        key, value = key_of(key), value_of(value)
        put(key, value)
        data[key] = value


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
    _close_all_but(set(keep_fds) | {devnull})
    os.close(devnull)
    os.setsid()
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _close_all_but(keep):
    """Closes every fd from 3 up but those in `keep`."""
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 16)


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
            _close_all_but({hs.fileno()})
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
    _set_environ(env)
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


def _fork(new_pidns, populate=False):
    """os.fork(); with `new_pidns` the child is pid 1 of a pid namespace of its own, as a
    directly started instance is, and the zygote goes back to its own namespace right after.
    With `populate` the child first copies the pages learnt so far while the zygote waits (see
    above). Only offered children do (at most `prefork` at a time): a child forked on demand is
    in the zygote's cgroup until its "hello", and a burst of them each copying megabytes there
    exhausted the zygote's memory limit (measured: 40 provisioned instances at once, 128 MB)."""
    if _zygote_forks_to_learn > 0 and _libc is not None:
        _learn_zygote_writes()
    hot = _hot_ranges if populate and _libc is not None else ()
    wait_r = wait_w = -1
    if hot:
        wait_r, wait_w = os.pipe()
    pid = -1
    try:
        if new_pidns:
            _check(_libc.unshare(CLONE_NEWPID), "unshare(pid)")
        pid = os.fork()
        if pid == 0:
            # Never raise here: the caller would take the child for the zygote.
            if hot:
                try:
                    os.close(wait_r)
                    _populate(hot)
                except Exception:  # noqa: BLE001 - populating only saves time
                    pass
                finally:
                    os.close(wait_w)  # the zygote's read ends
            return 0
        if hot:
            os.close(wait_w)
            wait_w = -1
            _wait_for_populate(wait_r)
    finally:
        if pid != 0:
            for fd in (wait_r, wait_w):
                if fd >= 0:
                    os.close(fd)
            if new_pidns:
                _check(_libc.setns(_own_pidns, CLONE_NEWPID), "setns(own pid namespace)")
    return pid


def _wait_for_populate(wait_r):
    """Waits (bounded) for a child's populate: the end of its pipe. Exits of instances are
    reported meanwhile, as the main loop would, and more {"prefork"}s are noted; a spawn request
    ends the wait (the child goes on populating by itself; the zygote's writes then copy pages
    as without it): a cold start forked on demand must not queue behind children for later
    ones (measured back to back: one waited for two populates)."""
    global _offers_wanted
    deadline = time.monotonic() + POPULATE_WAIT_S
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        watch = [wait_r] + [fd for fd in (_wake_r, _ctl) if fd is not None]
        try:
            readable, _, _ = select.select(watch, [], [], left)
        except InterruptedError:
            continue
        if _wake_r is not None and _wake_r in readable:
            os.read(_wake_r, 4096)
            try:
                _reap(_ctl)
            except OSError:
                pass  # the daemon is gone: the main loop ends when it reads the socket
        if wait_r in readable:
            os.read(wait_r, 1)
            return
        if _ctl is not None and _ctl in readable:
            try:
                head = _ctl.recv(len(PREFORK_REQUEST), socket.MSG_PEEK)
            except OSError:
                return
            if head != PREFORK_REQUEST:
                return  # a spawn (or the daemon is gone): the main loop answers it now
            _, fds, _, _ = socket.recv_fds(_ctl, MAX_MESSAGE_BYTES, 4)
            for fd in fds:
                os.close(fd)
            _offers_wanted += 1


def _offer(ctl, tmp_bytes):
    """Forks a child ahead of need and hands the daemon a socket to it (see the module
    docstring): {"offer": pid} with the socket as SCM_RIGHTS. The socket has SO_PASSCRED, so
    the child's "hello" tells the daemon its pid. A fork that fails is said as
    {"offer_error": "..."}; spawns then fork on demand."""
    global _learning, _child_learnt
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    report = before = None
    if not _child_learnt and _learning is None:
        # This child learns which pages an instance writes: our page map now, its own at "hello".
        try:
            before = _page_map(_writable_ranges())
            _learning, report = os.pipe()
        except OSError:
            _child_learnt = True
    try:
        pid = _fork(True, populate=True)
    except OSError as e:
        ours.close()
        theirs.close()
        if report is not None:
            os.close(report)
            os.close(_learning)
            _learning = None
        _send(ctl, {"offer_error": f"fork failed: {e}"})
        return
    if pid == 0:
        def wait_for_instance():
            ours.detach()  # closed by _detach, with the rest of the zygote's fds
            _detach([theirs.fileno()] + ([report] if report is not None else []))
            try:
                prepared = _prepare(tmp_bytes)
                _rehearse(theirs.fileno())
            except Exception as e:  # noqa: BLE001 - said to the daemon, which forks on demand instead
                theirs.send(f"error: {e}".encode()[:4000])
                os._exit(127)
            if report is not None:
                try:
                    pages = _written(before, _page_map(before[0]))
                    os.write(report, struct.pack(f"{len(pages)}Q", *pages))
                except OSError:
                    pass
                os.close(report)
            try:
                theirs.send(b"hello")
                msg, fds, _, _ = socket.recv_fds(theirs, MAX_MESSAGE_BYTES, 3)
            except OSError:
                msg = b""  # the daemon closed its end: as below
            if not msg:
                # Not wanted after all: the daemon or the zygote is going away, or a burst of
                # cold starts is over and the daemon keeps fewer children ready again.
                os._exit(0)
            _become(json.loads(msg), fds, prepared, hs=theirs)

        _run_child(wait_for_instance)
    theirs.close()
    if report is not None:
        os.close(report)
    try:
        socket.send_fds(ctl, [json.dumps({"offer": pid}).encode()], [ours.fileno()])
    finally:
        ours.close()


def _read_learnt(learnt):
    """Reads the learning child's report (page addresses); at its end (the child closed the
    pipe) learns them. A child that reported nothing leaves it to the next offered child."""
    global _learning, _child_learnt
    chunk = os.read(_learning, 65536)
    if chunk:
        learnt.append(chunk)
        return
    os.close(_learning)
    _learning = None
    data = b"".join(learnt)
    learnt.clear()
    if len(data) >= 8:
        _child_learnt = True
        _learn(struct.unpack(f"{len(data) // 8}Q", data[: len(data) // 8 * 8]))


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
    value = _option(argv, "--prefork-tmp-bytes")
    return None if value is None else int(value)


def _option(argv, name):
    for arg in argv:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


# --- the function's code compiled ahead ----------------------------------------------------------
# An instance imports its handler's module right after "go", on the request's path: finding the
# file, reading it and compiling it took ~0.24 ms of a back-to-back cold start's ~2.6 ms here,
# for a two-line module, and compiling grows with the code: ~15 ms for 2,400 lines. /var/task is
# read-only, so without .pyc files in the function's zip every instance compiles every module
# of the function's code it imports. The code is the same for every instance of this zygote
# (the daemon starts one per code and handler), so the zygote compiles the handler's module and
# the modules of the function's code that it imports (found by reading the import statements,
# recursively, as far as COMPILE_AHEAD_MAX_* allow) once, and each instance finds the code
# objects ready. The first instance would have compiled the same modules on its own request
# path; only an import that never runs (inside a function or an `if`) is compiled for nothing.

COMPILE_AHEAD_MAX_FILES = 256
COMPILE_AHEAD_MAX_BYTES = 4 << 20  # of source


class _CompiledAheadLoader(importlib.machinery.SourceFileLoader):
    """The module's source loader (get_source, tracebacks, reloads as usual), except that its
    first get_code hands out the code object compiled in the zygote. The last one out takes the
    finder out of sys.meta_path (not while the import system walks that list: it would skip the
    next finder)."""

    code = None
    finder = None

    def get_code(self, fullname):
        code, self.code = self.code, None
        finder, self.finder = self.finder, None
        if finder is not None and not finder.entries:
            try:
                sys.meta_path.remove(finder)
            except ValueError:
                pass
        return code if code is not None else super().get_code(fullname)


def _file_finder(folder):
    """What the path-based import would use in `folder`, in its order (extension modules, then
    source, then bytecode-only files), without touching sys.path_importer_cache."""
    m = importlib.machinery
    return m.FileFinder(folder, (m.ExtensionFileLoader, m.EXTENSION_SUFFIXES),
                        (m.SourceFileLoader, m.SOURCE_SUFFIXES),
                        (m.SourcelessFileLoader, m.BYTECODE_SUFFIXES))


_IMPORT_NAME = bytes([opcode.opmap["IMPORT_NAME"]])
_LOAD_CONST = opcode.opmap["LOAD_CONST"]


def _with_prefixes(code, at):
    """The argument of the instruction at `at` in `code`'s bytecode (2-byte units), its
    EXTENDED_ARG prefixes included, and where the instruction before them starts."""
    arg, shift, at = code[at + 1], 8, at - 2
    while at >= 0 and code[at] == opcode.EXTENDED_ARG:
        arg |= code[at + 1] << shift
        shift, at = shift + 8, at - 2
    return arg, at


def _imports(code):
    """(name, level, fromlist) of each import statement compiled into `code`, the functions
    and classes in it included: IMPORT_NAME with its two LOAD_CONSTs before it. Read from the
    bytecode, not the syntax tree: parsing to a tree and walking it took 40 ms for a
    2,400-line module here, this 0.3 ms."""
    ops = code.co_code
    at = ops.find(_IMPORT_NAME)
    while at >= 0:
        if at % 2 == 0:  # an opcode, not an argument
            name, before = _with_prefixes(ops, at)
            consts = []
            for _ in range(2):
                if before < 0 or ops[before] != _LOAD_CONST:
                    break
                index, before = _with_prefixes(ops, before)
                consts.append(code.co_consts[index])
            fromlist = consts[0] if consts else None
            level = consts[1] if len(consts) > 1 and isinstance(consts[1], int) else 0
            yield code.co_names[name], level, fromlist
        at = ops.find(_IMPORT_NAME, at + 1)
    for const in code.co_consts:
        if type(const) is type(code):
            yield from _imports(const)


def _imported_names(code, name, is_package):
    """The absolute module names the import statements in `code` may load (`from a import b`
    may load a.b), relative ones resolved against module `name`."""
    for module, level, fromlist in _imports(code):
        if level:
            base = name if is_package else name.rpartition(".")[0]
            for _ in range(level - 1):
                base = base.rpartition(".")[0]
            if not base:
                continue  # beyond the top-level package: the import fails as usual
            module = f"{base}.{module}" if module else base
        yield module
        if isinstance(fromlist, tuple):
            yield from (f"{module}.{item}" for item in fromlist if isinstance(item, str) and item != "*")


class _CompiledAheadFinder:
    """Answers the first import of each module compiled ahead, when the import would find that
    very file (the first entry of sys.path for a top-level module, the package's __path__
    otherwise) and the file is unchanged since. It answers once per module: later imports of
    that name, and every other import, go on to the usual finders, with their usual errors."""

    def __init__(self, task_root):
        self.task_root = task_root
        # The zygote runs as root: it reads only files that are the function's own, not what a
        # symlink in its code points to elsewhere.
        self.real_root = os.path.realpath(task_root) + os.sep
        self.entries = {}  # module name -> (spec, file, (mtime_ns, size), folder searched)
        self.folders = {}  # package name -> its folder, for its submodules
        self.file_finders = {}  # folder -> _file_finder(folder): each lists its folder once
        self.files = self.source_bytes = 0

    def find_spec(self, name, path=None, target=None):
        entry = self.entries.pop(name, None)
        if entry is None:
            return None
        spec, file, stamp, searched_in = entry
        if searched_in not in (sys.path[:1] if path is None else list(path)):
            return None
        try:
            st = os.stat(file)
        except OSError:
            return None
        if (st.st_mtime_ns, st.st_size) != stamp:
            return None
        return spec

    def _add(self, name):
        """Compiles module `name` of the function's code (its package, if any, was added
        before) and returns the absolute names its imports may load; () when it is not in the
        function's code as plain source, is imported here already, or the budget is spent."""
        parent, _, last = name.rpartition(".")
        if parent and parent not in self.folders or name in sys.modules:
            return ()
        folder = self.folders[parent] if parent else self.task_root
        if folder not in self.file_finders:
            self.file_finders[folder] = _file_finder(folder)
        spec = self.file_finders[folder].find_spec(last)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return ()  # not there, an extension module, bytecode only, a namespace package
        file, is_package = spec.origin, spec.submodule_search_locations is not None
        if not os.path.realpath(file).startswith(self.real_root):
            return ()
        try:
            st = os.stat(file)
            if (self.files >= COMPILE_AHEAD_MAX_FILES
                    or self.source_bytes + st.st_size > COMPILE_AHEAD_MAX_BYTES):
                return ()
            with open(file, "rb") as f:
                source = f.read()
            self.files += 1
            self.source_bytes += len(source)
            code = compile(source, file, "exec", dont_inherit=True)  # as SourceFileLoader does
        except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
            return ()  # left to the instance's import, which says what is wrong
        if is_package:
            self.folders[name] = os.path.dirname(file)
        loader = _CompiledAheadLoader(name, file)
        loader.code, loader.finder = code, self
        module_spec = importlib.util.spec_from_file_location(
            name, file, loader=loader,
            submodule_search_locations=[self.folders[name]] if is_package else None)
        self.entries[name] = (module_spec, file, (st.st_mtime_ns, st.st_size), folder)
        return tuple(_imported_names(code, name, is_package))

    @staticmethod
    def install(task_root, handler):
        """Compiles `handler`'s module under `task_root` and what it imports from there, and
        puts the finder right before the path-based one (built-in and frozen modules keep their
        precedence)."""
        modname = handler.rpartition(".")[0].replace("/", ".")
        if not modname or not task_root:
            return
        finder = _CompiledAheadFinder(task_root)
        todo, seen = [], set()

        def want(name):  # the packages on its way first, as the import system goes
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix not in seen:
                    seen.add(prefix)
                    todo.append(prefix)

        want(modname)
        done = 0
        while done < len(todo):
            for imported in finder._add(todo[done]):
                want(imported)
            done += 1
        if not finder.entries:
            return
        at = next((i for i, f in enumerate(sys.meta_path) if f is importlib.machinery.PathFinder),
                  len(sys.meta_path))
        sys.meta_path.insert(at, finder)


def main():
    global _own_pidns, _ctl, _wake_r, _offers_wanted
    ctl = _ctl = socket.socket(fileno=0)
    _own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    wake_r, wake_w = os.pipe()
    _wake_r = wake_r
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    prefork_tmp = _prefork_tmp_bytes(sys.argv[1:])
    global _seccomp
    seccomp_hex = os.environ.pop(SECCOMP_ENV, "")
    if seccomp_hex and _libc is not None:
        _seccomp = _seccomp_program(seccomp_hex)
    if _libc is not None:
        _warm_up()
    _CompiledAheadFinder.install(_option(sys.argv[1:], "--task-root"), _option(sys.argv[1:], "--handler") or "")
    # Everything imported so far is shared with every instance; keep the collector off it.
    gc.collect()
    gc.freeze()
    _send(ctl, {"ready": True})
    if prefork_tmp is not None and _libc is None:
        prefork_tmp = None
        _send(ctl, {"offer_error": "offered children need ctypes, which this Python lacks"})
    if prefork_tmp is not None:
        _offer(ctl, prefork_tmp)
    learnt = []
    while True:
        # Children for later cold starts are forked only when no request is waiting: a spawn
        # that came in meanwhile is served first.
        try:
            readable, _, _ = select.select([ctl, wake_r] + ([_learning] if _learning is not None else []), [], [],
                                           0 if _offers_wanted else None)
        except InterruptedError:
            continue
        if wake_r in readable:
            os.read(wake_r, 4096)
            _reap(ctl)
        if _learning is not None and _learning in readable:
            _read_learnt(learnt)
        if ctl not in readable:
            if _offers_wanted and not readable:
                _offers_wanted -= 1
                _offer(ctl, prefork_tmp)
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
                    _offers_wanted += 1
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
