"""Direct starts (`provided` here) from sandboxes made ahead of need (ReadySandboxes in
src/sandbox/launcher.cpp): an instance started in one must be walled in exactly as one whose
walls were put up for it. Skipped without the sandbox's namespaces, uids and seccomp."""


import pytest

from itest import metric, wait_until
from test_isolation import FULL, DOCTOR

pytestmark = pytest.mark.skipif(not FULL, reason="host lacks namespaces/uids/seccomp: " + DOCTOR)


def inspect(daemon, name):
    r = daemon.invoke(name, {})
    assert r.status_code == 200 and "X-Tamaya-Function-Error" not in r.headers, r.text
    return r.json()


def walls(seen):
    """What must not differ between two instances of one function, whatever started them."""
    keep = dict(seen)
    keep.pop("cgroup")  # names its own cgroup
    keep["mounts"] = sorted(keep["mounts"])  # a member mounts the code last
    return keep


@pytest.mark.settings(sandbox_ready_ahead=0)
def test_off_every_start_is_direct(daemon):
    daemon.deploy("pi", "provided_inspect", runtime="provided", handler=None)
    inspect(daemon, "pi")
    assert metric(daemon, "tamaya_ready_sandboxes") == 0
    assert metric(daemon, "tamaya_ready_sandboxes_served_total") == 0


@pytest.mark.settings(sandbox_ready_ahead=2)
def test_an_instance_from_a_ready_sandbox_is_walled_in_like_a_direct_one(daemon):
    daemon.deploy("pi", "provided_inspect", runtime="provided", handler=None, memory_mb=160)
    # The first start is direct: it gives the members their shape.
    direct = inspect(daemon, "pi")
    assert metric(daemon, "tamaya_ready_sandboxes_served_total") == 0
    wait_until(lambda: metric(daemon, "tamaya_ready_sandboxes") >= 2, 20,
               "two sandboxes made ahead")
    for n in range(3):
        # A new revision retires the instance: the next invoke starts one in a member.
        assert daemon.patch("pi", {"description": f"rev {n}"}).status_code == 200
        served = metric(daemon, "tamaya_ready_sandboxes_served_total")
        ready = inspect(daemon, "pi")
        assert metric(daemon, "tamaya_ready_sandboxes_served_total") == served + 1
        assert walls(ready) == walls(direct), (walls(ready), walls(direct))
        wait_until(lambda: metric(daemon, "tamaya_ready_sandboxes") >= 2, 20,
                   "the sandboxes made ahead refilled")
    # The walls themselves, as the isolation tests state them for direct starts.
    assert ready["pid"] == 1 and ready["uid"] != 0 and ready["gid"] == ready["uid"]
    assert ready["status"]["CapEff"] == "0000000000000000"
    assert ready["status"]["NoNewPrivs"] == "1" and ready["status"]["Seccomp"] == "2"
    assert ready["fds"][:3] == [0, 1, 2] and len(ready["fds"]) <= 6, ready["fds"]
    assert ready["task"] == ["bootstrap"] and ready["writeTask"] != "ok"
    assert ready["writeTmp"] == "ok"
    assert ready["hostname"] == direct["hostname"]
    assert metric(daemon, "tamaya_ready_sandboxes_failures_total") == 0
