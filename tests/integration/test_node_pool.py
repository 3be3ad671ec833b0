"""Node.js instances from the pool of pre-started generic instances (src/sandbox/node_pool.h):
a pooled instance must be walled in exactly as a direct start. Skipped without the sandbox's
namespaces, uids and seccomp (the pool needs them)."""

import os
import re

import pytest

from itest import metric, wait_until
from test_isolation import CGROUPS, FULL, DOCTOR

pytestmark = pytest.mark.skipif(not FULL, reason="host lacks namespaces/uids/seccomp: " + DOCTOR)

INSPECT = "node_inspect"


def wait_pool_full(daemon, size):
    wait_until(lambda: metric(daemon, "tamaya_node_pool_ready") >= size, 60,
               f"the node pool to hold {size} ready instances")


def status_field(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def members_of(daemon):
    """Host pids of the daemon's waiting pool members: its children running generic.js as root."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if b"generic.js" not in f.read():
                    continue
        except OSError:
            continue
        pid = int(entry)
        if status_field(pid, "PPid") == daemon.proc.pid and status_field(pid, "Uid") == 0:
            out.append(pid)
    return out


def inspect(daemon, name, **event):
    r = daemon.invoke(name, event)
    assert r.status_code == 200 and "X-Tamaya-Function-Error" not in r.headers, r.text
    return r.json()


@pytest.mark.settings(node_pool_size=2)
def test_pooled_instance_is_walled_in_like_a_direct_one(daemon):
    daemon.deploy("np", INSPECT, runtime="nodejs", memory_mb=192,
                  environment={"NP_SECRET": "s1"})
    # The first Node start is direct and gives the pool its template.
    direct = inspect(daemon, "np")
    assert not any("generic.js" in a for a in direct["cmdline"]), direct["cmdline"]
    wait_pool_full(daemon, 2)
    members = members_of(daemon)
    assert len(members) == 2, members
    before = metric(daemon, "tamaya_node_pool_specialised_total")

    # A new revision retires the instance: the next invoke takes a pool member.
    assert daemon.patch("np", {"environment": {"NP_SECRET": "s2"}}).status_code == 200
    pooled = inspect(daemon, "np", pids=members)
    assert metric(daemon, "tamaya_node_pool_specialised_total") == before + 1
    assert any(a.endswith("/generic.js") for a in pooled["cmdline"]), pooled["cmdline"]

    # Its function's uid/gid, no groups, no capabilities, no_new_privs and seccomp.
    assert pooled["uid"] == direct["uid"] != 0
    assert pooled["euid"] == pooled["uid"] and pooled["gid"] == direct["gid"] == pooled["uid"]
    assert pooled["groups"] in ([], [pooled["gid"]]), pooled["groups"]
    uid = str(pooled["uid"])
    assert pooled["status"]["Uid"].split() == [uid] * 4, pooled["status"]
    assert pooled["status"]["Gid"].split() == [uid] * 4, pooled["status"]
    assert pooled["status"]["CapEff"] == "0000000000000000", pooled["status"]
    assert pooled["status"]["NoNewPrivs"] == "1" and pooled["status"]["Seccomp"] == "2"

    # Its code only, read-only, as its cwd; its own writable /tmp.
    assert pooled["task"] == ["app.js"], pooled["task"]
    assert pooled["cwd"] == "/var/task"
    assert pooled["writeTask"] == "EROFS", pooled["writeTask"]
    assert len(pooled["taskMount"]) >= 1 and all(" ro," in l or " ro " in l for l in pooled["taskMount"][-1:]), \
        pooled["taskMount"]
    assert pooled["writeTmp"] == "ok"

    # Its environment: the new revision's, Lambda's variables, nothing of the pool's.
    env = pooled["env"]
    assert env["NP_SECRET"] == "s2"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "np"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "192"
    assert env["LAMBDA_TASK_ROOT"] == "/var/task"
    assert set(env) == set(direct["env"]) | {"_X_AMZN_TRACE_ID"} or set(env) == set(direct["env"]), \
        sorted(set(env) ^ set(direct["env"]))

    # pid 1 of its own pid namespace: the other pool members are invisible and unreachable.
    assert pooled["pid"] == 1 and len(pooled["pids"]) <= 2, pooled["pids"]
    assert all(k == "ESRCH" for k in pooled["kill"]), pooled["kill"]

    # Its cgroup carries the function's memory limit (read back on the host).
    if CGROUPS:
        lines = dict(l.split(":", 2)[1:] for l in pooled["cgroup"].splitlines() if l.count(":") >= 2)
        if "memory" in lines:
            path = f"/sys/fs/cgroup/memory{lines['memory']}/memory.limit_in_bytes"
        else:
            path = f"/sys/fs/cgroup{lines['']}/memory.max"
        with open(path) as f:
            assert int(f.read()) == 192 << 20, path

    # The pool refills, and the member that served "np" is not one of them any more.
    wait_pool_full(daemon, 2)
    refilled = members_of(daemon)
    assert len(refilled) == 2
    assert len(set(refilled) - set(members)) >= 1


@pytest.mark.settings(node_pool_size=1)
def test_two_functions_never_share_a_member_and_unsuited_ones_start_directly(daemon):
    daemon.deploy("na", INSPECT, runtime="nodejs")
    daemon.deploy("nb", INSPECT, runtime="nodejs")
    inspect(daemon, "na")  # direct: the template
    wait_pool_full(daemon, 1)
    b = inspect(daemon, "nb")
    assert any(a.endswith("/generic.js") for a in b["cmdline"])
    wait_pool_full(daemon, 1)
    assert daemon.patch("na", {"environment": {"K": "2"}}).status_code == 200
    a = inspect(daemon, "na")
    assert any(a_.endswith("/generic.js") for a_ in a["cmdline"])
    assert a["uid"] != b["uid"] and a["env"]["AWS_LAMBDA_FUNCTION_NAME"] == "na"
    specialised = metric(daemon, "tamaya_node_pool_specialised_total")
    assert specialised == 2

    # Options node reads at start, and network "none", keep the direct path.
    wait_pool_full(daemon, 1)
    daemon.deploy("nopt", INSPECT, runtime="nodejs",
                  environment={"NODE_OPTIONS": "--max-old-space-size=100"})
    opt = inspect(daemon, "nopt")
    assert not any("generic.js" in x for x in opt["cmdline"])
    daemon.deploy("nnone", INSPECT, runtime="nodejs", network="none")
    none = inspect(daemon, "nnone")
    assert not any("generic.js" in x for x in none["cmdline"])
    assert metric(daemon, "tamaya_node_pool_specialised_total") == specialised
