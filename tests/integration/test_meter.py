"""Invocation records, metrics, live logs (server-sent events) and usage/cost (src/meter)."""

import json
import math
import re
import subprocess
import threading
import time

import pytest
import requests

from itest import (
    CLI_TIMEOUT_S,
    TAMAYA_BIN,
    assert_api_error,
    parse_report,
    report_line,
    wait_until,
)

SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(daemon):
    """GET /metrics parsed: {(name, frozenset(labels)): value}; checks HELP/TYPE come first."""
    r = daemon.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers
    samples, typed = {}, set()
    for line in r.text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), m.group(3) or "", m.group(4)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in typed or base in typed, f"{name} has no TYPE line"
        samples[(name, frozenset(LABEL_RE.findall(labels)))] = float(value)
    return samples


def metric(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def records(daemon, **params):
    r = daemon.get("/v1/invocations", params=params)
    assert r.status_code == 200, r.text
    return r.json()["invocations"]


def wait_record(daemon, request_id):
    def find():
        for rec in records(daemon, limit=1000):
            if rec["request_id"] == request_id:
                return rec
        return None

    return wait_until(find, 10, f"the record of {request_id}")


def test_record_agrees_with_the_report_line(daemon):
    daemon.deploy("rec", "py_print", memory_mb=256)
    r = daemon.invoke_ok("rec", {"marker": "m1"}, tail=True)
    rid = r.headers["X-Tamaya-Request-Id"]
    report = parse_report(report_line("\n".join(e["message"] for e in daemon.wait_logs("rec", rid))))
    rec = wait_record(daemon, rid)
    assert rec["function"] == "rec" and rec["version"] == "$LATEST"
    assert rec["trigger"] == "api"
    assert rec["status"] == "success" and rec["error_type"] == ""
    assert rec["cold"] is True
    assert f'{rec["duration_ms"]:.2f} ms' == report["Duration"]
    assert f'{rec["billed_duration_ms"]} ms' == report["Billed Duration"]
    assert rec["billed_duration_ms"] == max(1, math.ceil(rec["duration_ms"]))
    assert f'{rec["memory_size_mb"]} MB' == report["Memory Size"] == "256 MB"
    assert f'{rec["max_memory_used_mb"]} MB' == report["Max Memory Used"]
    assert rec["max_memory_used_mb"] > 0
    assert f'{rec["init_duration_ms"]:.2f} ms' == report["Init Duration"]
    assert rec["start"].endswith("Z")
    # The second call is warm: no init.
    rid2 = daemon.invoke_ok("rec", {"marker": "m2"}).headers["X-Tamaya-Request-Id"]
    rec2 = wait_record(daemon, rid2)
    assert rec2["cold"] is False and rec2["init_duration_ms"] == 0
    assert rec2["start_ms"] >= rec["start_ms"]


def test_filters_and_cli(daemon):
    daemon.deploy("ok", "py_echo")
    daemon.deploy("bad", "py_raise")
    ok_ids = [daemon.invoke_ok("ok", {"i": i}).headers["X-Tamaya-Request-Id"] for i in range(3)]
    bad = daemon.invoke("bad", {})
    assert bad.headers.get("X-Tamaya-Function-Error") == "Unhandled"
    bad_id = bad.headers["X-Tamaya-Request-Id"]
    wait_record(daemon, bad_id)
    for rid in ok_ids:
        wait_record(daemon, rid)

    assert {x["request_id"] for x in records(daemon, function="ok")} == set(ok_ids)
    errors = records(daemon, status="error")
    assert [x["request_id"] for x in errors] == [bad_id]
    assert errors[0]["error_type"] and errors[0]["function"] == "bad"
    assert len(records(daemon, function="ok", limit=2)) == 2
    newest = records(daemon, limit=1)[0]
    assert records(daemon, since=str(newest["start_ms"] + 1)) == []
    assert len(records(daemon, since="1h")) == 4
    assert records(daemon, trigger="gateway") == []
    assert_api_error(daemon.get("/v1/invocations", params={"status": "meh"}), 400, "InvalidArgument")
    assert_api_error(daemon.get("/v1/invocations", params={"since": "yesterday"}), 400,
                     "InvalidArgument")
    assert_api_error(daemon.get("/v1/invocations", params={"limit": "0"}), 400, "InvalidArgument")

    out = daemon.cli("invocations", "--status", "error", "--since", "1h")
    assert out.returncode == 0, out.stderr
    assert bad_id in out.stdout and ok_ids[0] not in out.stdout
    assert "DURATION_MS" in out.stdout
    out = daemon.cli("--json", "invocations", "--function", "ok", "--limit", "2")
    assert out.returncode == 0, out.stderr
    assert [x["function"] for x in json.loads(out.stdout)["invocations"]] == ["ok", "ok"]


def test_metrics_move_as_invocations_happen(daemon):
    daemon.deploy("m", "py_echo")
    daemon.deploy("mbad", "py_raise")
    before = scrape(daemon)
    for i in range(3):
        daemon.invoke_ok("m", {"i": i})
    daemon.invoke("mbad", {})
    after = scrape(daemon)

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("tamaya_invocations_total", function="m", outcome="success") == 3
    assert delta("tamaya_invocations_total", function="mbad", outcome="error") == 1
    assert delta("tamaya_invocation_duration_seconds_count", function="m") == 3
    assert delta("tamaya_invocation_duration_seconds_bucket", function="m", le="+Inf") == 3
    assert delta("tamaya_cold_starts_total", function="m") == 1
    assert delta("tamaya_invocation_init_duration_seconds_count", function="m") == 1
    # An idle warm instance stays after the calls, none running.
    assert metric(after, "tamaya_instances", function="m", state="idle") == 1
    assert metric(after, "tamaya_function_concurrent_executions", function="m") == 0
    assert ("tamaya_concurrent_executions", frozenset()) in after


@pytest.mark.settings(queue_timeout_ms=200, queue_max_per_function=0)
def test_throttles_are_counted(daemon):
    daemon.deploy("slow", "py_sleep", max_concurrency=1, timeout_s=10)
    before = scrape(daemon)
    busy = threading.Thread(target=lambda: daemon.invoke("slow", {"seconds": 1.5}))
    busy.start()
    try:
        wait_until(lambda: metric(scrape(daemon), "tamaya_function_concurrent_executions",
                                  function="slow") == 1, 10, "the slow invocation to run")
        r = daemon.invoke("slow", {"seconds": 0})
        assert r.status_code == 429, r.text
    finally:
        busy.join()
    after = scrape(daemon)
    assert metric(after, "tamaya_throttles_total", function="slow") - metric(
        before, "tamaya_throttles_total", function="slow") == 1
    assert metric(after, "tamaya_invocations_total", function="slow", outcome="throttled") == 1


def test_gateway_requests_are_counted_and_recorded(daemon):
    daemon.deploy("gw", "gw_echo", timeout_s=10)
    r = daemon.post_json("/v1/routes", {"route_key": "GET /hello", "target": "gw"})
    assert r.status_code == 201, r.text
    base = f"http://127.0.0.1:{daemon.gateway_port}"
    assert requests.get(base + "/hello", timeout=30).status_code == 200
    assert requests.get(base + "/nowhere", timeout=30).status_code == 404
    s = scrape(daemon)
    assert metric(s, "tamaya_gateway_requests_total", route="GET /hello", status="200") == 1
    assert metric(s, "tamaya_gateway_requests_total", route="-", status="404") == 1
    recs = wait_until(lambda: records(daemon, trigger="gateway"), 10, "a gateway record")
    assert recs[0]["function"] == "gw"


def read_sse_lines(resp, want, timeout_s):
    """data: payloads of an SSE response until `want` of them arrived."""
    got, buf = [], b""
    deadline = time.monotonic() + timeout_s
    for chunk in resp.iter_content(chunk_size=1):
        buf += chunk
        while b"\n\n" in buf:
            event, buf = buf.split(b"\n\n", 1)
            for line in event.split(b"\n"):
                if line.startswith(b"data: "):
                    got.append(json.loads(line[6:]))
        if len(got) >= want or time.monotonic() > deadline:
            break
    return got


def test_sse_follow_receives_new_lines(daemon):
    daemon.deploy("tail", "py_print")
    resp = requests.get(daemon.base + "/v1/functions/tail/logs/stream", stream=True, timeout=30)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    wait_until(lambda: metric(scrape(daemon), "tamaya_log_streams") == 1, 10, "the stream")
    rid = daemon.invoke_ok("tail", {"marker": "live-1"}).headers["X-Tamaya-Request-Id"]
    got = read_sse_lines(resp, 7, 20)  # START, 3 lines, stderr, END, REPORT
    resp.close()
    messages = [e["message"] for e in got]
    assert any("line-0 live-1" in m for m in messages), messages
    assert any(m.startswith("REPORT RequestId: " + rid) for m in messages), messages
    assert all(e["request_id"] == rid for e in got)
    # The disconnect frees the follower.
    wait_until(lambda: metric(scrape(daemon), "tamaya_log_streams") == 0, 10,
               "the closed stream to be released")
    assert_api_error(daemon.get("/v1/functions/nope/logs/stream"), 404, "NotFound")


@pytest.mark.settings(logs_follow_max_streams=2)
def test_stream_count_is_bounded(daemon):
    daemon.deploy("tail", "py_print")
    streams = [requests.get(daemon.base + "/v1/functions/tail/logs/stream", stream=True, timeout=30)
               for _ in range(2)]
    try:
        assert all(s.status_code == 200 for s in streams)
        assert_api_error(daemon.get("/v1/functions/tail/logs/stream"), 429, "TooManyRequests")
    finally:
        for s in streams:
            s.close()
    wait_until(lambda: metric(scrape(daemon), "tamaya_log_streams") == 0, 10, "streams released")
    again = requests.get(daemon.base + "/v1/functions/tail/logs/stream", stream=True, timeout=30)
    assert again.status_code == 200
    again.close()


def test_cli_logs_follow_streams(daemon):
    daemon.deploy("tail", "py_print")
    daemon.invoke_ok("tail", {"marker": "old"})
    cmd = [str(TAMAYA_BIN), "--endpoint", daemon.base, "logs", "tail", "-f"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: metric(scrape(daemon), "tamaya_log_streams") == 1, 15, "the CLI stream")
        daemon.invoke_ok("tail", {"marker": "fresh"})
        lines = []

        def reader():
            for line in proc.stdout:
                lines.append(line)
                if "REPORT" in line and any("fresh" in x for x in lines):
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(20)
        text = "".join(lines)
        assert "line-0 old" in text, text  # the history first
        assert "line-2 fresh" in text, text  # then the live lines
    finally:
        proc.terminate()
        proc.wait(CLI_TIMEOUT_S)


@pytest.mark.settings(price_request_usd_per_million=0.5, price_gb_second_usd=0.001,
                      rented_instance_hourly_usd=0.1, rented_instance_memory_mb=1024)
def test_usage_and_cost_match_a_hand_computation(daemon):
    daemon.deploy("u1", "py_echo", memory_mb=512)
    daemon.deploy("u2", "py_echo", memory_mb=256)
    ids = [daemon.invoke_ok("u1", {"i": i}).headers["X-Tamaya-Request-Id"] for i in range(3)]
    ids.append(daemon.invoke_ok("u2", {}).headers["X-Tamaya-Request-Id"])
    for rid in ids:
        wait_record(daemon, rid)
    recs = records(daemon, since="1h", limit=100)
    assert len(recs) == 4
    r = daemon.get("/v1/usage", params={"since": "1h"})
    assert r.status_code == 200, r.text
    usage = r.json()
    assert abs(usage["hours"] - 1.0) < 0.01
    by_fn = {f["function"]: f for f in usage["functions"]}
    for name in ("u1", "u2"):
        mine = [x for x in recs if x["function"] == name]
        gbs = sum(x["memory_size_mb"] / 1024 * x["billed_duration_ms"] / 1000 for x in mine)
        cost = len(mine) * 0.5 / 1e6 + gbs * 0.001
        f = by_fn[name]
        assert f["requests"] == len(mine)
        assert f["billed_ms"] == sum(x["billed_duration_ms"] for x in mine)
        assert f["gb_seconds"] == pytest.approx(gbs, rel=1e-9)
        assert f["cost_usd"] == pytest.approx(cost, rel=1e-9)
        # Sequential calls: peak 1; one VM of 1024 MB holds 512 or 256 MB, for the window.
        assert f["peak_concurrency"] == 1
        assert f["rented_instances"] == 1
        assert f["rented_cost_usd"] == pytest.approx(0.1 * usage["hours"], rel=1e-9)
    total = usage["total"]
    assert total["requests"] == 4
    assert total["cost_usd"] == pytest.approx(by_fn["u1"]["cost_usd"] + by_fn["u2"]["cost_usd"])
    assert total["savings_usd"] == pytest.approx(total["rented_cost_usd"] - total["cost_usd"])
    assert sum(h["requests"] for h in usage["hourly"]) == 4
    assert usage["prices"]["gb_second_usd"] == 0.001

    out = daemon.cli("usage", "--since", "1h")
    assert out.returncode == 0, out.stderr
    assert "u1" in out.stdout and "TOTAL" in out.stdout and "always on" in out.stdout
    assert_api_error(daemon.get("/v1/usage", params={"since": "1h", "until": "2h"}), 400,
                     "InvalidArgument")
