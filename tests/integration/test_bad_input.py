"""Bad requests: each answered with a clear 4xx JSON error, and nothing changed after."""

import json
import stat
import uuid

import pytest

from itest import assert_api_error, b64, function_dir, zip_entries, zip_tree

GOOD_PY = b"def handler(event, context):\n    return 'ok'\n"
REG = stat.S_IFREG | 0o644
LNK = stat.S_IFLNK | 0o777


@pytest.fixture
def seeded(daemon):
    """A daemon holding one function; yields it and checks nothing changed at the end."""
    daemon.deploy("existing", "py_counter", environment={"K": "v"})
    before = daemon.functions()
    yield daemon
    assert daemon.functions() == before, "a rejected request changed the functions"
    daemon.invoke_ok("existing", {})


def create_body(name="fresh", runtime="python3", handler="app.handler", code=None, **extra):
    body = {"name": name, "runtime": runtime, "handler": handler,
            "code": {"zip_base64": b64(code if code is not None else zip_entries(
                [("app.py", GOOD_PY, REG)]))}}
    body.update(extra)
    return body


def post_raw(daemon, body, content_type="application/json"):
    return daemon.request("POST", "/v1/functions", data=body,
                          headers={"Content-Type": content_type})


def test_malformed_json_on_create(seeded):
    msg = assert_api_error(post_raw(seeded, b'{"name": "x", "runtime": '), 400, "InvalidArgument")
    assert "JSON" in msg
    assert_api_error(post_raw(seeded, b"[1, 2]"), 400, "InvalidArgument")
    assert_api_error(post_raw(seeded, b""), 400, "InvalidArgument")


@pytest.mark.parametrize("path", ["/v1/functions", "/v1/routes", "/v1/keys", "/v1/schedules"])
@pytest.mark.parametrize("body, needle", [
    (b"", "the request body is empty; send a JSON object"),
    (b'{"name": ', "the request body is not valid JSON; send a JSON object"),
    (b"[1, 2]", "the request body must be a JSON object"),
])
def test_every_management_api_refuses_a_bad_body_alike(seeded, path, body, needle):
    """Functions, routes, API keys and schedules parse a body with one parser: the same words."""
    r = seeded.request("POST", path, data=body, headers={"Content-Type": "application/json"})
    assert assert_api_error(r, 400, "InvalidArgument") == needle


@pytest.mark.parametrize("change, needle", [
    ({"runtime": "cobol"}, "runtime"),
    ({"runtime": None}, "runtime"),
    ({"handler": None}, "handler"),
    ({"handler": "nodot"}, "handler"),
    ({"name": "bad name!"}, "name"),
    ({"name": "a" * 65}, "name"),
    ({"name": ""}, "name"),
    ({"name": "../etc"}, "name"),
    ({"memory_mb": 64}, "memory_mb"),
    ({"memory_mb": "big"}, "memory_mb"),
    ({"timeout_s": 0}, "timeout_s"),
    ({"timeout_s": 901}, "timeout_s"),
    ({"max_concurrency": 0}, "max_concurrency"),
    ({"environment": {"A": 1}}, "environment"),
    ({"environment": ["A=1"]}, "environment"),
    ({"code": None}, "code"),
    ({"code": {"zip_base64": "!!!not base64!!!"}}, "base64"),
])
def test_invalid_create(seeded, change, needle):
    body = create_body()
    for key, value in change.items():
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    msg = assert_api_error(post_raw(seeded, json.dumps(body)), 400, "InvalidArgument")
    assert needle.lower() in msg.lower(), msg


def test_duplicate_create(seeded):
    r = post_raw(seeded, json.dumps(create_body(name="existing", code=zip_tree(
        function_dir("py_echo")))))
    msg = assert_api_error(r, 409, "AlreadyExists")
    assert "existing" in msg


def test_unknown_function(seeded):
    assert_api_error(seeded.get("/v1/functions/nope"), 404, "NotFound")
    assert_api_error(seeded.invoke("nope", {}), 404, "NotFound")
    assert_api_error(seeded.put_code("nope", zip_entries([("app.py", GOOD_PY, REG)])), 404,
                     "NotFound")
    assert_api_error(seeded.patch("nope", {"timeout_s": 5}), 404, "NotFound")
    assert_api_error(seeded.request("DELETE", "/v1/functions/nope"), 404, "NotFound")
    assert_api_error(seeded.request("POST", "/v1/functions/nope/versions"), 404, "NotFound")
    assert_api_error(seeded.get("/v1/functions/nope/versions"), 404, "NotFound")
    assert_api_error(seeded.get("/v1/functions/nope/logs"), 404, "NotFound")
    assert_api_error(seeded.invoke("existing", {}, qualifier="3"), 404, "NotFound")
    assert_api_error(seeded.get("/v1/nothing-here"), 404, "NotFound")


def test_names_that_are_not_utf8_get_their_error(seeded):
    """A percent-escaped byte that is not UTF-8 lands in the error message; writing that message
    as JSON threw, which ended the daemon (and, after that, answered 500)."""
    assert_api_error(seeded.get("/v1/functions/%FF"), 404, "NotFound")
    assert_api_error(seeded.request("POST", "/v1/functions/%FE%FF/invoke", data="{}"), 404,
                     "NotFound")
    assert_api_error(seeded.request("PUT", "/v1/functions/%FF"), 405, "MethodNotAllowed")
    r = seeded.get("/2015-03-31/functions/%FF")
    assert r.status_code in (400, 404) and r.json()["Type"] == "User", r.text
    assert seeded.get("/v1/health").status_code == 200


