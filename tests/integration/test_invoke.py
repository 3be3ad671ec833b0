"""Deploy through the API and invoke each runtime and handler style; function errors."""

import json

import pytest

from itest import function_dir, log_tail, report_line


def assert_ok_invoke(r):
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert "X-Tamaya-Function-Error" not in r.headers, r.text
    assert r.headers["X-Tamaya-Request-Id"]
    assert r.headers["X-Tamaya-Executed-Version"] == "$LATEST"
    return r.json()


def assert_function_error(r, error_type):
    assert r.status_code == 200, r.text
    assert r.headers.get("X-Tamaya-Function-Error") == "Unhandled", dict(r.headers)
    assert r.headers["X-Tamaya-Request-Id"]
    body = r.json()
    assert body["errorType"] == error_type, body
    assert isinstance(body["errorMessage"], str)
    return body


def test_create_answers_the_function_object(daemon):
    f = daemon.deploy("echo", "py_echo", memory_mb=256, timeout_s=7, max_concurrency=2,
                      environment={"A": "1"}, description="the echo")
    assert f["name"] == "echo"
    assert f["version"] == "$LATEST"
    assert f["runtime"] == "python3"
    assert f["handler"] == "app.handler"
    assert (f["memory_mb"], f["timeout_s"], f["max_concurrency"]) == (256, 7, 2)
    assert f["environment"] == {"A": "1"}
    assert f["description"] == "the echo"
    assert len(f["code_sha256"]) == 64 and f["code_size"] > 0
    assert f["revision_id"] and f["created_at"].endswith("Z") and f["updated_at"].endswith("Z")
    got = daemon.get("/v1/functions/echo")
    assert got.status_code == 200 and got.json() == f
    # Defaults of the daemon's settings where the deploy said nothing.
    g = daemon.deploy("defaults", "py_echo")
    assert (g["memory_mb"], g["timeout_s"], g["max_concurrency"]) == (128, 3, 10)
    assert g["environment"] == {} and g["description"] == ""
    names = [x["name"] for x in daemon.functions()]
    assert names == ["defaults", "echo"]  # sorted by name


def test_python_echo(daemon):
    daemon.deploy("pyecho", "py_echo")
    event = {"hello": "world", "n": [1, 2, 3], "nested": {"ok": True}}
    body = assert_ok_invoke(daemon.invoke("pyecho", event))
    assert body["event"] == event


def test_empty_payload_is_the_empty_event(daemon):
    daemon.deploy("pyecho", "py_echo")
    body = assert_ok_invoke(daemon.invoke("pyecho", data=b""))
    assert body["event"] == {}


@pytest.mark.parametrize("fn", ["node_async", "node_callback", "node_esm"])
def test_node_handler_styles(daemon, fn):
    daemon.deploy("n", fn, runtime="nodejs")
    r = daemon.invoke("n", {"k": "v"})
    body = assert_ok_invoke(r)
    assert body["event"] == {"k": "v"}
    expected_style = {"node_async": "async", "node_callback": "callback", "node_esm": "esm"}[fn]
    assert body["style"] == expected_style
    if fn == "node_esm":
        assert body["greeting"] == "hello from esm"
    else:
        assert body["requestId"] == r.headers["X-Tamaya-Request-Id"]
    if fn == "node_async":
        assert body["functionName"] == "n"
        assert str(body["memoryLimitInMB"]) == "128"
        assert 0 < body["remaining"] <= 3000


def test_node_throw_is_a_function_error(daemon):
    daemon.deploy("nthrow", "node_throw", runtime="nodejs")
    body = assert_function_error(daemon.invoke("nthrow", {}), "ItestError")
    assert body["errorMessage"] == "node boom"
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    # The instance survives a handler exception: the next call works the same way.
    assert_function_error(daemon.invoke("nthrow", {}), "ItestError")


def test_provided_bootstrap(daemon):
    assert function_dir("provided_echo").joinpath("bootstrap").stat().st_mode & 0o111
    daemon.deploy("prov", "provided_echo", runtime="provided", handler=None)
    r = daemon.invoke("prov", {"x": 1})
    body = assert_ok_invoke(r)
    assert body == {"runtime": "provided", "echo": {"x": 1},
                    "request_id": r.headers["X-Tamaya-Request-Id"], "function_name": "prov"}
    # Warm: the same bootstrap process answers the next event.
    assert assert_ok_invoke(daemon.invoke("prov", {"x": 2}))["echo"] == {"x": 2}


def test_provided_without_bootstrap(daemon):
    """Lambda accepts the code and fails the invoke with Runtime.InvalidEntrypoint; refusing
    the deploy itself (400 naming the missing bootstrap) is as good."""
    r = daemon.create("nob", "provided_no_bootstrap", runtime="provided", handler=None)
    if r.status_code == 400:
        assert "bootstrap" in r.json()["error"]["message"]
        assert daemon.functions() == []
        return
    assert r.status_code == 201, r.text
    body = assert_function_error(daemon.invoke("nob", {}), "Runtime.InvalidEntrypoint")
    assert "bootstrap" in body["errorMessage"]


