"""Python instances forked from a per-function zygote (src/sandbox/zygote.h): each one is walled
in like a directly started instance (read back from /proc inside the function and from the
host), a cold start through the zygote is reported as one, and a zygote that dies or is
switched off only means instances start directly again.
"""

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from itest import log_tail, metric, pids_with_env, report_line, wait_until
from test_isolation import CGROUPS, FULL, needs_full

FN = "py_status"


def parent_cmdline(pid):
    with open(f"/proc/{pid}/status") as f:
        ppid = int(next(line for line in f if line.startswith("PPid:")).split()[1])
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        return ppid, f.read().replace(b"\0", b" ").decode()


def instance_pid(unique):
    return wait_until(lambda: pids_with_env("ITEST_MARKER", unique), 5, "the instance's process")


def cold(daemon, name, unique, n):
    """A new revision of the same code: the next invoke starts a new instance (same zygote)."""
    r = daemon.patch(name, {"environment": {"ITEST_MARKER": unique, "N": str(n)}})
    assert r.status_code == 200, r.text


@needs_full
def test_forked_instance_is_walled_in_like_a_direct_one(daemon, unique):
    daemon.deploy("z", FN, environment={"ITEST_MARKER": unique})
    first = daemon.invoke_ok("z", {}).json()
    (pid,) = instance_pid(unique)
    ppid, cmd = parent_cmdline(pid)
    assert "zygote.py" in cmd, cmd  # forked, not exec'd by the daemon
    # The same walls as a direct start, read back from inside.
    assert first["uid"][0] != "0" and len(set(first["uid"])) == 1, first["uid"]
    assert first["gid"] == [first["uid"][0]] * 4 and first["groups"] == "", first
    assert first["seccomp"] == "2" and first["no_new_privs"] == "1", first
    assert int(first["cap_eff"], 16) == 0, first["cap_eff"]
    assert first["pid"] == 1 and first["visible_pids"] == [1], first["visible_pids"]
    assert "size=524288k" in first["tmp"], first["tmp"]
    assert first["marker"] == unique and first["runtime_api"].startswith("127.0.0.1:")
    assert first["limits_nofile"] == ["1024", "1024"], first["limits_nofile"]
    # The handler's module, and the module of the function's code it imports, are the code
    # objects the zygote compiled ahead.
    assert first["module_loader"] == "_CompiledAheadLoader", first["module_loader"]
    assert first["imported_loader"] == "_CompiledAheadLoader", first["imported_loader"]
    # Its own cgroups, not the zygote's: the daemon moved it before it ran anything.
    if CGROUPS:
        with open(f"/proc/{ppid}/cgroup") as f:
            zygote_cgroups = {line.strip() for line in f}
        # v1: the memory and pids hierarchies; v2 (no v1 lines): the one unified line.
        limited = [c for c in first["cgroups"] if ":memory:" in c or ":pids:" in c]
        limited = limited or [c for c in first["cgroups"] if c.startswith("0::")]
        assert limited, first["cgroups"]
        for line in limited:
            # The instance's own: named for it, or made ahead of need and taken by it.
            assert re.fullmatch(r"\d+-z|ahead-\d+", line.rsplit("/", 1)[1]), line
            assert line not in zygote_cgroups, line
    # /proc/<pid>/environ shows the instance's own environment, not the zygote's.
    with open(f"/proc/{pid}/environ", "rb") as f:
        assert f"ITEST_MARKER={unique}".encode() in f.read().split(b"\0")


