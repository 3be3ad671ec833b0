"""Environment and context, code and configuration updates, versions, delete."""

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from itest import assert_api_error, b64, write_handler, zip_tree


def version_code(tmp_path, tag):
    """A python function that answers {"v": tag}."""
    return write_handler(tmp_path / f"code-{tag}",
                         f"def handler(event, context):\n    return {{'v': {tag!r}}}\n")


@pytest.mark.settings(region="eu-west-3")
def test_environment_and_context(daemon, unique):
    daemon.deploy("ctx", "py_echo", memory_mb=256, timeout_s=5,
                  environment={"GREETING": "hi", "EMPTY": "", "WITH_EQ": "a=b"})
    r = daemon.invoke_ok("ctx", {"q": 1})
    body = r.json()
    env, ctx = body["env"], body["context"]
    assert env["GREETING"] == "hi" and env["EMPTY"] == "" and env["WITH_EQ"] == "a=b"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "ctx"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_REGION"] == "eu-west-3"
    assert env["LAMBDA_TASK_ROOT"] and env["LAMBDA_TASK_ROOT"] == body["cwd"]
    assert env["AWS_LAMBDA_RUNTIME_API"].startswith("127.0.0.1:")
    assert env["_HANDLER"] == "app.handler"
    assert ctx["function_name"] == "ctx"
    assert ctx["function_version"] == "$LATEST"
    assert str(ctx["memory_limit_in_mb"]) == "256"
    assert ctx["aws_request_id"] == r.headers["X-Tamaya-Request-Id"]
    assert ctx["log_group_name"] == "/aws/lambda/ctx"
    assert 0 < ctx["remaining_ms"] <= 5000, ctx
    # Each call has its own request id.
    r2 = daemon.invoke_ok("ctx", {})
    assert r2.headers["X-Tamaya-Request-Id"] != r.headers["X-Tamaya-Request-Id"]
    assert r2.json()["context"]["aws_request_id"] == r2.headers["X-Tamaya-Request-Id"]


def test_daemon_environment_is_not_inherited(daemon_factory):
    d = daemon_factory(env={"ITEST_DAEMON_ONLY": "secret"})
    d.deploy("ctx", "py_echo")
    env = d.invoke_ok("ctx", {}).json()["env"]
    assert "ITEST_DAEMON_ONLY" not in env
    assert env["PATH"]


def test_code_update_takes_effect(daemon, tmp_path):
    created = daemon.deploy("upd", version_code(tmp_path, "one"))
    assert daemon.invoke_ok("upd", {}).json() == {"v": "one"}
    zip_two = zip_tree(version_code(tmp_path, "two"))
    r = daemon.put_code("upd", zip_two)
    assert r.status_code == 200, r.text
    updated = r.json()
    assert updated["code_sha256"] == hashlib.sha256(zip_two).hexdigest()
    assert updated["code_size"] == len(zip_two)
    assert updated["revision_id"] != created["revision_id"]
    assert updated["created_at"] == created["created_at"]
    assert daemon.invoke_ok("upd", {}).json() == {"v": "two"}
    # The JSON form of the upload works as well.
    zip_three = zip_tree(version_code(tmp_path, "three"))
    r = daemon.request("PUT", "/v1/functions/upd/code", json={"zip_base64": b64(zip_three)})
    assert r.status_code == 200, r.text
    assert daemon.invoke_ok("upd", {}).json() == {"v": "three"}
    assert daemon.get("/v1/functions/upd").json()["code_sha256"] == r.json()["code_sha256"]


def test_code_update_while_busy_finishes_old_call(daemon, tmp_path):
    """An in-flight call on the old code completes; calls after the update run the new code."""
    daemon.deploy("busy", "py_sleep", timeout_s=10)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(daemon.invoke, "busy", {"seconds": 1})
        # Give the call time to reach its instance (a cold python start is ~50 ms).
        time.sleep(0.4)
        assert daemon.put_code("busy", version_code(tmp_path, "new")).status_code == 200
        assert daemon.invoke_ok("busy", {}).json() == {"v": "new"}
        old = slow.result(timeout=15)
    assert old.status_code == 200 and "X-Tamaya-Function-Error" not in old.headers, old.text
    assert "start" in old.json()


def test_config_update_takes_effect(daemon):
    daemon.deploy("cfg", "py_counter", environment={"TAG": "a"})
    assert daemon.invoke_ok("cfg", {}).json()["tag"] == "a"
    r = daemon.patch("cfg", {"environment": {"TAG": "b"}, "memory_mb": 256, "description": "d2"})
    assert r.status_code == 200, r.text
    f = r.json()
    assert f["environment"] == {"TAG": "b"} and f["memory_mb"] == 256 and f["description"] == "d2"
    assert f["runtime"] == "python3" and f["handler"] == "app.handler"  # untouched
    body = daemon.invoke_ok("cfg", {}).json()
    assert body["tag"] == "b"
    assert body["count"] == 1  # a new instance with the new configuration
    assert daemon.get("/v1/functions/cfg").json()["environment"] == {"TAG": "b"}
    # environment replaces the whole map.
    assert daemon.patch("cfg", {"environment": {}}).json()["environment"] == {}
    assert daemon.invoke_ok("cfg", {}).json()["tag"] == ""


