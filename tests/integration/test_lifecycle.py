"""Logs, restart on the same data dir, and the SIGTERM drain."""

import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from itest import pids_with_env, wait_until


def messages(events):
    return [e["message"].rstrip("\n") for e in events]


def test_logs_of_one_invocation(daemon, unique):
    daemon.deploy("printer", "py_print")
    r = daemon.invoke_ok("printer", {"marker": unique})
    rid = r.headers["X-Tamaya-Request-Id"]
    events = daemon.wait_logs("printer", rid)
    lines = messages(events)
    assert lines[0].startswith(f"START RequestId: {rid}"), lines
    assert "Version: $LATEST" in lines[0]
    assert lines[-1].startswith(f"REPORT RequestId: {rid}"), lines
    assert f"END RequestId: {rid}" in lines
    assert lines.index(f"END RequestId: {rid}") == len(lines) - 2
    for i in range(3):
        assert f"line-{i} {unique}" in lines, lines
    assert f"to-stderr {unique}" in lines, lines
    # Printed lines keep their order.
    assert [l for l in lines if l.startswith("line-")] == [f"line-{i} {unique}" for i in range(3)]
    for e in events:
        assert e["request_id"] == rid and isinstance(e["id"], int) and e["time_ms"] > 0
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)


def test_logs_paging_and_filter(daemon, unique):
    daemon.deploy("printer", "py_print")
    rids = []
    for i in range(2):
        rids.append(daemon.invoke_ok("printer", {"marker": f"{unique}-{i}"}).headers[
            "X-Tamaya-Request-Id"])
    for rid in rids:
        daemon.wait_logs("printer", rid)
    everything = daemon.logs("printer")
    assert {e["request_id"] for e in everything["events"]} == set(rids)
    assert everything["next_since_id"] == everything["events"][-1]["id"]
    first = daemon.logs("printer", limit=2)
    assert len(first["events"]) == 2
    rest = daemon.logs("printer", since_id=first["next_since_id"])
    assert messages(first["events"]) + messages(rest["events"]) == messages(everything["events"])
    only = daemon.logs("printer", request_id=rids[1])["events"]
    assert only and all(e["request_id"] == rids[1] for e in only)
    assert f"line-0 {unique}-1" in messages(only)
    # Nothing new after the last id.
    assert daemon.logs("printer", since_id=everything["next_since_id"])["events"] == []


def test_cli_logs(daemon, unique):
    daemon.deploy("printer", "py_print")
    rid = daemon.invoke_ok("printer", {"marker": unique}).headers["X-Tamaya-Request-Id"]
    daemon.wait_logs("printer", rid)
    out = daemon.cli("logs", "printer")
    assert out.returncode == 0, out.stderr
    assert f"START RequestId: {rid}" in out.stdout
    assert f"line-1 {unique}" in out.stdout
    assert f"END RequestId: {rid}" in out.stdout
    assert f"REPORT RequestId: {rid}" in out.stdout
    filtered = daemon.cli("logs", "printer", "--request-id", rid)
    assert filtered.returncode == 0 and f"line-2 {unique}" in filtered.stdout
    missing = daemon.cli("logs", "nope")
    assert missing.returncode == 2 and "error:" in missing.stderr


def test_persistence_across_restart(daemon_factory, tmp_path, unique):
    first = daemon_factory()
    first.deploy("persist", "py_print", environment={"K": "v"}, timeout_s=7)
    rid = first.invoke_ok("persist", {"marker": unique}).headers["X-Tamaya-Request-Id"]
    assert first.request("POST", "/v1/functions/persist/versions").status_code == 201
    before = first.get("/v1/functions/persist").json()
    assert first.stop() == 0, first.stderr()

    second = daemon_factory(data_dir=first.data_dir)
    after = second.get("/v1/functions/persist")
    assert after.status_code == 200, after.text
    # Everything stored survives; the live instance counts are not stored.
    persisted = lambda doc: {k: v for k, v in doc.items() if k != "instances"}
    assert persisted(after.json()) == persisted(before)
    r = second.invoke_ok("persist", {"marker": unique + "-2"})
    assert r.json() == {"printed": 4}
    assert second.invoke_ok("persist", {}, qualifier="1").headers[
        "X-Tamaya-Executed-Version"] == "1"
    # Logs written before the restart were flushed on the drain and are still there.
    old = messages(second.logs("persist", request_id=rid)["events"])
    assert f"line-0 {unique}" in old and any(l.startswith("REPORT RequestId:") for l in old)


@pytest.mark.settings(drain_timeout_ms=5000)
def test_sigterm_drains_in_flight(daemon, unique):
    daemon.deploy("drain", "py_sleep", timeout_s=10, environment={"ITEST_MARKER": unique})
    with ThreadPoolExecutor(1) as pool:
        sent = time.monotonic()
        call = pool.submit(daemon.invoke, "drain", {"seconds": 1.5}, timeout=20)
        # The call is in flight once its instance exists (and then it sleeps 1.5 s).
        wait_until(lambda: pids_with_env("ITEST_MARKER", unique), 5.0, "the instance to start")
        time.sleep(0.2)
        daemon.signal(signal.SIGTERM)
        signalled = time.monotonic()
        # While draining, a new call is refused: no connection, or 503.
        time.sleep(0.1)
        try:
            late = daemon.invoke("drain", {"seconds": 0}, timeout=5)
            assert late.status_code == 503, late.text
        except requests.ConnectionError:
            pass
        r = call.result(timeout=15)
    assert r.status_code == 200, r.text
    assert "X-Tamaya-Function-Error" not in r.headers, r.text
    assert r.json()["end"] - r.json()["start"] >= 1.4
    rc = daemon.wait_exit()
    assert rc == 0, f"exit {rc} after the drain:\n{daemon.stderr()}"
    # It waited for the call, not the whole drain deadline.
    assert time.monotonic() - signalled < 4.5
    assert time.monotonic() - sent >= 1.5
    # After exit: connections are refused and no instance is left behind.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", daemon.port), timeout=2).close()
    assert pids_with_env("ITEST_MARKER", unique) == []


@pytest.mark.settings(drain_timeout_ms=1000)
def test_drain_deadline_cuts_long_calls(daemon, unique):
    """A call longer than drain_timeout_ms does not hold the daemon: it exits 0 by the
    deadline and the instance is stopped."""
    daemon.deploy("long", "py_sleep", timeout_s=30, environment={"ITEST_MARKER": unique})
    with ThreadPoolExecutor(1) as pool:
        call = pool.submit(daemon.invoke, "long", {"seconds": 20}, timeout=30)
        wait_until(lambda: pids_with_env("ITEST_MARKER", unique), 5.0, "the instance to start")
        time.sleep(0.2)
        signalled = time.monotonic()
        daemon.signal(signal.SIGTERM)
        rc = daemon.wait_exit()
        took = time.monotonic() - signalled
        try:
            answer = call.result(timeout=10)
            # If the call is answered at all, it must not claim success.
            assert answer.status_code != 200 or "X-Tamaya-Function-Error" in answer.headers
        except requests.RequestException:
            pass
    assert rc == 0, f"exit {rc}:\n{daemon.stderr()}"
    assert took < 1.0 + 3.0, took
    wait_until(lambda: not pids_with_env("ITEST_MARKER", unique), 3.0,
               "the instance to be stopped after the drain")


def test_sigint_also_exits_cleanly(daemon):
    daemon.deploy("x", "py_counter")
    daemon.invoke_ok("x", {})
    daemon.signal(signal.SIGINT)
    assert daemon.wait_exit() == 0, daemon.stderr()
