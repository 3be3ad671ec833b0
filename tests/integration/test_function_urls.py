"""Lambda function URLs (issue 5) through the gateway, managed with the real AWS CLI and called
with curl, and API-key daily quotas that survive a restart (issue 4). docs/api.md, "Function
URLs"."""

import json
import subprocess
import time

import pytest
import requests

from test_gateway import add_route, gw
from test_lambda_api import ACCESS_KEY, REGION, SECRET_KEY, aws, aws_env  # noqa: F401 (fixtures)

CURL_TIMEOUT_S = 60


def curl(*args):
    """curl's status, headers (lower-cased) and body; -s so only the answer is read."""
    p = subprocess.run(["curl", "-s", "-i", "--max-time", "30", *args], capture_output=True,
                       timeout=CURL_TIMEOUT_S)
    assert p.returncode == 0, p.stderr.decode()
    head, _, body = p.stdout.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def url_path(daemon, function_url, path=""):
    """The DNS-free form of a FunctionUrl: /lambda-url/<url-id>/ on the gateway's address."""
    url_id = function_url.split("//", 1)[1].split(".", 1)[0]
    return f"{gw(daemon)}/lambda-url/{url_id}{path}"


@pytest.fixture
def fn(daemon):
    daemon.deploy("urlfn", "gw_echo", timeout_s=10)
    return daemon


def test_function_url_lifecycle_with_the_aws_cli(fn, aws):  # noqa: F811
    err = aws("create-function-url-config", "--function-name", "urlfn", "--auth-type", "OPEN",
              expect_ok=False)
    assert "InvalidParameterValueException" in err
    made = aws("create-function-url-config", "--function-name", "urlfn", "--auth-type", "NONE",
               "--cors", json.dumps({"AllowOrigins": ["https://shop.example"],
                                     "AllowMethods": ["GET", "POST"], "MaxAge": 60}))
    assert made["AuthType"] == "NONE"
    # This awscli's model predates InvokeMode and drops it from its output; the API sends it.
    assert fn.get("/2021-10-31/functions/urlfn/url").json()["InvokeMode"] == "BUFFERED"
    assert made["FunctionArn"].endswith(":function:urlfn")
    assert made["Cors"]["AllowOrigins"] == ["https://shop.example"]
    url = made["FunctionUrl"]
    assert url.startswith("http://") and f".lambda-url.{REGION}.localhost:{fn.gateway_port}/" in url

    got = aws("get-function-url-config", "--function-name", "urlfn")
    assert got["FunctionUrl"] == url and "LastModifiedTime" in got
    err = aws("create-function-url-config", "--function-name", "urlfn", "--auth-type", "NONE",
              expect_ok=False)
    assert "ResourceConflictException" in err
    err = aws("get-function-url-config", "--function-name", "urlfn", "--qualifier", "nope",
              expect_ok=False)
    assert "ResourceNotFoundException" in err
    err = aws("get-function-url-config", "--function-name", "missing", expect_ok=False)
    assert "ResourceNotFoundException" in err

    # Served through the gateway: by the FunctionUrl itself (curl resolves *.localhost to the
    # loopback) and by the path prefix, with Lambda's payload format 2.0.
    status, headers, body = curl("-X", "POST", "-H", "content-type: application/json",
                                 "--data", '{"a":1}', url + "some/path?x=1&x=2")
    assert status == 200, body
    event = json.loads(body)["event"]
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path" and event["rawQueryString"] == "x=1&x=2"
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert event["body"] == '{"a":1}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    url_id = url.split("//", 1)[1].split(".", 1)[0]
    assert ctx["apiId"] == url_id and ctx["domainPrefix"] == url_id
    assert ctx["accountId"] == "anonymous" and ctx["http"]["method"] == "POST"
    assert headers["x-fn"] == "gw_echo" and "x-request-id" in headers

    status, _, body = curl(url_path(fn, url, "/other"))
    assert status == 200, body
    event = json.loads(body)["event"]
    assert event["rawPath"] == "/other"
    assert event["requestContext"]["domainName"].startswith(url_id + ".lambda-url.")
    # An unknown url id by Host is refused as Lambda does.
    status, _, body = curl("-H", f"Host: {'0' * 32}.lambda-url.{REGION}.localhost",
                           gw(fn) + "/")
    assert status == 403 and json.loads(body) == {"Message": "Forbidden"}

    # CORS from the config: preflight answered at the gateway, headers on answers.
    status, headers, _ = curl("-X", "OPTIONS", "-H", "Origin: https://shop.example",
                              "-H", "Access-Control-Request-Method: POST", url_path(fn, url, "/"))
    assert status == 204
    assert headers["access-control-allow-origin"] == "https://shop.example"
    assert headers["access-control-allow-methods"] == "GET,POST"
    assert headers["access-control-max-age"] == "60"
    _, headers, _ = curl("-H", "Origin: https://evil.example", url_path(fn, url, "/"))
    assert "access-control-allow-origin" not in headers

    # Update, list, delete.
    updated = aws("update-function-url-config", "--function-name", "urlfn", "--cors",
                  json.dumps({"AllowOrigins": ["*"]}))
    assert updated["Cors"]["AllowOrigins"] == ["*"] and updated["FunctionUrl"] == url
    listed = aws("list-function-url-configs", "--function-name", "urlfn")
    assert [c["FunctionUrl"] for c in listed["FunctionUrlConfigs"]] == [url]
    aws("delete-function-url-config", "--function-name", "urlfn")
    err = aws("get-function-url-config", "--function-name", "urlfn", expect_ok=False)
    assert "ResourceNotFoundException" in err
    status, _, _ = curl(url)
    assert status == 403


