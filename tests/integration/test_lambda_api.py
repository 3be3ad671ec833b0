"""The AWS Lambda API on the admin port, driven by the real clients: the AWS CLI (Debian's
`awscli`, /usr/bin/aws) and boto3 (Debian's `python3-boto3`), with dummy credentials and no
config files. Each operation, its errors as the clients report them, alias weights, reserved
concurrency, log tails, a zip made by `zip --symlinks`, and the npm `aws-lambda-ric` runtime
interface client running unchanged under a `provided` function."""

import base64
import concurrent.futures
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from itest import function_dir, wait_until, zip_tree

boto3 = pytest.importorskip("boto3")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

AWS_CLI = "/usr/bin/aws"  # Debian's awscli; a pyenv shim on PATH may be another version
REGION = "us-east-1"
ACCESS_KEY = "AKIDTAMAYATEST"
SECRET_KEY = "tamaya-test-secret"
ROLE = "arn:aws:iam::123456789012:role/lambda-role"
ARN_RE = r"arn:aws:lambda:us-east-1:\d{12}:function:"
RIC_VERSION = "3.3.0"  # aws-lambda-ric: 3.x runs on Node 20 (4.x needs Node 22)
RIC_INSTALL_TIMEOUT_S = 1500  # it builds curl and aws-lambda-cpp from source


@pytest.fixture
def aws_env(tmp_path):
    """The environment of a CLI run: dummy keys, no config or credentials files, no retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TAMAYA_"))}
    env.update({
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
        "HOME": str(tmp_path),
    })
    return env


@pytest.fixture
def aws(daemon, aws_env, tmp_path):
    """Runs `aws lambda <args>` against the daemon: (returncode, parsed stdout or text, stderr)."""
    if not Path(AWS_CLI).exists():
        pytest.fail(f"{AWS_CLI} is missing: install Debian's awscli (scripts/setup.sh)")

    def run(*args, expect_ok=True):
        cmd = [AWS_CLI, "lambda", *map(str, args), "--endpoint-url", daemon.base,
               "--region", REGION, "--output", "json"]
        p = subprocess.run(cmd, capture_output=True, text=True, env=aws_env, cwd=tmp_path,
                           timeout=120)
        if expect_ok:
            assert p.returncode == 0, f"{' '.join(cmd)}\n{p.stderr}"
            return json.loads(p.stdout) if p.stdout.strip() else None
        assert p.returncode != 0, f"{' '.join(cmd)} should have failed:\n{p.stdout}"
        return p.stderr

    return run


def client(base, access_key=ACCESS_KEY, secret_key=SECRET_KEY):
    return boto3.client("lambda", endpoint_url=base, region_name=REGION,
                        aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                        config=Config(retries={"mode": "standard", "total_max_attempts": 1},
                                      read_timeout=60))


@pytest.fixture
def lam(daemon):
    return client(daemon.base)


def error_code(excinfo):
    return excinfo.value.response["Error"]["Code"]


def write_zip(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def py_zip(source):
    """A one-file python function (app.handler) as zip bytes."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", source)
    return buf.getvalue()


RETURNS = 'def handler(event, context):\n    return {{"v": "{0}", "event": event}}\n'


