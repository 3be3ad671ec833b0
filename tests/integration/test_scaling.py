"""Warm reuse, scale-up to max_concurrency with 429s, queueing, scale to zero, and the scaling
policy: min_instances (provisioned concurrency) warm before the first request and replaced when
they die or the code changes, reserved concurrency as a guarantee against an unreserved flood,
over-reservation refused, and per-function idle timeouts."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from itest import (assert_api_error, log_tail, pids_with_env, report_line, wait_until,
                   write_handler)


def parallel_invokes(daemon, name, events, timeout=30):
    """Sends every event at once (threads released together); answers in the events' order."""
    barrier = threading.Barrier(len(events))

    def call(event):
        barrier.wait(timeout=10)
        return daemon.invoke(name, event, timeout=timeout)

    with ThreadPoolExecutor(max_workers=len(events)) as pool:
        return list(pool.map(call, events))


def test_warm_reuse(daemon):
    daemon.deploy("counter", "py_counter")
    counts, pids, reports = [], [], []
    for _ in range(4):
        r = daemon.invoke_ok("counter", {}, tail=True)
        counts.append(r.json()["count"])
        pids.append(r.json()["instance"])
        reports.append(report_line(log_tail(r)))
    assert counts == [1, 2, 3, 4]
    assert len(set(pids)) == 1, pids
    assert "Init Duration:" in reports[0], reports[0]
    for later in reports[1:]:
        assert "Init Duration" not in later, later
    for r in reports:
        assert "Duration:" in r and "Billed Duration:" in r and "Memory Size: 128 MB" in r


@pytest.mark.settings(queue_timeout_ms=500)
def test_scale_up_to_max_concurrency_then_429(daemon):
    daemon.deploy("sleepy", "py_sleep", max_concurrency=3, timeout_s=10)
    answers = parallel_invokes(daemon, "sleepy", [{"seconds": 2}] * 8)
    ok = [r for r in answers if r.status_code == 200]
    throttled = [r for r in answers if r.status_code == 429]
    assert len(ok) == 3 and len(throttled) == 5, [(r.status_code, r.text[:200]) for r in answers]
    for r in ok:
        assert "X-Tamaya-Function-Error" not in r.headers, r.text
    # Three instances ran side by side.
    assert len({r.json()["instance"] for r in ok}) == 3
    first_done = min(r.elapsed for r in ok)
    for r in throttled:
        assert r.headers.get("Retry-After", "").isdigit(), dict(r.headers)
        doc = r.json()
        assert doc["error"]["code"] == "TooManyRequests", doc
        assert "max_concurrency" in doc["error"]["message"] or "concurrency" in doc["error"]["message"]
        # Throttled after the queue timeout, not after a sleeper freed an instance: an order,
        # not a time limit, so a loaded machine cannot make it fail.
        assert r.elapsed < first_done, (r.elapsed, first_done)
    # Capacity is back: the next calls succeed on the warm instances.
    again = parallel_invokes(daemon, "sleepy", [{"seconds": 0.1}] * 3)
    assert [r.status_code for r in again] == [200, 200, 200], [r.text for r in again]


@pytest.mark.settings(queue_timeout_ms=5000)
def test_queueing_runs_serially(daemon):
    daemon.deploy("serial", "py_sleep", max_concurrency=1, timeout_s=10)
    daemon.invoke_ok("serial", {"seconds": 0})  # warm, so timing is the sleeps only
    started = time.monotonic()
    answers = parallel_invokes(daemon, "serial", [{"seconds": 0.3}] * 3)
    elapsed = time.monotonic() - started
    for r in answers:
        assert r.status_code == 200 and "X-Tamaya-Function-Error" not in r.headers, r.text
    bodies = sorted((r.json() for r in answers), key=lambda b: b["start"])
    assert len({b["instance"] for b in bodies}) == 1, bodies
    for before, after in zip(bodies, bodies[1:]):
        assert after["start"] >= before["end"] - 0.005, bodies  # never overlapping
    assert sorted(b["count"] for b in bodies) == [2, 3, 4]
    assert elapsed >= 0.9, elapsed


