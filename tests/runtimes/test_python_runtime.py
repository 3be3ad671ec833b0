"""Runs runtimes/python/bootstrap.py as the daemon does and checks it speaks the Runtime API."""

import json
import re

APP = """
import os
counter = 0

def handler(event, context):
    global counter
    counter += 1
    return {"echo": event, "counter": counter, "pid": os.getpid()}
"""


def test_success_result_and_keep_alive(api, start):
    proc = start("python", {"app.py": APP})
    first = api.invoke({"a": 1, "s": "héllo"}).wait()
    second = api.invoke([1, 2]).wait()
    assert first.kind == "response"
    assert first.headers["content-type"] == "application/json"
    assert first.json()["echo"] == {"a": 1, "s": "héllo"}
    # The same process serves both invocations, so module state carries over.
    assert second.json()["counter"] == 2
    assert first.json()["pid"] == second.json()["pid"] == proc.proc.pid
    # Three requests (next, response, next, response, next) over one kept-alive connection.
    assert api.connections == 1
    assert proc.proc.poll() is None


def test_exception_posts_error_with_awslambdaric_fields(api, start):
    proc = start(
        "python",
        {
            "app.py": """
class CustomError(Exception):
    pass

def helper():
    raise CustomError("it broke")

def handler(event, context):
    helper()
"""
        },
    )
    inv = api.invoke({}).wait()
    assert inv.kind == "error"
    assert inv.headers["lambda-runtime-function-error-type"] == "CustomError"
    body = inv.json()
    assert body["errorType"] == "CustomError"
    assert body["errorMessage"] == "it broke"
    assert body["requestId"] == inv.request_id
    trace = body["stackTrace"]
    assert isinstance(trace, list) and len(trace) == 2
    # Like awslambdaric: the runtime's own frames are cut, user frames kept in order.
    assert trace[0].startswith('  File "') and "app.py\", line 9, in handler" in trace[0]
    assert "in helper" in trace[1] and 'raise CustomError("it broke")' in trace[1]
    assert "bootstrap.py" not in "".join(trace)
    # The error is logged as one line, as Lambda's Python runtime does.
    proc.wait_for_output("[ERROR] CustomError: it broke\rTraceback (most recent call last):")
    # The process survives a handler exception and serves the next event.
    assert api.invoke({}).wait().kind == "error"
    assert proc.proc.poll() is None


def test_import_error_posts_init_error_and_exits_1(api, start):
    proc = start("python", {"other.py": "x = 1\n"})
    assert proc.wait_exit() == 1
    assert api.init_error is not None
    headers, body = api.init_error
    error = json.loads(body)
    assert headers["lambda-runtime-function-error-type"] == "Runtime.ImportModuleError"
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert error["errorMessage"] == "Unable to import module 'app': No module named 'app'"
    assert api.next_count == 0
    assert "[ERROR] Runtime.ImportModuleError: Unable to import module 'app'" in proc.stdout()


def test_missing_dependency_is_import_error(api, start):
    proc = start("python", {"app.py": "import not_installed_pkg\ndef handler(e, c):\n  pass\n"})
    assert proc.wait_exit() == 1
    error = json.loads(api.init_error[1])
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert error["errorMessage"] == (
        "Unable to import module 'app': No module named 'not_installed_pkg'"
    )


def test_handler_not_found(api, start):
    proc = start("python", {"app.py": APP}, handler="app.nope")
    assert proc.wait_exit() == 1
    headers, body = api.init_error
    assert headers["lambda-runtime-function-error-type"] == "Runtime.HandlerNotFound"
    assert json.loads(body)["errorMessage"] == "Handler 'nope' missing on module 'app'"


def test_syntax_error_and_malformed_handler(api, start):
    proc = start("python", {"app.py": "def handler(event, context)\n    return 1\n"})
    assert proc.wait_exit() == 1
    error = json.loads(api.init_error[1])
    assert error["errorType"] == "Runtime.UserCodeSyntaxError"
    assert error["errorMessage"].startswith("Syntax error in module 'app'")
    assert "app.py" in error["stackTrace"][0]

    proc = start("python", {"app.py": APP}, handler="app")
    assert proc.wait_exit() == 1
    error = json.loads(api.init_error[1])
    assert error["errorType"] == "Runtime.MalformedHandlerName"
    assert error["errorMessage"].startswith("Bad handler 'app'")