def test_create_get_list_delete_with_the_cli(daemon, aws, tmp_path):
    code = zip_tree(function_dir("py_echo"))
    zf = write_zip(tmp_path, "echo.zip", code)
    f = aws("create-function", "--function-name", "hello", "--runtime", "python3.12",
            "--handler", "app.handler", "--role", ROLE, "--zip-file", f"fileb://{zf}",
            "--memory-size", "256", "--timeout", "7", "--description", "the echo",
            "--environment", "Variables={GREETING=hi,B=2}")
    assert f["FunctionName"] == "hello"
    assert re.fullmatch(ARN_RE + "hello", f["FunctionArn"]), f["FunctionArn"]
    assert f["Runtime"] == "python3.12" and f["Handler"] == "app.handler" and f["Role"] == ROLE
    assert (f["MemorySize"], f["Timeout"], f["Description"]) == (256, 7, "the echo")
    assert f["Environment"] == {"Variables": {"GREETING": "hi", "B": "2"}}
    assert f["CodeSize"] == len(code)
    assert f["CodeSha256"] == base64.b64encode(hashlib.sha256(code).digest()).decode()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000", f["LastModified"])
    assert f["Version"] == "$LATEST" and f["RevisionId"]
    assert (f["State"], f["LastUpdateStatus"], f["PackageType"]) == ("Active", "Successful", "Zip")
    assert f["Architectures"] == ["x86_64"]

    # The same object through the native API and the tamaya CLI.
    native = daemon.get("/v1/functions/hello").json()
    assert native["runtime"] == "python3" and native["memory_mb"] == 256
    ls = daemon.cli("ls")
    assert ls.returncode == 0 and "hello" in ls.stdout, ls.stderr

    got = aws("get-function", "--function-name", "hello")
    assert got["Configuration"] == f
    zip_back = requests.get(got["Code"]["Location"], timeout=10)
    assert zip_back.status_code == 200 and zip_back.content == code
    assert aws("get-function-configuration", "--function-name", "hello") == f
    names = [x["FunctionName"] for x in aws("list-functions")["Functions"]]
    assert names == ["hello"]

    out = tmp_path / "out.json"
    inv = aws("invoke", "--function-name", "hello", "--cli-binary-format", "raw-in-base64-out",
              "--payload", '{"k": "v"}', str(out))
    assert inv["StatusCode"] == 200 and inv["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in inv
    body = json.loads(out.read_text())
    assert body["event"] == {"k": "v"} and body["env"]["GREETING"] == "hi"

    assert aws("delete-function", "--function-name", "hello") is None
    err = aws("get-function", "--function-name", "hello", expect_ok=False)
    assert "ResourceNotFoundException" in err
    assert daemon.functions() == []


def test_errors_as_the_cli_reports_them(daemon, aws, lam, tmp_path):
    zf = write_zip(tmp_path, "f.zip", py_zip(RETURNS.format("one")))
    base = ["--role", ROLE, "--handler", "app.handler", "--zip-file", f"fileb://{zf}"]
    err = aws("create-function", "--function-name", "j", "--runtime", "java17", *base,
              expect_ok=False)
    assert "InvalidParameterValueException" in err and "python3.x" in err and "provided" in err
    aws("create-function", "--function-name", "f", "--runtime", "python3.11", *base)
    err = aws("create-function", "--function-name", "f", "--runtime", "python3.11", *base,
              expect_ok=False)
    assert "ResourceConflictException" in err
    assert "ResourceNotFoundException" in aws("get-function", "--function-name", "nope",
                                              expect_ok=False)
    err = aws("update-function-configuration", "--function-name", "f", "--timeout", "9",
              "--revision-id", "not-the-revision", expect_ok=False)
    assert "PreconditionFailedException" in err
    err = aws("create-function", "--function-name", "bad-handler", "--runtime", "python3.11",
              "--role", ROLE, "--handler", "no_function_part", "--zip-file", f"fileb://{zf}",
              expect_ok=False)
    assert "InvalidParameterValueException" in err and "module.function" in err
    err = aws("invoke", "--function-name", "f", "--cli-binary-format", "raw-in-base64-out",
              "--payload", "this is not json", str(tmp_path / "o.json"), expect_ok=False)
    assert "InvalidRequestContentException" in err

    # Status codes and the error shape as boto3 sees them.
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="f", Payload=b"x" * ((6 << 20) + 1))
    assert error_code(e) == "RequestEntityTooLargeException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    with pytest.raises(ClientError) as e:
        lam.get_function(FunctionName="nope")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "nope" in e.value.response["Error"]["Message"]
    raw = daemon.get("/2015-03-31/functions/nope")
    assert raw.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert raw.json()["Type"] == "User" and raw.json()["message"]