@pytest.mark.settings(instance_idle_timeout_ms=300)
def test_scale_to_zero(daemon, unique):
    daemon.deploy("idle", "py_counter", environment={"ITEST_MARKER": unique})
    r = daemon.invoke_ok("idle", {}, tail=True)
    assert "Init Duration:" in report_line(log_tail(r))
    # One host process (its pid inside its sandbox is 1, so count rather than compare).
    running = pids_with_env("ITEST_MARKER", unique)
    assert len(running) == 1, running
    # Idle for longer than the idle timeout: the instance process is gone.
    wait_until(lambda: not pids_with_env("ITEST_MARKER", unique), 3.0,
               "the idle instance to stop")
    r = daemon.invoke_ok("idle", {}, tail=True)
    assert r.json()["count"] == 1
    assert "Init Duration:" in report_line(log_tail(r)), "the call after idling was not cold"


@pytest.mark.settings(instance_idle_timeout_ms=60000)
def test_instances_stay_warm_within_idle_timeout(daemon, unique):
    daemon.deploy("warm", "py_counter", environment={"ITEST_MARKER": unique})
    first = daemon.invoke_ok("warm", {}).json()
    time.sleep(0.5)
    assert len(pids_with_env("ITEST_MARKER", unique)) == 1
    assert daemon.invoke_ok("warm", {}).json() == {"count": 2, "pid": first["pid"],
                                                   "instance": first["instance"], "tag": ""}


# An instance that counts its invocations and names itself; {"exit": true} kills it mid-call.
WARM_SOURCE = """
import os

INSTANCE = os.urandom(8).hex()
COUNT = 0


def handler(event, context):
    global COUNT
    if event.get("exit"):
        os._exit(3)
    COUNT += 1
    return {"count": COUNT, "instance": INSTANCE}
"""


def instances(daemon, name):
    r = daemon.get(f"/v1/functions/{name}")
    assert r.status_code == 200, r.text
    return r.json()["instances"]


def warm_and_settled(daemon, name, n):
    """n provisioned instances ready and nothing else (old ones gone)."""
    i = instances(daemon, name)
    return i["provisioned_ready"] == n and i["total"] == n


def test_min_instances_are_warm_before_the_first_request_and_replaced(daemon, tmp_path):
    code = write_handler(tmp_path / "warm", WARM_SOURCE)
    f = daemon.deploy("warm", code, min_instances=2, idle_timeout_s=1)
    assert f["min_instances"] == 2 and f["idle_timeout_s"] == 1, f
    wait_until(lambda: warm_and_settled(daemon, "warm", 2), 15, "two provisioned instances")
    shown = daemon.get("/v1/functions/warm").json()
    assert shown["instances"]["provisioned"] == 2, shown
    assert shown["provisioned"] == [{"qualifier": "$LATEST", "version": "$LATEST", "requested": 2,
                                     "ready": 2, "status": "READY"}], shown

    # The first request is warm: its init happened at provisioning, not here.
    r = daemon.invoke_ok("warm", {}, tail=True)
    assert "Init Duration" not in report_line(log_tail(r)), log_tail(r)
    assert r.json()["count"] == 1

    # Idle for longer than the function's idle timeout (1 s): provisioned instances stay.
    time.sleep(1.6)
    assert warm_and_settled(daemon, "warm", 2), instances(daemon, "warm")
    r = daemon.invoke_ok("warm", {}, tail=True)
    assert "Init Duration" not in report_line(log_tail(r))

    # An instance that dies is replaced, off the request path.
    died = daemon.invoke("warm", {"exit": True})
    assert died.status_code == 200 and died.headers.get("X-Tamaya-Function-Error"), died.text
    assert "Runtime.ExitError" in died.text
    wait_until(lambda: warm_and_settled(daemon, "warm", 2), 15, "the dead instance's replacement")
    for _ in range(3):
        r = daemon.invoke_ok("warm", {}, tail=True)
        assert "Init Duration" not in report_line(log_tail(r)), log_tail(r)

    # min_instances 0: the instances become on-demand ones and the idle timeout takes them.
    r = daemon.patch("warm", {"min_instances": 0})
    assert r.status_code == 200 and r.json()["min_instances"] == 0, r.text
    wait_until(lambda: instances(daemon, "warm")["total"] == 0, 10, "the idle timeout")