def test_function_url_on_an_alias_survives_a_restart(daemon_factory, tmp_path):
    first = daemon_factory(data_dir=tmp_path / "data")
    first.deploy("urlfn", "gw_echo", timeout_s=10)
    version = first.post_json("/2015-03-31/functions/urlfn/versions", {}).json()["Version"]
    r = first.post_json("/2015-03-31/functions/urlfn/aliases",
                        {"Name": "live", "FunctionVersion": version})
    assert r.status_code == 201, r.text
    r = first.post_json("/2021-10-31/functions/urlfn/url?Qualifier=live", {"AuthType": "NONE"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["FunctionArn"].endswith(":function:urlfn:live")
    r = first.post_json("/2021-10-31/functions/urlfn/url?Qualifier=1", {"AuthType": "NONE"})
    assert r.status_code == 400 and r.headers["x-amzn-ErrorType"] == "InvalidParameterValueException"
    assert first.stop() == 0

    second = daemon_factory(data_dir=tmp_path / "data")
    got = second.get("/2021-10-31/functions/urlfn/url?Qualifier=live")
    assert got.status_code == 200, got.text
    assert got.json()["FunctionUrl"].split(":")[1] == made["FunctionUrl"].split(":")[1]
    r = requests.get(url_path(second, made["FunctionUrl"], "/after"), timeout=30)
    assert r.status_code == 200 and r.json()["event"]["rawPath"] == "/after"
    listed = second.get("/2021-10-31/functions/urlfn/urls").json()["FunctionUrlConfigs"]
    assert len(listed) == 1 and listed[0]["FunctionArn"].endswith(":urlfn:live")


@pytest.mark.settings(lambda_api_keys=f"{ACCESS_KEY}:{SECRET_KEY}")
def test_aws_iam_function_url_needs_a_signature(fn):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    r = fn.post_json("/2021-10-31/functions/urlfn/url", {"AuthType": "AWS_IAM"})
    assert r.status_code == 201, r.text
    target = url_path(fn, r.json()["FunctionUrl"], "/signed")
    unsigned = requests.get(target, timeout=30)
    assert unsigned.status_code == 403 and unsigned.json() == {"Message": "Forbidden"}

    def signed(secret):
        req = AWSRequest(method="GET", url=target)
        SigV4Auth(Credentials(ACCESS_KEY, secret), "lambda", REGION).add_auth(req)
        return requests.get(target, headers=dict(req.headers), timeout=30)

    assert signed("wrong-secret").status_code == 403
    ok = signed(SECRET_KEY)
    assert ok.status_code == 200, ok.text
    iam = ok.json()["event"]["requestContext"]["authorizer"]["iam"]
    assert iam["accessKey"] == ACCESS_KEY and len(iam["accountId"]) == 12


def test_api_key_daily_quota_survives_a_restart(daemon_factory, tmp_path):
    first = daemon_factory(data_dir=tmp_path / "data", settings={"gateway_quota_flush_ms": 50})
    first.deploy("gw", "gw_echo", timeout_s=10)
    add_route(first, "GET /quota", auth="api_key")
    made = first.post_json("/v1/keys", {"name": "q", "daily_quota": 3})
    assert made.status_code == 201, made.text
    key = {"x-api-key": made.json()["key"]}
    for _ in range(2):
        assert requests.get(gw(first) + "/quota", headers=key, timeout=30).status_code == 200
    # Saved by the batch flush while running (not only at shutdown): a crash keeps it too.
    time.sleep(0.3)
    first.proc.kill()
    first.wait_exit()

    second = daemon_factory(data_dir=tmp_path / "data")
    assert requests.get(gw(second) + "/quota", headers=key, timeout=30).status_code == 200
    r = requests.get(gw(second) + "/quota", headers=key, timeout=30)
    assert r.status_code == 429 and r.json() == {"message": "Limit Exceeded"}
    # Until the next UTC midnight.
    now = time.time()
    assert abs(int(r.headers["Retry-After"]) - (86400 - now % 86400)) < 60


def test_deleting_a_function_drops_its_url_and_event_invoke_config(fn):
    """As Lambda's DeleteFunction: a new function of the same name starts without the old one's
    function URL (its address answers 404) or EventInvokeConfig."""
    r = fn.post_json("/2021-10-31/functions/urlfn/url", {"AuthType": "NONE"})
    assert r.status_code == 201, r.text
    path = url_path(fn, r.json()["FunctionUrl"])
    r = fn.request("PUT", "/v1/functions/urlfn/event-invoke-config", json={"max_event_age_s": 120})
    assert r.status_code == 200, r.text
    assert curl(path)[0] == 200

    r = fn.request("DELETE", "/v1/functions/urlfn")
    assert r.status_code in (200, 204), r.text
    fn.deploy("urlfn", "gw_echo", timeout_s=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the config's removal commits on the queue's writer
        if fn.get("/2019-09-25/functions/urlfn/event-invoke-config").status_code == 404:
            break
        time.sleep(0.05)
    assert fn.get("/2019-09-25/functions/urlfn/event-invoke-config").status_code == 404
    assert fn.get("/2021-10-31/functions/urlfn/url").status_code == 404
    status, _, body = curl(path)
    assert status == 404, body