def test_update_code_and_configuration(daemon, aws, lam, tmp_path):
    one = write_zip(tmp_path, "one.zip", py_zip(RETURNS.format("one")))
    two = write_zip(tmp_path, "two.zip", py_zip(RETURNS.format("two")))
    f = aws("create-function", "--function-name", "u", "--runtime", "python3.12", "--role", ROLE,
            "--handler", "app.handler", "--zip-file", f"fileb://{one}")
    g = aws("update-function-code", "--function-name", "u", "--zip-file", f"fileb://{two}",
            "--revision-id", f["RevisionId"])
    assert g["RevisionId"] != f["RevisionId"] and g["CodeSha256"] != f["CodeSha256"]
    assert json.loads(lam.invoke(FunctionName="u")["Payload"].read())["v"] == "two"
    err = aws("update-function-code", "--function-name", "u", "--zip-file", f"fileb://{one}",
              "--revision-id", f["RevisionId"], expect_ok=False)
    assert "PreconditionFailedException" in err
    h = aws("update-function-configuration", "--function-name", "u", "--timeout", "11",
            "--memory-size", "512", "--environment", "Variables={X=y}", "--description", "new",
            "--revision-id", g["RevisionId"])
    assert (h["Timeout"], h["MemorySize"], h["Description"]) == (11, 512, "new")
    assert h["Environment"] == {"Variables": {"X": "y"}}
    err = aws("update-function-configuration", "--function-name", "u", "--runtime", "ruby3.2",
              expect_ok=False)
    assert "InvalidParameterValueException" in err
    # Publish on update: the answer is the new version.
    p = aws("update-function-code", "--function-name", "u", "--zip-file", f"fileb://{one}",
            "--publish")
    assert p["Version"] == "1" and p["FunctionArn"].endswith(":u:1")