def test_handler_change_through_patch(daemon, tmp_path):
    code = write_handler(tmp_path / "two", "def first(e, c):\n    return 1\n\n"
                                          "def second(e, c):\n    return 2\n")
    daemon.deploy("two", code, handler="app.first")
    assert daemon.invoke_ok("two", {}).json() == 1
    assert daemon.patch("two", {"handler": "app.second"}).status_code == 200
    assert daemon.invoke_ok("two", {}).json() == 2


def test_publish_keeps_old_code(daemon, tmp_path):
    daemon.deploy("pub", version_code(tmp_path, "one"), environment={"K": "1"})
    r = daemon.request("POST", "/v1/functions/pub/versions", json={"description": "first"})
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert v1["version"] == "1" and v1["description"] == "first"
    # Nothing changed since: the same version again, with 200.
    r = daemon.request("POST", "/v1/functions/pub/versions")
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "1"

    assert daemon.put_code("pub", version_code(tmp_path, "two")).status_code == 200
    assert daemon.patch("pub", {"environment": {"K": "2"}}).status_code == 200
    assert daemon.invoke_ok("pub", {}).json() == {"v": "two"}
    r = daemon.invoke_ok("pub", {}, qualifier="1")
    assert r.json() == {"v": "one"}
    assert r.headers["X-Tamaya-Executed-Version"] == "1"
    r = daemon.invoke_ok("pub", {}, qualifier="$LATEST")
    assert r.json() == {"v": "two"} and r.headers["X-Tamaya-Executed-Version"] == "$LATEST"

    got = daemon.get("/v1/functions/pub", params={"qualifier": "1"})
    assert got.status_code == 200
    assert got.json()["version"] == "1"
    assert got.json()["code_sha256"] == v1["code_sha256"]
    assert got.json()["environment"] == {"K": "1"}

    r = daemon.request("POST", "/v1/functions/pub/versions")
    assert r.status_code == 201 and r.json()["version"] == "2"
    versions = daemon.get("/v1/functions/pub/versions").json()["versions"]
    assert [v["version"] for v in versions] == ["$LATEST", "1", "2"]

    assert_api_error(daemon.invoke("pub", {}, qualifier="9"), 404, "NotFound")
    assert_api_error(daemon.get("/v1/functions/pub", params={"qualifier": "9"}), 404, "NotFound")


def test_published_version_env(daemon):
    daemon.deploy("penv", "py_echo", environment={"STAGE": "old"})
    assert daemon.request("POST", "/v1/functions/penv/versions").status_code == 201
    daemon.patch("penv", {"environment": {"STAGE": "new"}})
    v1 = daemon.invoke_ok("penv", {}, qualifier="1").json()
    assert v1["env"]["STAGE"] == "old"
    assert v1["env"]["AWS_LAMBDA_FUNCTION_VERSION"] == "1"
    assert v1["context"]["function_version"] == "1"
    assert daemon.invoke_ok("penv", {}).json()["env"]["STAGE"] == "new"


def test_delete(daemon):
    daemon.deploy("keep", "py_counter")
    daemon.deploy("gone", "py_counter")
    daemon.invoke_ok("gone", {})
    assert daemon.request("POST", "/v1/functions/gone/versions").status_code == 201
    r = daemon.request("DELETE", "/v1/functions/gone")
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_api_error(daemon.get("/v1/functions/gone"), 404, "NotFound")
    assert_api_error(daemon.get("/v1/functions/gone", params={"qualifier": "1"}), 404, "NotFound")
    assert_api_error(daemon.invoke("gone", {}), 404, "NotFound")
    assert_api_error(daemon.get("/v1/functions/gone/versions"), 404, "NotFound")
    assert_api_error(daemon.get("/v1/functions/gone/logs"), 404, "NotFound")
    assert_api_error(daemon.request("DELETE", "/v1/functions/gone"), 404, "NotFound")
    assert [f["name"] for f in daemon.functions()] == ["keep"]
    daemon.invoke_ok("keep", {})
    # The name is free again; the new function starts from scratch.
    daemon.deploy("gone", "py_counter")
    assert daemon.invoke_ok("gone", {}).json()["count"] == 1
    assert [v["version"] for v in daemon.get("/v1/functions/gone/versions").json()["versions"]] \
        == ["$LATEST"]