def test_handler_exception(daemon):
    daemon.deploy("raise", "py_raise")
    r = daemon.invoke("raise", {}, tail=True)
    body = assert_function_error(r, "ValueError")
    assert body["errorMessage"] == "boom"
    assert isinstance(body["stackTrace"], list) and body["stackTrace"]
    assert any("app.py" in frame for frame in body["stackTrace"]), body["stackTrace"]
    log = log_tail(r)
    assert "[ERROR] ValueError: boom" in log, log


def test_import_error_is_an_init_error(daemon):
    daemon.deploy("imp", "py_import_error")
    body = assert_function_error(daemon.invoke("imp", {}), "Runtime.ImportModuleError")
    assert "tamaya_itest_no_such_module" in body["errorMessage"]
    # Every call fails the same way (a fresh init each time), and nothing is stuck.
    body = assert_function_error(daemon.invoke("imp", {}), "Runtime.ImportModuleError")


def test_handler_not_found(daemon):
    daemon.deploy("hnf", "py_handler_not_found")
    body = assert_function_error(daemon.invoke("hnf", {}), "Runtime.HandlerNotFound")
    assert "handler" in body["errorMessage"]


def test_node_import_error(daemon, tmp_path):
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "app.js").write_text("require('tamaya-itest-no-such-package');\n"
                                              "exports.handler = async () => 1;\n")
    daemon.deploy("nimp", tmp_path / "code", runtime="nodejs")
    body = assert_function_error(daemon.invoke("nimp", {}), "Runtime.ImportModuleError")
    assert "tamaya-itest-no-such-package" in body["errorMessage"]


@pytest.mark.settings(drain_timeout_ms=3000)
def test_timeout(daemon):
    daemon.deploy("slow", "py_sleep", timeout_s=1)
    first = assert_ok_invoke(daemon.invoke("slow", {"seconds": 0}))
    assert first["count"] == 1
    r = daemon.invoke("slow", {"seconds": 10}, tail=True)
    elapsed = r.elapsed.total_seconds()
    body = assert_function_error(r, "Sandbox.Timedout")
    assert "Task timed out after 1.00 seconds" in body["errorMessage"], body
    # Answered by the timeout, not by the function's own end: an order, not a time limit.
    assert elapsed < 10, f"the timeout answered after {elapsed:.2f} s"
    log = log_tail(r)
    assert "Task timed out after 1.00 seconds" in log and "REPORT RequestId:" in log, log
    # The timed-out instance is gone; the next call gets a fresh one (count restarts).
    after = assert_ok_invoke(daemon.invoke("slow", {"seconds": 0}))
    assert after["count"] == 1
    assert after["instance"] != first["instance"]


def test_crash_is_runtime_exit_error(daemon):
    daemon.deploy("crash", "py_crash")
    first = assert_ok_invoke(daemon.invoke("crash", {}))
    assert first["count"] == 1
    r = daemon.invoke("crash", {"crash": True}, tail=True)
    body = assert_function_error(r, "Runtime.ExitError")
    assert "exit status 3" in body["errorMessage"], body
    assert "about to exit" in log_tail(r)
    after = assert_ok_invoke(daemon.invoke("crash", {}))
    assert after["count"] == 1 and after["instance"] != first["instance"]


def test_report_shows_memory_used(daemon):
    daemon.deploy("mem", "py_memory", memory_mb=512, timeout_s=30)
    r = daemon.invoke("mem", {"mb": 64}, tail=True)
    assert assert_ok_invoke(r) == {"allocated_mb": 64}
    report = report_line(log_tail(r))
    assert "Memory Size: 512 MB" in report, report
    used = int(report.split("Max Memory Used: ")[1].split(" MB")[0])
    assert 64 <= used < 512, report


def test_memory_limit_is_enforced(daemon):
    """Lambda kills an instance that goes over memory_mb; the call is a function error."""
    daemon.deploy("hog", "py_memory", memory_mb=128, timeout_s=30)
    r = daemon.invoke("hog", {"mb": 400})
    assert r.status_code == 200, r.text
    assert r.headers.get("X-Tamaya-Function-Error") == "Unhandled", (
        f"allocating 400 MB in a 128 MB function succeeded: {r.text}")
    error_type = json.loads(r.text)["errorType"]
    # Killed by the limit (Runtime.ExitError / Runtime.OutOfMemory), or refused the memory.
    assert error_type.startswith("Runtime.") or error_type == "MemoryError", r.text
    # The function is usable again with a sane request.
    assert daemon.invoke_ok("hog", {"mb": 1}).json() == {"allocated_mb": 1}