def test_function_errors_are_200_with_the_error_payload(daemon, lam):
    code = zip_tree(function_dir("py_raise"))
    lam.create_function(FunctionName="boom", Runtime="python3.11", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": code})
    r = lam.invoke(FunctionName="boom", Payload=b"{}")
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled"
    body = json.loads(r["Payload"].read())
    assert body["errorType"] and body["errorMessage"]
    # A timeout carries Lambda's error type, still as a 200.
    sleeper = zip_tree(function_dir("py_sleep"))
    lam.create_function(FunctionName="slow", Runtime="python3.11", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": sleeper}, Timeout=1)
    r = lam.invoke(FunctionName="slow", Payload=json.dumps({"seconds": 3}).encode())
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled"
    body = json.loads(r["Payload"].read())
    assert body["errorType"] == "Sandbox.Timedout" and "1.00 seconds" in body["errorMessage"]


def test_log_tail_and_invocation_types(daemon, aws, lam, tmp_path):
    code = py_zip('def handler(event, context):\n    print("marker-" + event["m"])\n'
                  '    return event\n')
    lam.create_function(FunctionName="logs", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": code})
    out = tmp_path / "out.json"
    inv = aws("invoke", "--function-name", "logs", "--cli-binary-format", "raw-in-base64-out",
              "--payload", '{"m": "abc"}', "--log-type", "Tail", str(out))
    tail = base64.b64decode(inv["LogResult"]).decode()
    assert "marker-abc" in tail
    assert re.search(r"^START RequestId: \S+ Version: \$LATEST", tail, re.M), tail
    assert re.search(r"^END RequestId: ", tail, re.M) and "REPORT RequestId: " in tail
    assert json.loads(out.read_text()) == {"m": "abc"}

    # DryRun: 204 and nothing runs. Event: 202 now, the function runs in the background.
    dry = lam.invoke(FunctionName="logs", InvocationType="DryRun", Payload=b'{"m": "dry"}')
    assert dry["StatusCode"] == 204
    ev = lam.invoke(FunctionName="logs", InvocationType="Event", Payload=b'{"m": "event"}')
    assert ev["StatusCode"] == 202
    request_id = ev["ResponseMetadata"]["RequestId"]
    events = daemon.wait_logs("logs", request_id, timeout_s=15)
    assert any("marker-event" in e["message"] for e in events)
    assert not any("marker-dry" in e["message"]
                   for e in daemon.logs("logs", limit=1000)["events"])
    bad = daemon.request("POST", "/2015-03-31/functions/logs/invocations", data=b"{}",
                         headers={"X-Amz-Invocation-Type": "Sometimes"})
    assert bad.status_code == 400 and bad.headers["x-amzn-ErrorType"] == \
        "InvalidParameterValueException"


def test_versions_aliases_and_weights(daemon, aws, lam, tmp_path):
    lam.create_function(FunctionName="w", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": py_zip(RETURNS.format("one"))})
    v1 = aws("publish-version", "--function-name", "w", "--description", "first")
    assert v1["Version"] == "1" and re.fullmatch(ARN_RE + "w:1", v1["FunctionArn"])
    assert v1["Description"] == "first"
    lam.update_function_code(FunctionName="w", ZipFile=py_zip(RETURNS.format("two")))
    v2 = lam.publish_version(FunctionName="w")
    assert v2["Version"] == "2"
    versions = [v["Version"] for v in aws("list-versions-by-function",
                                          "--function-name", "w")["Versions"]]
    assert versions == ["$LATEST", "1", "2"]
    paged = lam.list_versions_by_function(FunctionName="w", MaxItems=2)
    assert [v["Version"] for v in paged["Versions"]] == ["$LATEST", "1"]
    rest = lam.list_versions_by_function(FunctionName="w", Marker=paged["NextMarker"])
    assert [v["Version"] for v in rest["Versions"]] == ["2"] and "NextMarker" not in rest

    a = aws("create-alias", "--function-name", "w", "--name", "live", "--function-version", "1",
            "--description", "prod", "--routing-config", "AdditionalVersionWeights={2=0.3}")
    assert re.fullmatch(ARN_RE + "w:live", a["AliasArn"]) and a["FunctionVersion"] == "1"
    assert a["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}
    assert aws("get-alias", "--function-name", "w", "--name", "live") == a
    assert [x["Name"] for x in aws("list-aliases", "--function-name", "w")["Aliases"]] == ["live"]

    invokes = 400
    counts = {"1": 0, "2": 0}
    for _ in range(invokes):
        r = lam.invoke(FunctionName="w:live", Payload=b"{}")
        body = json.loads(r["Payload"].read())
        counts[r["ExecutedVersion"]] += 1
        assert body["v"] == {"1": "one", "2": "two"}[r["ExecutedVersion"]]
    share = counts["2"] / invokes
    # Binomial sd at 400 draws of 0.3 is 0.023; 0.08 is 3.5 sd.
    assert abs(share - 0.3) < 0.08, counts

    # The native API resolves the alias too; the Lambda ARN forms name the same thing.
    r = daemon.invoke("w", {}, qualifier="live")
    assert r.status_code == 200 and r.headers["X-Tamaya-Executed-Version"] in ("1", "2")
    arn_of_v2 = v2["FunctionArn"]
    assert lam.invoke(FunctionName=arn_of_v2)["ExecutedVersion"] == "2"
    partial = arn_of_v2.split("function:")[0].split(":")[4] + ":function:w"
    assert lam.invoke(FunctionName=partial, Qualifier="1")["ExecutedVersion"] == "1"

    u = aws("update-alias", "--function-name", "w", "--name", "live", "--function-version", "2",
            "--routing-config", "AdditionalVersionWeights={}", "--revision-id", a["RevisionId"])
    assert u["FunctionVersion"] == "2" and "RoutingConfig" not in u
    err = aws("update-alias", "--function-name", "w", "--name", "live", "--function-version", "1",
              "--revision-id", a["RevisionId"], expect_ok=False)
    assert "PreconditionFailedException" in err
    assert all(lam.invoke(FunctionName="w", Qualifier="live")["ExecutedVersion"] == "2"
               for _ in range(5))

    err = aws("create-alias", "--function-name", "w", "--name", "latest-weighted",
              "--function-version", "$LATEST", "--routing-config",
              "AdditionalVersionWeights={1=0.5}", expect_ok=False)
    assert "InvalidParameterValueException" in err
    err = aws("create-alias", "--function-name", "w", "--name", "two-extra",
              "--function-version", "1", "--routing-config",
              "AdditionalVersionWeights={2=0.5,3=0.1}", expect_ok=False)
    assert "InvalidParameterValueException" in err
    err = aws("create-alias", "--function-name", "w", "--name", "live", "--function-version", "1",
              expect_ok=False)
    assert "ResourceConflictException" in err
    err = aws("delete-function", "--function-name", "w", "--qualifier", "2", expect_ok=False)
    assert "ResourceConflictException" in err  # the alias routes to it

    assert aws("delete-alias", "--function-name", "w", "--name", "live") is None
    assert "ResourceNotFoundException" in aws("get-alias", "--function-name", "w", "--name",
                                               "live", expect_ok=False)
    assert aws("delete-function", "--function-name", "w", "--qualifier", "1") is None
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="w")["Versions"]]
    assert versions == ["$LATEST", "2"]


def test_list_functions_pagination(daemon, lam):
    code = py_zip(RETURNS.format("x"))
    names = [f"fn{i}" for i in range(5)]
    for n in names:
        lam.create_function(FunctionName=n, Runtime="nodejs20.x" if n == "fn0" else "python3.12",
                            Role=ROLE, Handler="app.handler", Code={"ZipFile": code})
    seen, marker, pages = [], None, 0
    while True:
        kwargs = {"MaxItems": 2}
        if marker:
            kwargs["Marker"] = marker
        page = lam.list_functions(**kwargs)
        pages += 1
        seen += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            break
    assert seen == names and pages == 3
    assert lam.get_function(FunctionName="fn0")["Configuration"]["Runtime"] == "nodejs20.x"


@pytest.mark.settings(queue_timeout_ms=300)
def test_reserved_concurrency(daemon, aws, lam, tmp_path):
    lam.create_function(FunctionName="c", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_tree(function_dir("py_sleep"))}, Timeout=10)
    assert aws("put-function-concurrency", "--function-name", "c",
               "--reserved-concurrent-executions", "0") == {"ReservedConcurrentExecutions": 0}
    assert aws("get-function-concurrency", "--function-name", "c") == \
        {"ReservedConcurrentExecutions": 0}
    assert lam.get_function(FunctionName="c")["Concurrency"] == {"ReservedConcurrentExecutions": 0}
    err = aws("invoke", "--function-name", "c", str(tmp_path / "o.json"), expect_ok=False)
    assert "TooManyRequestsException" in err
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="c", Payload=b"{}")
    assert error_code(e) == "TooManyRequestsException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert e.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert e.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"]
    # The native API obeys it too.
    assert daemon.invoke("c", {}).status_code == 429

    # Reserved 1 caps the function at one instance: a second concurrent call is throttled.
    lam.put_function_concurrency(FunctionName="c", ReservedConcurrentExecutions=1)

    def call(seconds):
        try:
            r = lam.invoke(FunctionName="c", Payload=json.dumps({"seconds": seconds}).encode())
            return r["StatusCode"]
        except ClientError as err:
            return err.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = sorted(map(str, pool.map(call, [2, 2])))
    assert results == ["200", "TooManyRequestsException"], results

    assert aws("delete-function-concurrency", "--function-name", "c") is None
    assert aws("get-function-concurrency", "--function-name", "c") in (None, {})  # {} prints nothing
    assert lam.invoke(FunctionName="c", Payload=b"{}")["StatusCode"] == 200