def test_min_instances_follow_a_code_change(daemon, tmp_path):
    code = write_handler(tmp_path / "warm", WARM_SOURCE)
    daemon.deploy("warm", code, min_instances=1)
    wait_until(lambda: warm_and_settled(daemon, "warm", 1), 15, "the provisioned instance")
    before = daemon.invoke_ok("warm", {}).json()["instance"]
    write_handler(tmp_path / "warm", WARM_SOURCE + "\n# v2\n")
    assert daemon.put_code("warm", tmp_path / "warm").status_code == 200
    # The old instance goes, a new one starts on the new code before any request.
    wait_until(lambda: warm_and_settled(daemon, "warm", 1), 15, "a warm instance of the new code")
    r = daemon.invoke_ok("warm", {}, tail=True)
    assert "Init Duration" not in report_line(log_tail(r)), log_tail(r)
    assert r.json()["instance"] != before and r.json()["count"] == 1, r.json()


@pytest.mark.settings(concurrency_limit=6, concurrency_unreserved_min=2, queue_timeout_ms=300)
def test_reserved_share_survives_an_unreserved_flood(daemon):
    daemon.deploy("flood", "py_sleep", max_concurrency=10, timeout_s=10)
    shop = daemon.deploy("shop", "py_sleep", max_concurrency=3, timeout_s=10,
                         reserved_concurrency=3)
    assert shop["reserved_concurrency"] == 3, shop
    # 6 in all, 3 reserved by the shop: the flood (max 10) may hold 3 instances.
    calls = [("flood", 3)] * 8 + [("shop", 0.3)] * 3
    barrier = threading.Barrier(len(calls))

    def call(c):
        barrier.wait(timeout=10)
        return c[0], daemon.invoke(c[0], {"seconds": c[1]}, timeout=30)

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        answers = list(pool.map(call, calls))
    flood = [r for name, r in answers if name == "flood"]
    shop_answers = [r for name, r in answers if name == "shop"]
    assert [r.status_code for r in shop_answers] == [200] * 3, [r.text for r in shop_answers]
    assert sorted(r.status_code for r in flood) == [200] * 3 + [429] * 5, [r.text for r in flood]
    for r in flood:
        if r.status_code != 429:
            continue
        assert r.headers.get("Retry-After", "").isdigit(), dict(r.headers)
        msg = assert_api_error(r, 429, "TooManyRequests")
        assert "unreserved concurrency" in msg, msg
    # Throttled at the queue deadline (300 ms), before any of the flood's 3 s calls finished:
    # no 429 waited for capacity to come back.
    throttled = [r.elapsed for r in flood if r.status_code == 429]
    served = [r.elapsed for r in flood if r.status_code == 200]
    assert max(throttled) < min(served), (throttled, served)


@pytest.mark.settings(concurrency_limit=6, concurrency_unreserved_min=2)
def test_over_reservation_is_refused(daemon):
    daemon.deploy("a", "py_counter")
    daemon.deploy("b", "py_counter")
    assert daemon.patch("a", {"reserved_concurrency": 3}).status_code == 200
    msg = assert_api_error(daemon.patch("b", {"reserved_concurrency": 2}), 400, "InvalidArgument")
    assert "UnreservedConcurrentExecution below its minimum value of [2]" in msg, msg
    assert "at most 1" in msg, msg
    assert daemon.get("/v1/functions/b").json()["reserved_concurrency"] is None
    # Creating a function with a refused reservation leaves no function behind.
    r = daemon.create("c", "py_counter", reserved_concurrency=5)
    assert_api_error(r, 400, "InvalidArgument")
    assert daemon.get("/v1/functions/c").status_code == 404
    # min_instances above max_concurrency, or beyond the reservation, is refused too.
    assert_api_error(daemon.patch("a", {"min_instances": 4}), 400, "InvalidArgument")
    r = daemon.patch("a", {"reserved_concurrency": None})
    assert r.status_code == 200 and r.json()["reserved_concurrency"] is None, r.text


@pytest.mark.settings(instance_idle_timeout_ms=600000)
def test_idle_timeout_per_function(daemon):
    daemon.deploy("quick", "py_counter", idle_timeout_s=1)
    daemon.deploy("slow", "py_counter")
    daemon.invoke_ok("quick", {})
    daemon.invoke_ok("slow", {})
    wait_until(lambda: instances(daemon, "quick")["total"] == 0, 5, "quick's idle timeout")
    assert instances(daemon, "slow")["total"] == 1