def test_exception_at_import_is_init_error_with_its_type(api, start):
    proc = start("python", {"app.py": "raise RuntimeError('no config')\n"})
    assert proc.wait_exit() == 1
    headers, body = api.init_error
    error = json.loads(body)
    assert error["errorType"] == "RuntimeError"
    assert error["errorMessage"] == "no config"
    assert headers["lambda-runtime-function-error-type"] == "RuntimeError"


def test_handler_path_forms(api, start):
    files = {
        "src/handlers/mod.py": "def run(event, context):\n    return 'dir form'\n",
        "pkg/__init__.py": "",
        "pkg/sub.py": "def run(event, context):\n    return 'package form'\n",
    }
    start("python", files, handler="src/handlers/mod.run")
    assert api.invoke({}).wait().json() == "dir form"


def test_package_handler_form(api, start):
    files = {"pkg/__init__.py": "", "pkg/sub.py": "def run(event, context):\n    return 7\n"}
    start("python", files, handler="pkg.sub.run")
    assert api.invoke({}).wait().json() == 7


def test_context_fields_and_remaining_time(api, start):
    app = """
import os
def handler(event, context):
    return {
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity_id": context.identity.cognito_identity_id,
        "identity_pool": context.identity.cognito_identity_pool_id,
        "client_custom": context.client_context.custom,
        "client_app": context.client_context.client.app_title,
        "remaining": context.get_remaining_time_in_millis(),
        "trace": os.environ.get("_X_AMZN_TRACE_ID"),
    }
"""
    start("python", {"app.py": app})
    inv = api.invoke(
        {},
        timeout_ms=30000,
        headers={
            "Lambda-Runtime-Client-Context": json.dumps(
                {"custom": {"k": "v"}, "env": {}, "client": {"app_title": "shop"}}
            ),
            "Lambda-Runtime-Cognito-Identity": json.dumps(
                {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
            ),
        },
    ).wait()
    out = inv.json()
    assert out["function_name"] == "fn"
    assert out["function_version"] == "$LATEST"
    assert out["invoked_function_arn"] == "arn:aws:lambda:us-east-1:000000000000:function:fn"
    assert out["memory_limit_in_mb"] == "128"
    assert out["aws_request_id"] == inv.request_id
    assert out["log_group_name"] == "/aws/lambda/fn"
    assert out["log_stream_name"] == "2026/01/01/[$LATEST]abc"
    assert out["identity_id"] == "id-1" and out["identity_pool"] == "pool-1"
    assert out["client_custom"] == {"k": "v"} and out["client_app"] == "shop"
    # From the deadline header (30 s ahead), not a default.
    assert 20000 < out["remaining"] <= 30000
    assert out["trace"] == "Root=1-abc;Parent=def;Sampled=0"


def test_trace_id_variable_follows_each_invocation(api, start):
    app = "import os\ndef handler(e, c):\n    return os.environ.get('_X_AMZN_TRACE_ID')\n"
    start("python", {"app.py": app})
    assert api.invoke({}).wait().json() == "Root=1-abc;Parent=def;Sampled=0"
    # An invocation without a trace header leaves no trace id of the one before.
    assert api.invoke({}, headers={"Lambda-Runtime-Trace-Id": None}).wait().json() is None
    assert api.invoke({}).wait().json() == "Root=1-abc;Parent=def;Sampled=0"


def test_remaining_time_never_negative(api, start):
    start("python", {"app.py": "def handler(e, c):\n    return c.get_remaining_time_in_millis()\n"})
    assert api.invoke({}, timeout_ms=-1000).wait().json() == 0


def test_print_is_plain_and_prompt_logging_is_lambda_format(api, start):
    app = """
import logging
logger = logging.getLogger()
logger.setLevel(logging.INFO)
logging.basicConfig(format="ignored %(message)s")  # a no-op in Lambda: root has a handler

def handler(event, context):
    print("plain line")
    logger.info("info %s", "msg")
    logging.getLogger("child").warning("two\\nlines")
    return None
"""
    proc = start("python", {"app.py": app})
    inv = api.invoke({}).wait()
    assert inv.body == b"null"
    proc.wait_for_output("two")
    lines = proc.stdout_lines()
    assert "plain line" in lines
    info = [line for line in lines if line.startswith("[INFO]")]
    assert len(info) == 1
    level, stamp, request_id, message = info[0].split("\t")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    assert request_id == inv.request_id and message == "info msg"
    warning = [line for line in lines if line.startswith("[WARNING]")]
    assert warning and warning[0].endswith("two\rlines")
    assert not any(line.startswith("ignored") for line in lines)


def test_logging_imported_inside_the_handler_is_configured(api, start):
    app = """
def handler(event, context):
    import logging.handlers  # the parent package is imported first, through the hook
    logging.getLogger().warning("late %d", 1)
    return logging.getLogger().handlers[0].__class__.__name__
"""
    proc = start("python", {"app.py": app})
    inv = api.invoke({}).wait()
    assert inv.json() == "LambdaLoggerHandler"
    proc.wait_for_output("late 1")
    line = [line for line in proc.stdout_lines() if "late 1" in line][0]
    assert line.startswith("[WARNING]\t") and line.endswith(f"\t{inv.request_id}\tlate 1")


def test_print_reaches_the_pipe_before_the_response(api, start, tmp_path):
    release = tmp_path / "release"
    app = f"""
import os, time
def handler(event, context):
    print("first")
    for _ in range(1000):  # held until the test has seen the line
        if os.path.exists({str(release)!r}):
            return 1
        time.sleep(0.01)
    return 0
"""
    proc = start("python", {"app.py": app})
    inv = api.invoke({})
    # Line buffering: the line shows while the handler is still running.
    proc.wait_for_output("first\n")
    assert not inv.done.is_set()
    release.touch()
    assert inv.wait().json() == 1


def test_environment_passthrough(api, start):
    app = """
import os
def handler(event, context):
    return {k: os.environ.get(k) for k in event}
"""
    start("python", {"app.py": app}, env={"GREETING": "hi", "DB_URL": "sqlite://x"})
    keys = ["GREETING", "DB_URL", "AWS_REGION", "TZ", "LAMBDA_TASK_ROOT", "_HANDLER"]
    out = api.invoke(keys).wait().json()
    assert out["GREETING"] == "hi" and out["DB_URL"] == "sqlite://x"
    assert out["AWS_REGION"] == "us-east-1" and out["TZ"] == ":UTC"
    assert out["_HANDLER"] == "app.handler" and out["LAMBDA_TASK_ROOT"].endswith("task0")


def test_marshalling_decimal_bytes_and_unserializable(api, start):
    app = """
import decimal
def handler(event, context):
    if event == "decimal":
        return {"int": decimal.Decimal("12345678901234567890"), "frac": decimal.Decimal("1.5")}
    if event == "bytes":
        return b"raw\\x00bytes"
    return {"bad": object()}
"""
    start("python", {"app.py": app})
    assert api.invoke("decimal").wait().json() == {"int": 12345678901234567890, "frac": 1.5}
    raw = api.invoke("bytes").wait()
    assert raw.body == b"raw\x00bytes"
    assert raw.headers["content-type"] == "application/unknown"
    bad = api.invoke("other").wait()
    assert bad.kind == "error"
    assert bad.json()["errorType"] == "Runtime.MarshalError"
    assert "Unable to marshal response: Object of type object is not JSON serializable" in (
        bad.json()["errorMessage"]
    )
    # A failed encode must not poison later ones (the encoder's cycle markers).
    assert api.invoke("decimal").wait().kind == "response"


def test_invalid_event_json_is_unmarshal_error(api, start):
    start("python", {"app.py": APP})
    inv = api.invoke(None, payload=b"{not json").wait()
    assert inv.kind == "error"
    assert inv.json()["errorType"] == "Runtime.UnmarshalError"
    assert inv.json()["errorMessage"].startswith("Unable to unmarshal input: Expecting")


def test_sys_exit_in_handler_ends_the_process(api, start):
    proc = start("python", {"app.py": "import sys\ndef handler(e, c):\n    sys.exit(3)\n"})
    inv = api.invoke({})
    assert proc.wait_exit() == 3
    assert not inv.done.is_set()


def test_startup_reaches_next_quickly(api, start):
    proc = start("python", {"app.py": APP})
    assert api.first_next_event.wait(10)
    elapsed = api.first_next_at - proc.started_at
    # Only a sanity bound for a loaded 2-core machine; measure_startup.py reports the figure.
    assert elapsed < 10.0, elapsed


def test_large_event_and_result(api, start):
    start("python", {"app.py": "def handler(event, context):\n    return event\n"})
    big = {"data": "x" * (5 * 1024 * 1024), "n": list(range(1000))}
    inv = api.invoke(big).wait()
    assert inv.kind == "response"
    assert inv.json() == big