def test_zip_command_with_a_bootstrap_symlink(daemon, aws, tmp_path):
    if shutil.which("zip") is None:
        pytest.fail("the zip command is missing: install Debian's zip (scripts/setup.sh)")
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    runner = src / "bin" / "runtime.py"
    runner.write_text((function_dir("provided_echo") / "bootstrap").read_text())
    runner.chmod(0o755)
    (src / "bootstrap").symlink_to("bin/runtime.py")
    subprocess.run(["zip", "-q", "-r", "--symlinks", str(tmp_path / "fn.zip"), "."], cwd=src,
                   check=True)
    f = aws("create-function", "--function-name", "sym", "--runtime", "provided.al2023",
            "--role", ROLE, "--handler", "unused", "--zip-file", f"fileb://{tmp_path / 'fn.zip'}")
    assert f["Runtime"] == "provided.al2023"
    out = tmp_path / "out.json"
    aws("invoke", "--function-name", "sym", "--cli-binary-format", "raw-in-base64-out",
        "--payload", '{"x": 1}', str(out))
    body = json.loads(out.read_text())
    assert body["runtime"] == "provided" and body["echo"] == {"x": 1}


@pytest.mark.settings(lambda_api_verify_sigv4=1,
                      lambda_api_keys="AKIDGOOD:good-secret,AKIDOTHER:other-secret")