def test_cli_deploy_and_scale(daemon, tmp_path):
    def cli_ok(*args):
        p = daemon.cli(*args)
        assert p.returncode == 0, p.stderr
        return p.stdout

    code = write_handler(tmp_path / "warm", WARM_SOURCE)
    cli_ok("deploy", "warm", code, "--runtime", "python3", "--max-instances", "3",
           "--min-instances", "1", "--idle-timeout", "60")
    f = daemon.get("/v1/functions/warm").json()
    assert (f["max_concurrency"], f["min_instances"], f["idle_timeout_s"]) == (3, 1, 60), f
    wait_until(lambda: warm_and_settled(daemon, "warm", 1), 15, "the provisioned instance")
    revision = f["revision_id"]
    out = cli_ok("scale", "warm", "--min-instances", "2", "--reserved-concurrency", "3")
    assert "min_instances 2" in out and "reserved_concurrency 3" in out, out
    # Scaling alone makes no new revision.
    assert daemon.get("/v1/functions/warm").json()["revision_id"] == revision
    wait_until(lambda: warm_and_settled(daemon, "warm", 2), 15, "two provisioned instances")
    out = cli_ok("scale", "warm")
    assert "warm 2/2" in out, out
    p = daemon.cli("scale", "warm", "--reserved-concurrency", "lots")
    assert p.returncode != 0 and "'none'" in p.stderr, p.stderr
    out = cli_ok("scale", "warm", "--min-instances", "0", "--reserved-concurrency", "none")
    assert "reserved_concurrency none" in out, out


SPIN_SOURCE = """
import os
import time

INSTANCE = os.urandom(8).hex()


def handler(event, context):
    end = time.process_time() + event["ms"] / 1000
    while time.process_time() < end:
        pass
    return {"instance": INSTANCE}
"""


@pytest.mark.settings(scale_hold_busy_per_core=1, scale_hold_cpu_pressure_percent=0,
                      scale_hold_function_cpu_percent=10, scale_hold_max_wait_ms=5000,
                      queue_timeout_ms=10000, scale_sample_ms=50)
def test_cpu_bound_function_is_held_to_a_busy_instance_per_core(daemon, tmp_path):
    """On a saturated host more instances of a CPU-bound function add wake-ups, not throughput
    (dispatch/cpu_hold.h): it is held to scale_hold_busy_per_core busy instances per CPU, its
    other requests wait instead of failing, and the hold ends when its load does. The pressure
    threshold is 0 here so the test does not depend on how loaded the host is."""
    if not os.path.exists("/proc/pressure/cpu"):
        pytest.skip("no CPU pressure figures (PSI) on this host: nothing is ever held")
    cores = len(os.sched_getaffinity(0))
    clients = 2 * cores + 2
    if clients > 40:
        pytest.skip(f"{cores} CPUs: holding needs more instances than CPUs, and {clients} "
                    "clients spinning at once is more than this test should start")
    code = write_handler(tmp_path / "spin", SPIN_SOURCE)
    daemon.deploy("spin", code, max_concurrency=clients, timeout_s=30)
    stop = time.monotonic() + 6
    answers = []

    def client():
        while time.monotonic() < stop:  # bounded in time; each call in count by the loop
            answers.append(daemon.invoke("spin", {"ms": 20}, timeout=60))

    seen = []
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for _ in range(clients):
            pool.submit(client)
        while time.monotonic() < stop:
            seen.append(instances(daemon, "spin"))
            time.sleep(0.05)
    bad = [(r.status_code, r.text[:200]) for r in answers
           if r.status_code != 200 or "X-Tamaya-Function-Error" in r.headers]
    assert not bad, bad[:5]
    held = [i for i in seen if i["held"]]
    assert held, seen[-5:]
    # Once held, the busy instances come down to the cap and stay there.
    assert min(i["busy"] for i in held) <= cores, held[-5:]
    assert held[-1]["busy"] <= cores, held[-5:]
    assert "function held function=spin" in daemon.stderr(), daemon.stderr()[-2000:]
    # Its load gone, the hold ends (ten quiet samples of 50 ms).
    wait_until(lambda: not instances(daemon, "spin")["held"], 10, "the hold to end")
    assert "function released function=spin" in daemon.stderr()
