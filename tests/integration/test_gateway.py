"""The API gateway against the real daemon: routes, events, auth, limits, CORS, logs and the
robustness cases (docs/api.md, "API gateway")."""

import base64
import hashlib
import hmac
import json
import socket
import time

import pytest
import requests

from itest import wait_until


def gw(daemon):
    return f"http://127.0.0.1:{daemon.gateway_port}"


def add_route(daemon, route_key, target="gw", **fields):
    body = {"route_key": route_key, "target": target, **fields}
    r = daemon.post_json("/v1/routes", body)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def d(daemon):
    daemon.deploy("gw", "gw_echo", timeout_s=10)
    return daemon


def event_of(r):
    assert r.status_code == 200, r.text
    return r.json()["event"]


def raw_request(port, data, read_timeout=5.0):
    """Sends raw bytes; returns everything the server answers until it closes (or times out)."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        except socket.timeout:
            pass
        return out


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims, secret):
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


# --- routing and events -------------------------------------------------------------------------


def test_routes_path_params_and_event_shape(d):
    add_route(d, "GET /items/{id}")
    add_route(d, "ANY /files/{proxy+}")
    add_route(d, "$default")
    r = requests.get(gw(d) + "/items/42?a=1&a=2", headers={"Cookie": "k=v; k2=v2", "X-Two": "1"},
                     timeout=30)
    e = event_of(r)
    assert e["version"] == "2.0"
    assert e["routeKey"] == "GET /items/{id}"
    assert e["pathParameters"] == {"id": "42"}
    assert e["queryStringParameters"] == {"a": "1,2"}
    assert e["rawQueryString"] == "a=1&a=2"
    assert e["cookies"] == ["k=v", "k2=v2"]
    assert e["headers"]["x-two"] == "1"
    assert e["requestContext"]["http"]["method"] == "GET"
    assert e["requestContext"]["stage"] == "$default"
    assert r.headers["x-fn"] == "gw_echo"
    assert r.raw.headers.getlist("Set-Cookie") == ["c1=a", "c2=b"]
    e = event_of(requests.delete(gw(d) + "/files/a/b/c.txt", timeout=30))
    assert e["pathParameters"] == {"proxy": "a/b/c.txt"}
    assert event_of(requests.post(gw(d) + "/other", data="x", timeout=30))["routeKey"] == "$default"


def test_unknown_route_is_404_and_routes_are_listed_and_deleted(d):
    route = add_route(d, "GET /only")
    r = requests.get(gw(d) + "/nope", timeout=30)
    assert r.status_code == 404 and r.json() == {"message": "Not Found"}
    assert [x["route_key"] for x in d.get("/v1/routes").json()["routes"]] == ["GET /only"]
    dup = d.post_json("/v1/routes", {"route_key": "GET /only", "target": "gw"})
    assert dup.status_code == 409
    assert d.request("DELETE", f"/v1/routes/{route['id']}").status_code == 204
    assert requests.get(gw(d) + "/only", timeout=30).status_code == 404


def test_routes_survive_a_restart(daemon_factory, tmp_path):
    first = daemon_factory(data_dir=tmp_path / "data")
    first.deploy("gw", "gw_echo")
    add_route(first, "GET /persisted")
    assert first.stop() == 0
    second = daemon_factory(data_dir=tmp_path / "data")
    assert requests.get(gw(second) + "/persisted", timeout=30).status_code == 200


def test_bad_route_specs_are_refused(d):
    for body in ({"route_key": "GET items", "target": "gw"}, {"route_key": "GET /a/{p+}/b", "target": "gw"},
                 {"route_key": "GET /a", "target": "missing"}, {"route_key": "GET /a"},
                 {"route_key": "GET /a", "target": "gw", "auth": "jwt"}):
        r = d.post_json("/v1/routes", body)
        assert r.status_code in (400, 404), (body, r.text)
        assert len(r.json()["error"]["message"]) > 20


def test_response_shapes_errors_and_format_1(d):
    add_route(d, "GET /e")
    add_route(d, "GET /v1", payload_format="1.0")
    r = requests.get(gw(d) + "/e?shape=string", timeout=30)
    assert (r.status_code, r.text) == (200, "plain text")
    r = requests.get(gw(d) + "/e?shape=raw", timeout=30)
    assert r.status_code == 200 and r.json() == {"hello": "world"}
    assert r.headers["Content-Type"] == "application/json"
    r = requests.get(gw(d) + "/e?raise=1", timeout=30)
    assert r.status_code == 502 and r.json() == {"message": "Internal Server Error"}
    r = requests.get(gw(d) + "/e?shape=bad", timeout=30)
    assert r.status_code == 502
    e = event_of(requests.get(gw(d) + "/v1?x=1", timeout=30))
    assert e["version"] == "1.0" and e["httpMethod"] == "GET"
    assert e["multiValueQueryStringParameters"] == {"x": ["1"]}
    # A 1.0 route needs the statusCode shape.
    assert requests.get(gw(d) + "/v1?shape=raw", timeout=30).status_code == 502


def test_binary_body_is_base64(d):
    add_route(d, "POST /bin")
    e = event_of(requests.post(gw(d) + "/bin", data=b"\x00\x01\xff",
                               headers={"Content-Type": "application/octet-stream"}, timeout=30))
    assert e["isBase64Encoded"] is True and base64.b64decode(e["body"]) == b"\x00\x01\xff"


@pytest.mark.settings(gateway_integration_timeout_ms=700)
def test_integration_timeout_is_504(d):
    add_route(d, "GET /slow")
    t0 = time.monotonic()
    r = requests.get(gw(d) + "/slow?sleep=3", timeout=30)
    assert r.status_code == 504 and r.json() == {"message": "Service Unavailable"}
    assert 0.6 < time.monotonic() - t0 < 2.5


def test_async_route_answers_202_and_runs(d, tmp_path):
    add_route(d, "POST /jobs", integration="async")
    r = requests.post(gw(d) + "/jobs", json={"k": 1}, timeout=30)
    assert r.status_code == 202
    rid = r.json()["requestId"]
    assert r.headers["x-request-id"] == rid
    d.wait_logs("gw", rid, timeout_s=15)


def test_request_id_and_traceparent(d):
    add_route(d, "GET /t")
    tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    r = requests.get(gw(d) + "/t", headers={"x-request-id": "my-req-1", "traceparent": tp}, timeout=30)
    assert r.headers["x-request-id"] == "my-req-1"
    body = r.json()
    assert body["aws_request_id"] == "my-req-1"
    assert body["event"]["requestContext"]["requestId"] == "my-req-1"
    assert body["event"]["headers"]["traceparent"] == tp
    r = requests.get(gw(d) + "/t", timeout=30)
    assert len(r.headers["x-request-id"]) == 36
    assert requests.get(gw(d) + "/none", timeout=30).headers.get("x-request-id")


@pytest.mark.settings(gateway_access_log="access.log")
def test_access_log_line(d):
    add_route(d, "GET /logged")
    r = requests.get(gw(d) + "/logged", timeout=30)
    rid = r.headers["x-request-id"]
    path = d.data_dir / "access.log"

    def line():
        if not path.exists():
            return None
        for text in path.read_text().splitlines():
            doc = json.loads(text)
            if doc["requestId"] == rid:
                return doc
        return None

    doc = wait_until(line, 5, "the access log line")
    assert doc["status"] == 200 and doc["routeKey"] == "GET /logged" and doc["target"] == "gw"
    assert doc["cold_start"] is True and doc["bytes"] == len(r.content)
    assert doc["latency_ms"] > 0 and doc["time"].endswith("Z")


# --- auth ---------------------------------------------------------------------------------------


def test_api_keys_and_usage_plans(d):
    add_route(d, "GET /keyed", auth="api_key")
    made = d.post_json("/v1/keys", {"name": "alice", "rate": 1, "burst": 2, "daily_quota": 3})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert "key" not in d.get("/v1/keys").json()["keys"][0]
    assert requests.get(gw(d) + "/keyed", timeout=30).status_code == 403
    r = requests.get(gw(d) + "/keyed", headers={"x-api-key": "wrong"}, timeout=30)
    assert r.status_code == 403 and r.json() == {"message": "Forbidden"}
    codes = [requests.get(gw(d) + "/keyed", headers={"x-api-key": key}, timeout=30).status_code
             for _ in range(3)]
    assert codes == [200, 200, 429]  # burst of 2
    time.sleep(1.1)
    assert requests.get(gw(d) + "/keyed", headers={"x-api-key": key}, timeout=30).status_code == 200
    time.sleep(1.1)
    r = requests.get(gw(d) + "/keyed", headers={"x-api-key": key}, timeout=30)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 1  # daily quota of 3
    key_id = made.json()["id"]
    assert d.request("DELETE", f"/v1/keys/{key_id}").status_code == 204
    assert requests.get(gw(d) + "/keyed", headers={"x-api-key": key}, timeout=30).status_code == 403


def test_jwt_fields_of_the_wrong_type_are_401_not_a_crash(d):
    """A header's "alg" is read before any signature is checked, so anyone can send one of any
    JSON type; a trusted issuer's claims may have odd types too. Each is a 401, and the gateway
    keeps answering."""
    add_route(d, "GET /typed", auth="jwt", jwt={"secret": "k", "issuer": "https://iss", "audience": ["shop"],
                                                "scopes": ["read"]})
    now = int(time.time())
    unsigned = [b64url(json.dumps(h).encode()) + "." + b64url(b"{}") + ".c2ln"
                for h in ({"alg": 5}, {"alg": None}, {"alg": ["HS256"]}, {"alg": "RS256", "kid": 7})]

    def signed(claims):
        head = b64url(json.dumps({"alg": "HS256"}).encode())
        body = b64url(json.dumps(claims).encode())
        sig = hmac.new(b"k", f"{head}.{body}".encode(), hashlib.sha256).digest()
        return f"{head}.{body}.{b64url(sig)}"

    good = {"iss": "https://iss", "aud": "shop", "exp": now + 60, "scope": "read"}
    odd = [signed(dict(good, iss=5)), signed(dict(good, iss=None)), signed(dict(good, aud={"a": 1})),
           signed(dict(good, exp="soon")), signed(dict(good, nbf=[1])), signed(dict(good, scope=7)),
           signed({"iss": "https://iss", "aud": "shop", "exp": now + 60, "scp": {"read": True}})]
    for token in unsigned + odd:
        r = requests.get(gw(d) + "/typed", headers={"Authorization": "Bearer " + token}, timeout=30)
        assert r.status_code in (401, 403), (token, r.status_code, r.text)
    assert requests.get(gw(d) + "/typed", headers={"Authorization": "Bearer " + signed(good)},
                        timeout=30).status_code == 200
    assert d.request("GET", "/v1/health").status_code == 200


def test_jwt_auth(d):
    add_route(d, "GET /me", auth="jwt", jwt={"secret": "k", "issuer": "https://iss", "audience": ["shop"],
                                             "scopes": ["read"]})
    now = int(time.time())
    good = {"sub": "u1", "iss": "https://iss", "aud": "shop", "exp": now + 60, "scope": "read write"}
    r = requests.get(gw(d) + "/me", headers={"Authorization": "Bearer " + hs256(good, "k")}, timeout=30)
    jwt = event_of(r)["requestContext"]["authorizer"]["jwt"]
    assert jwt["claims"]["sub"] == "u1" and jwt["scopes"] == ["read", "write"]
    r = requests.get(gw(d) + "/me", timeout=30)
    assert r.status_code == 401 and r.json() == {"message": "Unauthorized"}
    bad = requests.get(gw(d) + "/me", headers={"Authorization": "Bearer " + hs256(good, "x")}, timeout=30)
    assert bad.status_code == 401
    expired = dict(good, exp=now - 3600)
    assert requests.get(gw(d) + "/me", headers={"Authorization": "Bearer " + hs256(expired, "k")},
                        timeout=30).status_code == 401
    noscope = dict(good, scope="write")
    r = requests.get(gw(d) + "/me", headers={"Authorization": "Bearer " + hs256(noscope, "k")}, timeout=30)
    assert r.status_code == 403 and r.json() == {"message": "Forbidden"}


def test_route_rate_limit(d):
    add_route(d, "GET /limited", rate_limit={"rate": 0.5, "burst": 1})
    assert requests.get(gw(d) + "/limited", timeout=30).status_code == 200
    r = requests.get(gw(d) + "/limited", timeout=30)
    assert r.status_code == 429 and r.json() == {"message": "Too Many Requests"}
    assert r.headers["Retry-After"] == "2"


@pytest.mark.settings(gateway_refused_reads_per_s=100)
def test_refused_requests_are_read_at_a_bounded_rate(d):
    """A client hammering a throttled route gets every 429, but its next requests are read no
    faster than gateway_refused_reads_per_s in all; a request to another route is not held."""
    add_route(d, "GET /limited", rate_limit={"rate": 0.01, "burst": 1})
    add_route(d, "GET /open")
    assert requests.get(gw(d) + "/open", timeout=30).status_code == 200  # warm
    assert requests.get(gw(d) + "/limited", timeout=30).status_code == 200  # the burst
    per_connection = 40
    flood = b"GET /limited HTTP/1.1\r\nHost: x\r\n\r\n" * per_connection
    conns = [socket.create_connection(("127.0.0.1", d.gateway_port), timeout=30) for _ in range(2)]
    started = time.monotonic()
    for c in conns:
        c.sendall(flood)
    time.sleep(0.1)  # the flood is being refused, at 100 reads per second
    r = requests.get(gw(d) + "/open", timeout=30)
    open_answered = time.monotonic() - started
    assert r.status_code == 200
    answers = []
    for c in conns:
        got = b""
        while got.count(b"HTTP/1.1 ") < per_connection:
            chunk = c.recv(65536)
            assert chunk, got[-300:]
            got += chunk
        c.close()
        answers.append(got)
    took = time.monotonic() - started
    assert all(a.count(b"HTTP/1.1 429") == per_connection for a in answers)
    # Each connection's first request is read at once; the other 78 wait for the pace.
    assert took >= 0.7, took
    assert open_answered < 0.5 * took, (open_answered, took)


# --- CORS ---------------------------------------------------------------------------------------


def test_cors_preflight_and_headers(d):
    add_route(d, "POST /c")
    r = d.request("PUT", "/v1/gateway/cors", data=json.dumps(
        {"allow_origins": ["https://app.example"], "allow_methods": ["GET", "POST"],
         "allow_headers": ["content-type"], "max_age_s": 600}))
    assert r.status_code == 200, r.text
    pre = requests.options(gw(d) + "/c", headers={"Origin": "https://app.example",
                                                  "Access-Control-Request-Method": "POST"}, timeout=30)
    assert pre.status_code == 204
    assert pre.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert pre.headers["Access-Control-Allow-Methods"] == "GET,POST"
    assert pre.headers["Access-Control-Max-Age"] == "600"
    other = requests.options(gw(d) + "/c", headers={"Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "POST"}, timeout=30)
    assert other.status_code == 204 and "Access-Control-Allow-Origin" not in other.headers
    r = requests.post(gw(d) + "/c", headers={"Origin": "https://app.example"}, timeout=30)
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Origin"] == "https://app.example"


# --- robustness ---------------------------------------------------------------------------------


@pytest.mark.settings(gateway_max_request_line_bytes=1024, gateway_max_header_count=20,
                      gateway_max_body_bytes=4096, gateway_header_timeout_ms=1000)
def test_limits(d):
    add_route(d, "ANY /{proxy+}")
    port = d.gateway_port
    assert raw_request(port, b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 414")
    many = b"".join(b"X-%d: v\r\n" % i for i in range(30))
    assert raw_request(port, b"GET /a HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n").startswith(b"HTTP/1.1 431")
    big = b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 20000 + b"\r\n\r\n"
    assert raw_request(port, big).startswith(b"HTTP/1.1 431")
    assert raw_request(port, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n").startswith(
        b"HTTP/1.1 413")
    assert raw_request(port, b"GET /a HTTP/1.1\r\nHost: x\r\n").startswith(b"HTTP/1.1 408")
    smuggle = (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"0\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = raw_request(port, smuggle)
    assert answer.startswith(b"HTTP/1.1 400") and answer.count(b"HTTP/1.1") == 1  # closed after


def test_keep_alive_and_pipelining(d):
    add_route(d, "GET /p")
    requests.get(gw(d) + "/p", timeout=30)  # warm
    two = b"GET /p HTTP/1.1\r\nHost: x\r\n\r\nGET /p?shape=string HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = raw_request(d.gateway_port, two, read_timeout=15)
    assert answer.count(b"HTTP/1.1 200") == 2 and answer.endswith(b"plain text")


@pytest.mark.settings(gateway_header_timeout_ms=3000)
def test_slow_client_does_not_hold_the_gateway(d):
    add_route(d, "GET /fast", )
    requests.get(gw(d) + "/fast?shape=string", timeout=30)
    slow = socket.create_connection(("127.0.0.1", d.gateway_port))
    try:
        t0 = time.monotonic()
        closed = False
        for b in b"GET /fast HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100:
            try:
                slow.send(bytes([b]))
            except OSError:
                closed = True
                break
            # Others are served while the slow client trickles one byte a second.
            r = requests.get(gw(d) + "/fast?shape=string", timeout=5)
            assert r.status_code == 200
            if time.monotonic() - t0 > 5:
                break
            time.sleep(1)
        slow.settimeout(5)
        answer = b"" if closed else slow.recv(4096)
        assert closed or answer.startswith(b"HTTP/1.1 408") or answer == b""
        assert time.monotonic() - t0 < 8
    finally:
        slow.close()


# --- OpenAPI and the CLI ------------------------------------------------------------------------


def test_openapi_and_cli(d):
    out = d.cli("route", "add", "GET", "/users/{id}", "gw", "--auth", "jwt", "--jwt-secret", "k",
                "--jwt-issuer", "https://iss", "--scope", "read")
    assert out.returncode == 0, out.stderr
    out = d.cli("route", "add", "$default", "gw")
    assert out.returncode == 0, out.stderr
    out = d.cli("route", "ls")
    assert "GET /users/{id}" in out.stdout and "$default" in out.stdout and "jwt" in out.stdout
    doc = json.loads(d.cli("route", "export").stdout)
    assert doc["openapi"].startswith("3.")
    op = doc["paths"]["/users/{id}"]["get"]
    assert op["parameters"][0]["name"] == "id"
    assert list(op["security"][0].values()) == [["read"]]
    assert doc == d.get("/v1/openapi.json").json()
    key = d.cli("key", "create", "bob", "--rate", "5")
    assert key.returncode == 0 and key.stdout.strip().startswith("tmy_"), key.stderr
    ls = d.cli("key", "ls")
    assert "bob" in ls.stdout and "active" in ls.stdout
    key_id = d.get("/v1/keys").json()["keys"][0]["id"]
    assert d.cli("key", "revoke", key_id).returncode == 0
    assert "revoked" in d.cli("key", "ls").stdout
    route_id = d.get("/v1/routes").json()["routes"][0]["id"]
    assert d.cli("route", "rm", route_id).returncode == 0
    assert len(d.get("/v1/routes").json()["routes"]) == 1


# --- the shop example ---------------------------------------------------------------------------


def test_shop_example(daemon):
    import os
    import subprocess

    from itest import REPO, TAMAYA_BIN

    shop = REPO / "examples" / "shop"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAMAYA_")}
    env.update(TAMAYA=str(TAMAYA_BIN), TAMAYA_ENDPOINT=daemon.base)
    out = subprocess.run([str(shop / "deploy.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    token = subprocess.run([str(shop / "token.py"), "shop-demo-secret", "u1", "orders:read", "orders:write"],
                           capture_output=True, text=True, check=True).stdout.strip()
    auth = {"Authorization": "Bearer " + token}
    base = gw(daemon)
    assert requests.get(base + "/products", timeout=30).json()["products"][0]["id"] == "p1"
    assert requests.get(base + "/products/p2", timeout=30).json()["name"] == "Cup"
    assert requests.get(base + "/products/zz", timeout=30).status_code == 404
    assert requests.get(base + "/users/me", headers=auth, timeout=30).json()["name"] == "Ada"
    assert requests.get(base + "/users/me", timeout=30).status_code == 401
    placed = requests.post(base + "/orders", headers=auth, json={"items": ["p1"]}, timeout=30)
    assert placed.status_code == 201, placed.text
    mine = requests.get(base + "/orders", headers=auth, timeout=30).json()["orders"]
    assert [o["id"] for o in mine] == [placed.json()["id"]]
    read_only = subprocess.run([str(shop / "token.py"), "shop-demo-secret", "u1", "orders:read"],
                               capture_output=True, text=True, check=True).stdout.strip()
    r = requests.post(base + "/orders", headers={"Authorization": "Bearer " + read_only}, json={}, timeout=30)
    assert r.status_code == 403