def test_signature_verification(daemon):
    good = client(daemon.base, "AKIDGOOD", "good-secret")
    good.create_function(FunctionName="sig", Runtime="python3.12", Role=ROLE,
                         Handler="app.handler", Code={"ZipFile": py_zip(RETURNS.format("s"))})
    arn = good.get_function(FunctionName="sig")["Configuration"]["FunctionArn"]
    # A full ARN in the path (its ':' percent-encoded) and a signed body both verify.
    r = good.invoke(FunctionName=arn, Payload=b'{"signed": true}')
    assert json.loads(r["Payload"].read())["event"] == {"signed": True}
    # The account in ARNs follows the access key.
    other = client(daemon.base, "AKIDOTHER", "other-secret")
    other_arn = other.get_function(FunctionName="sig")["Configuration"]["FunctionArn"]
    assert other_arn.split(":")[4] != arn.split(":")[4]
    for key, secret in [("AKIDGOOD", "wrong-secret"), ("AKIDUNKNOWN", "good-secret")]:
        with pytest.raises(ClientError) as e:
            client(daemon.base, key, secret).list_functions()
        assert error_code(e) == "InvalidSignatureException"
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert requests.get(daemon.base + "/2015-03-31/functions/", timeout=10).status_code == 403


def test_unsigned_requests_use_the_default_account(daemon, lam):
    lam.create_function(FunctionName="anon", Runtime="python3.12", Role=ROLE,
                        Handler="app.handler", Code={"ZipFile": py_zip(RETURNS.format("a"))})
    doc = requests.get(daemon.base + "/2015-03-31/functions/anon/configuration", timeout=10).json()
    assert doc["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:anon"


# --- the npm runtime interface client ---------------------------------------------------------


RIC_HANDLER = """
exports.handler = async (event, context) => {
  if (event.fail) {
    throw new TypeError("asked to fail: " + event.fail);
  }
  console.log("ric-log-line", context.awsRequestId);
  return { ok: true, event, requestId: context.awsRequestId, fn: context.functionName };
};
"""

RIC_BOOTSTRAP = """#!/bin/sh
# The npm aws-lambda-ric as the runtime: the task root holds node_modules and index.js.
cd "$LAMBDA_TASK_ROOT"
exec node node_modules/.bin/aws-lambda-ric "$_HANDLER"
"""


@pytest.fixture(scope="module")
def ric_function_dir(tmp_path_factory):
    """A function dir with aws-lambda-ric installed by npm from the registry (built natively)."""
    if shutil.which("npm") is None:
        pytest.fail("npm is missing: install Debian's npm (scripts/setup.sh)")
    root = tmp_path_factory.mktemp("ric")
    # npm 11 runs a dependency's install scripts only when allowed; the native build is one.
    (root / "package.json").write_text(json.dumps({"name": "ric-fn", "version": "1.0.0",
                                                   "private": True,
                                                   "allowScripts": {"aws-lambda-ric": True}}))
    prebuilt = os.environ.get("TAMAYA_TEST_RIC_NODE_MODULES")
    if prebuilt:
        # A node_modules made by this same install earlier (the native build takes minutes).
        shutil.copytree(prebuilt, root / "node_modules", symlinks=True)
        p = subprocess.CompletedProcess([], 0, "", "")
    else:
        p = subprocess.run(["npm", "install", "--no-audit", "--no-fund",
                            f"aws-lambda-ric@{RIC_VERSION}"],
                           cwd=root, capture_output=True, text=True,
                           timeout=RIC_INSTALL_TIMEOUT_S)
        assert p.returncode == 0, f"npm install aws-lambda-ric failed:\n{p.stdout[-3000:]}\n" \
            f"{p.stderr[-5000:]}"
    assert list((root / "node_modules" / "aws-lambda-ric").rglob("*.node")), \
        f"aws-lambda-ric has no native module: its preinstall did not build\n{p.stderr[-3000:]}"
    # The native module is linked statically: the sources and build trees of its deps are not
    # needed at run time and would only bloat the zip.
    shutil.rmtree(root / "node_modules" / "aws-lambda-ric" / "deps", ignore_errors=True)
    (root / "index.js").write_text(RIC_HANDLER)
    (root / "bootstrap").write_text(RIC_BOOTSTRAP)
    (root / "bootstrap").chmod(0o755)
    return root


def test_aws_lambda_ric_serves_invocations_and_errors(daemon, lam, ric_function_dir, tmp_path):
    zf = tmp_path / "ric.zip"
    subprocess.run(["zip", "-q", "-r", "--symlinks", str(zf), "."], cwd=ric_function_dir,
                   check=True)
    lam.create_function(FunctionName="ric", Runtime="provided.al2023", Role=ROLE,
                        Handler="index.handler", Code={"ZipFile": zf.read_bytes()}, Timeout=30,
                        MemorySize=512)
    r = lam.invoke(FunctionName="ric", Payload=b'{"hello": "ric"}', LogType="Tail")
    assert r["StatusCode"] == 200 and "FunctionError" not in r, r
    body = json.loads(r["Payload"].read())
    assert body["ok"] is True and body["event"] == {"hello": "ric"} and body["fn"] == "ric"
    assert body["requestId"] == r["ResponseMetadata"]["RequestId"]
    assert "ric-log-line" in base64.b64decode(r["LogResult"]).decode()
    r = lam.invoke(FunctionName="ric", Payload=b'{"fail": "please"}')
    assert r["StatusCode"] == 200 and r["FunctionError"] == "Unhandled"
    err = json.loads(r["Payload"].read())
    assert err["errorType"] == "TypeError" and "asked to fail: please" in err["errorMessage"]
    # The instance survives a handled error and serves the next one.
    r = lam.invoke(FunctionName="ric", Payload=b'{"again": 1}')
    assert json.loads(r["Payload"].read())["event"] == {"again": 1}


def test_provisioned_concurrency_and_account_settings(daemon, aws, lam):
    """Put/Get/List/Delete ProvisionedConcurrencyConfig on a version: READY once its instances are
    up, and the first invoke of that version is warm (no Init Duration); GetAccountSettings shows
    the limit less reservations; an over-reservation gets Lambda's error."""
    lam.create_function(FunctionName="p", Runtime="python3.12", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_tree(function_dir("py_counter"))})
    version = lam.publish_version(FunctionName="p")["Version"]
    put = lam.put_provisioned_concurrency_config(FunctionName="p", Qualifier=version,
                                                 ProvisionedConcurrentExecutions=2)
    assert put["RequestedProvisionedConcurrentExecutions"] == 2
    assert put["Status"] in ("IN_PROGRESS", "READY"), put

    def ready():
        got = lam.get_provisioned_concurrency_config(FunctionName="p", Qualifier=version)
        return got if got["Status"] == "READY" else None

    got = wait_until(ready, 15, "provisioned concurrency READY")
    assert got["AvailableProvisionedConcurrentExecutions"] == 2, got
    listed = aws("list-provisioned-concurrency-configs", "--function-name", "p")
    configs = listed["ProvisionedConcurrencyConfigs"]
    assert len(configs) == 1 and configs[0]["FunctionArn"].endswith(f":function:p:{version}"), listed

    out = lam.invoke(FunctionName="p", Qualifier=version, LogType="Tail", Payload=b"{}")
    tail = base64.b64decode(out["LogResult"]).decode()
    assert "REPORT RequestId" in tail and "Init Duration" not in tail, tail
    # $LATEST is not provisioned: its first call is cold.
    out = lam.invoke(FunctionName="p", LogType="Tail", Payload=b"{}")
    assert "Init Duration" in base64.b64decode(out["LogResult"]).decode()

    settings = lam.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    assert settings["AccountLimit"]["UnreservedConcurrentExecutions"] == 1000
    assert settings["AccountUsage"]["FunctionCount"] == 1
    lam.put_function_concurrency(FunctionName="p", ReservedConcurrentExecutions=5)
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 995
    with pytest.raises(ClientError) as e:
        lam.put_function_concurrency(FunctionName="p", ReservedConcurrentExecutions=950)
    assert error_code(e) == "InvalidParameterValueException"
    assert "below its minimum value of [100]" in e.value.response["Error"]["Message"]

    lam.delete_provisioned_concurrency_config(FunctionName="p", Qualifier=version)
    with pytest.raises(ClientError) as e:
        lam.get_provisioned_concurrency_config(FunctionName="p", Qualifier=version)
    assert error_code(e) == "ProvisionedConcurrencyConfigNotFoundException"
    with pytest.raises(ClientError) as e:
        lam.put_provisioned_concurrency_config(FunctionName="p", Qualifier="nope",
                                               ProvisionedConcurrentExecutions=1)
    assert error_code(e) == "ResourceNotFoundException"
