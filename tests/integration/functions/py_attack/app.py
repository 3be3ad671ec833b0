"""Tries to break out of its sandbox, one attack per event["attack"], and reports what happened.

Every attack answers with what the kernel said (an errno name, a count), so the test can
assert containment from the function's side as well as from the host's.
"""

import ctypes
import errno
import os
import socket
import sys
import time

LIBC = ctypes.CDLL(None, use_errno=True)


def _errno_name(err):
    return errno.errorcode.get(err, str(err))


def _call(rc):
    return "ok" if rc == 0 else _errno_name(ctypes.get_errno())


def info(event):
    with open("/proc/self/limits") as f:
        limits = f.read()
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f]
    return {
        "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "hostname": socket.gethostname(),
        "limits": limits, "mounts": mounts, "visible_pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "task_root": os.environ.get("LAMBDA_TASK_ROOT"),
        "cpu_policy": os.sched_getscheduler(0),
    }


def fork_bomb(event):
    children, error = [], None
    for _ in range(event.get("max", 5000)):
        try:
            pid = os.fork()
        except OSError as e:
            error = _errno_name(e.errno)
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.kill(pid, 9)
    for pid in children:
        os.waitpid(pid, 0)
    return {"forked": len(children), "error": error}


def memory_bomb(event):
    hoard = []
    while True:
        hoard.append(bytearray(16 << 20))  # touched: bytearray zero-fills


def cpu_hog(event):
    end = time.time() + event.get("seconds", 3)
    n = 0
    while time.time() < end:
        n += 1
    return {"loops": n}


def read(event):
    try:
        with open(event["path"], "rb") as f:
            return {"result": "read", "bytes": len(f.read())}
    except OSError as e:
        return {"result": _errno_name(e.errno)}


def write(event):
    try:
        with open(event["path"], "wb") as f:
            f.write(b"pwned")
        return {"result": "written"}
    except OSError as e:
        return {"result": _errno_name(e.errno)}


def kill(event):
    try:
        os.kill(event["pid"], 9)
        return {"result": "killed"}
    except OSError as e:
        return {"result": _errno_name(e.errno)}


def ptrace(event):
    PTRACE_ATTACH = 16
    return {"result": _call(LIBC.ptrace(PTRACE_ATTACH, event["pid"], None, None))}


def mount(event):
    return {"result": _call(LIBC.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None))}


def unshare(event):
    CLONE_NEWUTS = 0x04000000
    return {"result": _call(LIBC.unshare(CLONE_NEWUTS))}


def connect(event):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((event["host"], event["port"]))
        return {"result": "connected"}
    except OSError as e:
        return {"result": _errno_name(e.errno) if e.errno else type(e).__name__}
    finally:
        s.close()


def fill_tmp(event):
    chunk, written = b"x" * (1 << 20), 0
    try:
        with open("/tmp/fill", "wb") as f:
            while True:
                f.write(chunk)
                f.flush()
                written += len(chunk)
    except OSError as e:
        return {"result": _errno_name(e.errno), "written": written}
    finally:
        try:
            os.unlink("/tmp/fill")
        except OSError:
            pass


def fds(event):
    held = []
    try:
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as e:
        result = _errno_name(e.errno)
    count = len(held)
    for fd in held:
        os.close(fd)
    return {"result": result, "opened": count}


def flood(event):
    line = ("y" * 1023 + "\n").encode()
    for _ in range(event.get("mb", 100) * 1024):
        sys.stdout.buffer.write(line)
    sys.stdout.flush()
    return {"result": "flooded"}


ATTACKS = {f.__name__: f for f in (info, fork_bomb, memory_bomb, cpu_hog, read, write, kill, ptrace,
                                   mount, unshare, connect, fill_tmp, fds, flood)}


def handler(event, context):
    return ATTACKS[event["attack"]](event)
