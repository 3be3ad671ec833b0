"""instance_cpu_policy: every process started for a function runs under SCHED_BATCH by default
(docs/settings.md), whatever started it: a Python zygote's child, a Node.js pool member, a
sandbox made ahead for `provided`, a direct start; `normal` leaves them at SCHED_OTHER. Read back
from inside the instances. Skipped without the sandbox's namespaces, uids and seccomp."""

import os
import subprocess

import pytest

from itest import TAMAYA_BIN, free_port, metric, wait_until
from test_isolation import FULL, DOCTOR

pytestmark = pytest.mark.skipif(not FULL, reason="host lacks namespaces/uids/seccomp: " + DOCTOR)

SCHED_OTHER, SCHED_BATCH = os.SCHED_OTHER, os.SCHED_BATCH


def seen(daemon, name, field, **event):
    r = daemon.invoke(name, dict(event))
    assert r.status_code == 200 and "X-Tamaya-Function-Error" not in r.headers, r.text
    return r.json()[field]


def policies(daemon):
    """The policy of a Python instance (from the zygote), of Node.js instances started directly
    and from the pool, and of `provided` instances started directly and from a ready sandbox."""
    daemon.deploy("py", "py_attack")
    daemon.deploy("js", "node_inspect", runtime="nodejs")
    daemon.deploy("pv", "provided_inspect", runtime="provided", handler=None)
    out = {"python": seen(daemon, "py", "cpu_policy", attack="info"),
           "node direct": seen(daemon, "js", "cpuPolicy"),
           "provided direct": seen(daemon, "pv", "cpu_policy")}
    # A new revision retires the instance: the next start takes what was made ahead.
    for name, field, kind, counter, gauge in (
            ("js", "cpuPolicy", "node pooled", "tamaya_node_pool_specialised_total",
             "tamaya_node_pool_ready"),
            ("pv", "cpu_policy", "provided ready", "tamaya_ready_sandboxes_served_total",
             "tamaya_ready_sandboxes")):
        wait_until(lambda: metric(daemon, gauge) >= 1, 30, f"{gauge} >= 1")
        assert daemon.patch(name, {"description": "again"}).status_code == 200
        before = metric(daemon, counter)
        out[kind] = seen(daemon, name, field)
        assert metric(daemon, counter) == before + 1, f"{kind}: not started from what was ahead"
    return out


@pytest.mark.settings(node_pool_size=1, sandbox_ready_ahead=1)
def test_instances_run_under_sched_batch_by_default(daemon):
    assert "cpu_policy=batch" in daemon.stderr(), daemon.stderr()  # said in the start line
    got = policies(daemon)
    assert got == {k: SCHED_BATCH for k in got}, got


@pytest.mark.settings(node_pool_size=1, sandbox_ready_ahead=1, instance_cpu_policy="normal")
def test_normal_leaves_instances_at_sched_other(daemon):
    assert "cpu_policy=normal" in daemon.stderr(), daemon.stderr()
    got = policies(daemon)
    assert got == {k: SCHED_OTHER for k in got}, got


def test_an_unknown_policy_is_refused_at_start(tmp_path):
    r = subprocess.run([str(TAMAYA_BIN), "serve", "--data-dir", str(tmp_path / "d"),
                        "--admin-port", str(free_port()), "--set", "instance_cpu_policy=fifo"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "instance_cpu_policy 'fifo' is not known" in r.stderr, r.stderr
