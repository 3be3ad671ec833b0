"""Warm reuse, scale-up to max_concurrency with 429s, queueing, and scale to zero."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from itest import log_tail, pids_with_env, report_line, wait_until


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
    started = time.monotonic()
    answers = parallel_invokes(daemon, "sleepy", [{"seconds": 2}] * 8)
    elapsed = time.monotonic() - started
    ok = [r for r in answers if r.status_code == 200]
    throttled = [r for r in answers if r.status_code == 429]
    assert len(ok) == 3 and len(throttled) == 5, [(r.status_code, r.text[:200]) for r in answers]
    for r in ok:
        assert "X-Tamaya-Function-Error" not in r.headers, r.text
    # Three instances ran side by side.
    assert len({r.json()["instance"] for r in ok}) == 3
    for r in throttled:
        assert r.headers.get("Retry-After", "").isdigit(), dict(r.headers)
        doc = r.json()
        assert doc["error"]["code"] == "TooManyRequests", doc
        assert "max_concurrency" in doc["error"]["message"] or "concurrency" in doc["error"]["message"]
        # Throttled after the queue timeout, not after the sleepers finished.
        assert r.elapsed.total_seconds() < 1.8, r.elapsed
    assert elapsed < 6, elapsed
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
    assert elapsed < 4, elapsed


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