@needs_full
def test_second_instance_comes_from_the_same_zygote_and_reports_init_duration(daemon, unique):
    daemon.deploy("z", FN, environment={"ITEST_MARKER": unique})
    daemon.invoke_ok("z", {})
    (pid_a,) = instance_pid(unique)
    zygote_a, _ = parent_cmdline(pid_a)
    other = unique + "b"
    cold(daemon, "z", other, 1)
    # The zygote forks children ahead of need right after its start (milliseconds each): by
    # now one is ready, and the next start takes it.
    time.sleep(1)
    forked = metric(daemon, "tamaya_python_zygote_forked_total")
    offered = metric(daemon, "tamaya_python_zygote_offered_total")
    r = daemon.invoke("z", {}, tail=True)
    assert r.status_code == 200 and "X-Tamaya-Function-Error" not in r.headers, r.text
    assert "Init Duration: " in report_line(log_tail(r)), log_tail(r)
    (pid_b,) = instance_pid(other)
    zygote_b, cmd = parent_cmdline(pid_b)
    assert zygote_b == zygote_a and "zygote.py" in cmd
    assert metric(daemon, "tamaya_python_zygote_forked_total") == forked + 1
    assert metric(daemon, "tamaya_python_zygote_offered_total") == offered + 1


@needs_full
def test_a_dead_zygote_means_direct_starts_not_failed_invokes(daemon, unique):
    daemon.deploy("z", FN, environment={"ITEST_MARKER": unique})
    daemon.invoke_ok("z", {})
    (pid,) = instance_pid(unique)
    zygote, cmd = parent_cmdline(pid)
    assert "zygote.py" in cmd
    os.kill(zygote, signal.SIGKILL)
    # Its instance went with it; the next invoke starts one directly and answers.
    wait_until(lambda: not pids_with_env("ITEST_MARKER", unique), 5, "the zygote's instance to go")
    after = unique + "c"
    cold(daemon, "z", after, 2)
    fallbacks = metric(daemon, "tamaya_python_zygote_fallbacks_total")
    body = daemon.invoke_ok("z", {}, timeout=20).json()
    assert metric(daemon, "tamaya_python_zygote_fallbacks_total") == fallbacks + 1
    assert body["marker"] == after and body["seccomp"] == "2"
    (pid2,) = instance_pid(after)
    _, cmd2 = parent_cmdline(pid2)
    assert "zygote.py" not in cmd2, cmd2
    assert "python zygote" in daemon.stderr() and "is gone" in daemon.stderr()


@needs_full
def test_many_live_instances_do_not_exhaust_the_zygotes_memory(daemon, unique):
    """What a child writes before its hello stays charged to the zygote's cgroup. With the
    function's 128 MB as that cgroup's limit, the 63rd live instance got the zygote
    OOM-killed, and every instance with it (they live in its pid namespace)."""
    n = 80
    daemon.deploy("zmany", "py_sleep", memory_mb=128, max_concurrency=n, timeout_s=30)
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda _: daemon.invoke("zmany", {"seconds": 4}, timeout=60),
                                range(n)))
    bad = [(r.status_code, r.text[:200]) for r in results if r.status_code != 200
           or "X-Tamaya-Function-Error" in r.headers]
    assert not bad, bad
    # Enough instances lived at once to pass the old breaking point (starts are serial: the
    # first ones may have finished and been reused by the time the last requests came).
    instances = {r.json()["instance"] for r in results}
    assert len(instances) >= 70, len(instances)
    assert "zygote" not in daemon.stderr().split("python_zygote=on", 1)[-1], daemon.stderr()[-2000:]


@needs_full
@pytest.mark.settings(python_zygote="off")
def test_zygote_off_starts_instances_directly(daemon, unique):
    assert "python_zygote=off" in daemon.stderr()
    daemon.deploy("z", FN, environment={"ITEST_MARKER": unique})
    body = daemon.invoke_ok("z", {}).json()
    assert body["seccomp"] == "2" and body["pid"] == 1
    assert body["module_loader"] == "SourceFileLoader", body["module_loader"]
    assert body["imported_loader"] == "SourceFileLoader", body["imported_loader"]
    (pid,) = instance_pid(unique)
    _, cmd = parent_cmdline(pid)
    assert "zygote.py" not in cmd, cmd


@needs_full
@pytest.mark.settings(python_zygote="on")
def test_zygote_on_is_said_at_start(daemon):
    assert "python_zygote=on" in daemon.stderr()