def test_payload_too_large(seeded):
    payload = b'{"x": "' + b"a" * (7 << 20) + b'"}'
    msg = assert_api_error(seeded.invoke("existing", data=payload), 413, "TooLarge")
    assert "6291456" in msg or "6 MB" in msg or "limit" in msg, msg


def test_payload_at_the_limit_is_accepted(seeded):
    filler = (6 << 20) - len(b'{"x": ""}')
    r = seeded.invoke("existing", data=b'{"x": "' + b"a" * filler + b'"}')
    assert r.status_code == 200, r.text[:300]


def test_invalid_json_payload(seeded):
    msg = assert_api_error(seeded.invoke("existing", data=b"{not json"), 400, "InvalidArgument")
    assert "JSON" in msg


def test_invalid_config_patch(seeded):
    assert_api_error(seeded.patch("existing", {"timeout_s": -1}), 400, "InvalidArgument")
    assert_api_error(seeded.patch("existing", {"runtime": "cobol"}), 400, "InvalidArgument")
    assert_api_error(seeded.patch("existing", {"name": "other"}), 400, "InvalidArgument")
    r = seeded.request("PATCH", "/v1/functions/existing", data=b"{oops",
                       headers={"Content-Type": "application/json"})
    assert_api_error(r, 400, "InvalidArgument")


def no_file_named(root, name):
    return [p for p in root.rglob(name)] == []


@pytest.mark.parametrize("how", ["create", "update"])
def test_zip_slip(seeded, tmp_path, how):
    evil = f"evil-{uuid.uuid4().hex[:8]}.py"
    archive = zip_entries([("app.py", GOOD_PY, REG), (f"../{evil}", b"print('pwned')\n", REG),
                           (f"a/../../{evil}", b"x", REG)])
    if how == "create":
        r = post_raw(seeded, json.dumps(create_body(code=archive)))
    else:
        r = seeded.put_code("existing", archive)
    msg = assert_api_error(r, 400, "InvalidArgument")
    assert ".." in msg, msg
    # Nothing written anywhere: not next to the data dir, not inside it.
    assert no_file_named(tmp_path, evil)
    assert no_file_named(seeded.data_dir.parent.parent, evil)


def test_absolute_path_entry(seeded, tmp_path):
    target = tmp_path / f"abs-{uuid.uuid4().hex[:8]}.py"
    archive = zip_entries([("app.py", GOOD_PY, REG), (str(target), b"x = 1\n", REG)])
    msg = assert_api_error(post_raw(seeded, json.dumps(create_body(code=archive))), 400,
                           "InvalidArgument")
    assert "absolute" in msg, msg
    assert not target.exists()
    assert no_file_named(tmp_path, target.name)


@pytest.mark.parametrize("link_target", ["../../../../../../etc/passwd", "/etc/passwd", "sub/../.."])
def test_symlink_escaping_root(seeded, tmp_path, link_target):
    archive = zip_entries([("app.py", GOOD_PY, REG), ("link", link_target.encode(), LNK)])
    msg = assert_api_error(post_raw(seeded, json.dumps(create_body(code=archive))), 400,
                           "InvalidArgument")
    assert "symlink" in msg, msg


def test_symlink_then_write_through_it(seeded, tmp_path):
    """A symlink to a directory outside, then a file "through" it: must not land outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = zip_entries([("app.py", GOOD_PY, REG), ("dir", str(outside).encode(), LNK),
                           ("dir/planted.py", b"x", REG)])
    assert_api_error(post_raw(seeded, json.dumps(create_body(code=archive))), 400,
                     "InvalidArgument")
    assert list(outside.iterdir()) == []


def test_symlink_inside_root_is_fine(daemon):
    archive = zip_entries([("real.py", GOOD_PY, REG), ("app.py", b"real.py", LNK)])
    r = post_raw(daemon, json.dumps(create_body(name="linked", code=archive)))
    assert r.status_code == 201, r.text
    assert daemon.invoke_ok("linked", {}).json() == "ok"


@pytest.mark.parametrize("data", [b"this is not a zip archive", b"PK\x03\x04truncated", b"\x00" * 64])
def test_non_zip_bytes(seeded, data):
    assert_api_error(post_raw(seeded, json.dumps(create_body(code=data))), 400, "InvalidArgument")
    assert_api_error(seeded.put_code("existing", data), 400, "InvalidArgument")


def test_empty_code_upload(seeded):
    assert_api_error(seeded.put_code("existing", b""), 400, "InvalidArgument")


@pytest.mark.parametrize("method, path", [
    ("DELETE", "/v1/functions"),
    ("PUT", "/v1/functions"),
    ("POST", "/v1/health"),
    ("GET", "/v1/functions/existing/invoke"),
    ("POST", "/v1/functions/existing"),
    ("PATCH", "/v1/functions/existing/versions"),
])
def test_wrong_method(seeded, method, path):
    r = seeded.request(method, path)
    assert_api_error(r, 405, "MethodNotAllowed")
    # HTTP says a 405 names the methods that are allowed.
    assert r.headers.get("Allow"), dict(r.headers)
    assert method not in r.headers["Allow"]
