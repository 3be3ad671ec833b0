"""Schedules (rate/cron in EventBridge's syntax) against the real daemon, on the test-only manual
clock (setting schedule_test_clock_ms, moved with POST /v1/test/clock): fire times, the
scheduled-event payload, custom input, disable, restart without double fires, the missed-fire
policy, and 400s for bad expressions. Fires go through the durable async queue; each invocation is
read back from the function's log (py_sched prints the event it got)."""

import json

import pytest

from itest import assert_api_error, wait_until

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MINUTE = 60_000
HOUR = 60 * MINUTE
DELIVERY_TIMEOUT_S = 60.0  # a cold start and the queue's delivery, generously

pytestmark = pytest.mark.settings(schedule_test_clock_ms=T0)


def advance(d, ms):
    r = d.post_json("/v1/test/clock", {"advance_ms": ms})
    assert r.status_code == 200, r.text
    return r.json()["fired"]


def schedule(d, name):
    r = d.get(f"/v1/schedules/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def sched_events(d, fn):
    """The events py_sched printed, in log order, each with the request id it ran under."""
    out = []
    for e in d.logs(fn, limit=1000)["events"]:
        if e["message"].startswith("SCHED "):
            doc = json.loads(e["message"][len("SCHED "):])
            out.append(doc)
    return out


def wait_events(d, fn, count):
    events = wait_until(lambda: (lambda ev: ev if len(ev) >= count else None)(sched_events(d, fn)),
                        DELIVERY_TIMEOUT_S, f"{count} scheduled invocations of {fn}")
    return events


def wait_queue_empty(d):
    def empty():
        r = d.get("/v1/events/stats")
        assert r.status_code == 200, r.text
        return r.json()["queue_depth"] == 0
    wait_until(empty, DELIVERY_TIMEOUT_S, "the async queue to drain")


def test_rate_schedule_from_the_cli_fires_at_whole_periods(daemon, unique):
    fn = f"s{unique}"
    daemon.deploy(fn, "py_sched")
    r = daemon.cli("schedule", "create", "tick", "--function", fn, "--expression", "rate(5 minutes)")
    assert r.returncode == 0, r.stderr
    assert "rate(5 minutes)" in r.stdout and "2026-01-01T00:05:00.000Z" in r.stdout, r.stdout

    assert advance(daemon, 4 * MINUTE) == 0
    assert advance(daemon, MINUTE) == 1  # 00:05
    assert advance(daemon, 10 * MINUTE + 30_000) == 2  # 00:10, 00:15

    events = wait_events(daemon, fn, 3)
    times = sorted(e["event"]["time"] for e in events)
    assert times == ["2026-01-01T00:05:00Z", "2026-01-01T00:10:00Z", "2026-01-01T00:15:00Z"]
    for e in events:
        ev = e["event"]
        assert set(ev) == {"version", "id", "detail-type", "source", "account", "time", "region",
                           "resources", "detail"}, ev
        assert ev["version"] == "0" and ev["detail-type"] == "Scheduled Event"
        assert ev["source"] == "aws.events" and ev["detail"] == {} and ev["region"] == "us-east-1"
        assert ev["resources"] == ["arn:aws:events:us-east-1:000000000000:rule/tick"]
        assert ev["id"] == e["request_id"]  # the event id is the invocation's request id
    assert len({e["event"]["id"] for e in events}) == 3

    # The invocation records say a schedule started them (records are written in batches).
    def scheduled_records():
        r = daemon.get("/v1/invocations", params={"function": fn, "trigger": "schedule"})
        assert r.status_code == 200, r.text
        recs = r.json()["invocations"]
        return recs if len(recs) >= 3 else None
    recs = wait_until(scheduled_records, DELIVERY_TIMEOUT_S, "3 records with trigger schedule")
    assert {rec["request_id"] for rec in recs} == {e["request_id"] for e in events}, recs

    r = daemon.cli("schedule", "ls")
    assert r.returncode == 0, r.stderr
    assert "tick" in r.stdout and "2026-01-01T00:20:00.000Z" in r.stdout, r.stdout
    r = daemon.cli("--json", "schedule", "get", "tick")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["fires"] == 3 and doc["last_fired"] == "2026-01-01T00:15:00.000Z"
    assert [f["scheduled"] for f in doc["recent_fires"]] == [
        "2026-01-01T00:15:00.000Z", "2026-01-01T00:10:00.000Z", "2026-01-01T00:05:00.000Z"]
    r = daemon.cli("schedule", "disable", "tick")
    assert r.returncode == 0 and "disabled" in r.stdout, r.stderr
    r = daemon.cli("schedule", "rm", "tick")
    assert r.returncode == 0, r.stderr
    r = daemon.cli("schedule", "get", "tick")
    assert r.returncode != 0 and "no schedule 'tick'" in r.stderr, r.stderr


def test_cron_with_input_through_the_admin_api_and_disable(daemon, unique):
    fn = f"s{unique}"
    daemon.deploy(fn, "py_sched")
    r = daemon.post_json("/v1/schedules", {"name": "noon", "expression": "cron(0 12 * * ? *)",
                                           "function": fn, "input": {"marker": "noon"}})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["next_fire"] == "2026-01-01T12:00:00.000Z" and body["enabled"] is True
    assert body["input"] == {"marker": "noon"} and body["missed"] == "fire_once"
    assert body["timezone"] == "UTC"

    assert advance(daemon, 36 * HOUR) == 2  # Jan 1 and Jan 2 at noon; now Jan 2 12:00
    events = wait_events(daemon, fn, 2)
    assert [e["event"] for e in events] == [{"marker": "noon"}, {"marker": "noon"}]

    r = daemon.request("POST", "/v1/schedules/noon/disable")
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["next_fire"] is None
    assert advance(daemon, 48 * HOUR) == 0  # now Jan 4 12:00
    assert schedule(daemon, "noon")["fires"] == 2

    r = daemon.request("POST", "/v1/schedules/noon/enable")
    assert r.status_code == 200, r.text
    assert r.json()["next_fire"] == "2026-01-05T12:00:00.000Z"  # missed noons are not fired
    assert advance(daemon, 24 * HOUR) == 1
    wait_events(daemon, fn, 3)
    wait_queue_empty(daemon)
    assert len(sched_events(daemon, fn)) == 3

    listed = daemon.get("/v1/schedules").json()["schedules"]
    assert [s["name"] for s in listed] == ["noon"]
    assert daemon.request("DELETE", "/v1/schedules/noon").status_code == 204
    assert_api_error(daemon.get("/v1/schedules/noon"), 404, "NotFound")
    assert advance(daemon, 24 * HOUR) == 0


def test_restart_does_not_double_fire_and_missed_fire_policy(daemon_factory, tmp_path, unique):
    fn_once, fn_skip = f"o{unique}", f"k{unique}"
    data = tmp_path / "data"
    d = daemon_factory(data_dir=data)
    d.deploy(fn_once, "py_sched")
    d.deploy(fn_skip, "py_sched")
    for name, fn, missed in (("once", fn_once, "fire_once"), ("skip", fn_skip, "skip")):
        r = d.post_json("/v1/schedules", {"name": name, "expression": "rate(1 minute)",
                                          "function": fn, "missed": missed})
        assert r.status_code == 201, r.text
    assert advance(d, 2 * MINUTE) == 4  # 00:01 and 00:02, each
    wait_events(d, fn_once, 2)
    wait_events(d, fn_skip, 2)
    wait_queue_empty(d)
    assert d.stop() == 0

    # Back at the same instant: nothing is due again.
    d = daemon_factory(data_dir=data, settings={"schedule_test_clock_ms": T0 + 2 * MINUTE})
    assert schedule(d, "once")["fires"] == 2 and schedule(d, "skip")["fires"] == 2
    assert schedule(d, "once")["next_fire"] == "2026-01-01T00:03:00.000Z"
    assert d.stop() == 0

    # Down until 00:30:30: 28 times missed. fire_once fires one (for 00:03), skip none.
    d = daemon_factory(data_dir=data, settings={"schedule_test_clock_ms": T0 + 30 * MINUTE + 30_000})
    once, skip = schedule(d, "once"), schedule(d, "skip")
    assert once["fires"] == 3 and skip["fires"] == 2
    assert once["recent_fires"][0]["scheduled"] == "2026-01-01T00:03:00.000Z"
    assert once["recent_fires"][0]["missed"] is True
    assert once["recent_fires"][0]["fired"] == "2026-01-01T00:30:30.000Z"
    assert once["next_fire"] == skip["next_fire"] == "2026-01-01T00:31:00.000Z"
    events = wait_events(d, fn_once, 3)
    assert events[-1]["event"]["time"] == "2026-01-01T00:03:00Z"
    wait_queue_empty(d)
    assert len(sched_events(d, fn_once)) == 3 and len(sched_events(d, fn_skip)) == 2
    # Both resume on the minute.
    assert advance(d, 30_000) == 2
    wait_events(d, fn_once, 4)
    wait_events(d, fn_skip, 3)


def test_bad_schedules_get_400_with_a_message_that_says_what(daemon, unique):
    fn = f"s{unique}"
    daemon.deploy(fn, "py_sched")
    cases = [
        ("rate(1 minutes)", "rate(1 minute)"),
        ("rate(5 minute)", "rate(5 minutes)"),
        ("rate(0 hours)", "at least 1"),
        ("rate(5 seconds)", "minute(s), hour(s) or day(s)"),
        ("cron(0 12 * * *)", "6 fields"),
        ("cron(0 12 * * * *)", "must be '?'"),
        ("cron(0 25 * * ? *)", "hours field: '25' is out of range"),
        ("cron(0 0 ? * MON#6 *)", "1 to 5"),
        ("cron(0 0 30 2 ? *)", "matches no date"),
        ("every day", "neither rate"),
    ]
    for expression, says in cases:
        r = daemon.post_json("/v1/schedules", {"name": "bad", "expression": expression,
                                               "function": fn})
        message = assert_api_error(r, 400, "InvalidArgument")
        assert says in message, (expression, message)
    r = daemon.post_json("/v1/schedules", {"name": "bad", "expression": "rate(1 hour)",
                                           "function": fn, "timezone": "Asia/Tokyo"})
    assert "UTC only" in assert_api_error(r, 400, "InvalidArgument")
    r = daemon.post_json("/v1/schedules", {"name": "bad", "expression": "rate(1 hour)",
                                           "function": "nope"})
    assert_api_error(r, 404, "NotFound")
    r = daemon.cli("schedule", "create", "bad", "--function", fn, "--expression", "rate(1 minutes)")
    assert r.returncode != 0 and "rate(1 minute)" in r.stderr, r.stderr
    assert daemon.get("/v1/schedules").json()["schedules"] == []


@pytest.mark.settings(schedule_test_clock_ms=0)
def test_test_clock_is_off_by_default(daemon):
    r = daemon.post_json("/v1/test/clock", {"advance_ms": 1000})
    assert r.status_code == 404, r.text
