"""Runs runtimes/node/bootstrap.js as the daemon does and checks it speaks the Runtime API."""

import json
import re

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\t([^\t]*)\t([A-Z]+)\t(.*)$")

ASYNC_APP = """
let counter = 0;
exports.handler = async (event, context) => {
  counter += 1;
  return { echo: event, counter, pid: process.pid };
};
"""


def log_records(proc):
    return [m.groups() for m in map(LOG_LINE.match, proc.stdout_lines()) if m]


def test_async_handler_success_and_keep_alive(api, start):
    proc = start("node", {"app.js": ASYNC_APP})
    first = api.invoke({"a": 1, "s": "héllo"}).wait()
    second = api.invoke([1, 2]).wait()
    assert first.kind == "response"
    assert first.json()["echo"] == {"a": 1, "s": "héllo"}
    assert second.json()["counter"] == 2
    assert first.json()["pid"] == second.json()["pid"] == proc.proc.pid
    assert api.connections == 1
    assert proc.proc.poll() is None


def test_promise_returning_handler(api, start):
    app = """
exports.handler = (event) => new Promise((resolve) => setTimeout(() => resolve(event.n * 2), 20));
"""
    start("node", {"app.js": app})
    assert api.invoke({"n": 21}).wait().json() == 42


def test_undefined_result_is_null(api, start):
    start("node", {"app.js": "exports.handler = async () => undefined;\n"})
    assert api.invoke({}).wait().body == b"null"


def test_callback_handler_waits_for_empty_event_loop(api, start):
    app = """
let ticks = 0;
exports.handler = (event, context, callback) => {
  // The response is sent only when the event loop is empty: after this timer ran.
  setTimeout(() => { ticks += 1; console.log('timer done'); }, 300);
  callback(null, { waits: context.callbackWaitsForEmptyEventLoop, ticks });
};
"""
    proc = start("node", {"app.js": app})
    inv = api.invoke({}).wait()
    assert inv.json() == {"waits": True, "ticks": 0}
    # The response was held until the 300 ms timer had run and the loop was empty.
    assert inv.answered_at - inv.queued_at >= 0.3
    proc.wait_for_output("timer done")


def test_callback_without_waiting(api, start):
    app = """
exports.handler = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => {}, 30000);  // would hold the response for 30 s if waited for
  callback(null, 'fast');
};
"""
    start("node", {"app.js": app})
    assert api.invoke({}).wait(timeout=15).json() == "fast"


def test_callback_error_and_context_done_succeed_fail(api, start):
    app = """
exports.handler = (event, context, callback) => {
  if (event.mode === 'cb') return callback(new TypeError('bad input'));
  if (event.mode === 'string') return callback('plain string');
  if (event.mode === 'succeed') return context.succeed({ ok: 1 });
  if (event.mode === 'done') return context.done(null, 'done!');
  context.fail(new Error('failed'));
};
"""
    start("node", {"app.js": app})
    cb = api.invoke({"mode": "cb"}).wait()
    assert cb.kind == "error"
    assert cb.headers["lambda-runtime-function-error-type"] == "TypeError"
    assert cb.json()["errorMessage"] == "bad input"
    string = api.invoke({"mode": "string"}).wait().json()
    assert string["errorType"] == "string" and string["errorMessage"] == "plain string"
    assert api.invoke({"mode": "succeed"}).wait().json() == {"ok": 1}
    assert api.invoke({"mode": "done"}).wait().json() == "done!"
    assert api.invoke({"mode": "fail"}).wait().json()["errorMessage"] == "failed"


def test_thrown_error_fields_and_header(api, start):
    app = """
class ValidationError extends Error {
  constructor(m) { super(m); this.name = 'ValidationError'; }
}
exports.handler = async () => { throw new ValidationError('no name'); };
"""
    proc = start("node", {"app.js": app})
    inv = api.invoke({}).wait()
    assert inv.kind == "error"
    assert inv.headers["lambda-runtime-function-error-type"] == "ValidationError"
    body = inv.json()
    assert body["errorType"] == "ValidationError"
    assert body["errorMessage"] == "no name"
    assert body["stackTrace"][0] == "ValidationError: no name"
    assert any("app.js" in line for line in body["stackTrace"][1:])
    assert body["trace"] == body["stackTrace"]
    proc.wait_for_output("Invoke Error")
    errors = [r for r in log_records(proc) if r[2] == "ERROR"]
    assert errors[0][1] == inv.request_id
    assert errors[0][3].startswith('Invoke Error \t{"errorType":"ValidationError"')
    # Still alive for the next event.
    assert api.invoke({}).wait().kind == "error"


def test_sync_throw_is_an_error_response(api, start):
    start("node", {"app.js": "exports.handler = () => { throw new RangeError('sync'); };\n"})
    inv = api.invoke({}).wait()
    assert inv.json()["errorType"] == "RangeError"


def test_esm_mjs_handler(api, start):
    app = """
import { helper } from './lib.mjs';
let counter = 0;
export const handler = async (event) => { counter += 1; return helper(event) + counter; };
"""
    start("node", {"app.mjs": app, "lib.mjs": "export const helper = (e) => e.base;\n"})
    assert api.invoke({"base": 10}).wait().json() == 11
    assert api.invoke({"base": 10}).wait().json() == 12


def test_esm_js_with_package_type_module(api, start):
    files = {
        "package.json": '{"type": "module"}',
        "app.js": "export async function handler(e) { return 'esm ' + typeof require; }\n",
    }
    start("node", files)
    assert api.invoke({}).wait().json() == "esm undefined"


def test_cjs_extension_and_nested_dir_handler(api, start):
    files = {"src/fns/app.cjs": "module.exports.obj = { run: async () => 'nested' };\n"}
    start("node", files, handler="src/fns/app.obj.run")
    assert api.invoke({}).wait().json() == "nested"


def test_import_error_posts_init_error_and_exits_1(api, start):
    proc = start("node", {"other.js": "exports.x = 1;\n"})
    assert proc.wait_exit() == 1
    headers, body = api.init_error
    error = json.loads(body)
    assert headers["lambda-runtime-function-error-type"] == "Runtime.ImportModuleError"
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert error["errorMessage"].startswith("Error: Cannot find module 'app'")
    assert api.next_count == 0


def test_missing_dependency_is_import_error(api, start):
    proc = start("node", {"app.js": "require('left-pad-not-here');\nexports.handler = 1;\n"})
    assert proc.wait_exit() == 1
    error = json.loads(api.init_error[1])
    assert error["errorType"] == "Runtime.ImportModuleError"
    assert "left-pad-not-here" in error["errorMessage"]


def test_handler_not_found_and_not_a_function(api, start):
    proc = start("node", {"app.js": ASYNC_APP}, handler="app.nope")
    assert proc.wait_exit() == 1
    headers, body = api.init_error
    assert headers["lambda-runtime-function-error-type"] == "Runtime.HandlerNotFound"
    assert json.loads(body)["errorMessage"] == "app.nope is undefined or not exported"

    proc = start("node", {"app.js": "exports.value = 3;\n"}, handler="app.value")
    assert proc.wait_exit() == 1
    assert json.loads(api.init_error[1])["errorMessage"] == "app.value is not a function"


def test_syntax_error_and_malformed_handler(api, start):
    proc = start("node", {"app.js": "exports.handler = async () => {\n"})
    assert proc.wait_exit() == 1
    error = json.loads(api.init_error[1])
    assert error["errorType"] == "Runtime.UserCodeSyntaxError"
    assert error["errorMessage"].startswith("SyntaxError:")

    proc = start("node", {"app.js": ASYNC_APP}, handler="app")
    assert proc.wait_exit() == 1
    assert json.loads(api.init_error[1])["errorType"] == "Runtime.MalformedHandlerName"

    proc = start("node", {"app.js": ASYNC_APP}, handler="../app.handler")
    assert proc.wait_exit() == 1
    assert json.loads(api.init_error[1])["errorType"] == "Runtime.MalformedHandlerName"


def test_unhandled_rejection_reports_and_exits(api, start):
    app = """
exports.handler = async () => {
  Promise.reject(new Error('stray'));
  await new Promise((r) => setTimeout(r, 200));
  return 'never';
};
"""
    proc = start("node", {"app.js": app})
    inv = api.invoke({}).wait()
    assert inv.kind == "error"
    assert inv.headers["lambda-runtime-function-error-type"] == "Runtime.UnhandledPromiseRejection"
    assert inv.json()["errorMessage"] == "Error: stray"
    assert proc.wait_exit() == 128


def test_uncaught_exception_reports_and_exits(api, start):
    app = """
exports.handler = (event, context, callback) => {
  setTimeout(() => { throw new TypeError('from a timer'); }, 10);
};
"""
    proc = start("node", {"app.js": app})
    inv = api.invoke({}).wait()
    assert inv.json()["errorType"] == "TypeError"
    assert inv.json()["errorMessage"] == "from a timer"
    assert proc.wait_exit() == 129


def test_async_handler_that_never_settles(api, start):
    start("node", {"app.js": "exports.handler = async () => new Promise(() => {});\n"})
    inv = api.invoke({}).wait()
    assert inv.json()["errorType"] == "Runtime.NodeJsExit"


def test_sync_handler_without_callback_returns_null(api, start):
    start("node", {"app.js": "exports.handler = (event) => 42;\n"})
    assert api.invoke({}).wait().body == b"null"


def test_context_fields_and_remaining_time(api, start):
    app = """
exports.handler = async (event, context) => ({
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  invokedFunctionArn: context.invokedFunctionArn,
  memoryLimitInMB: context.memoryLimitInMB,
  awsRequestId: context.awsRequestId,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  identity: context.identity,
  clientContext: context.clientContext,
  remaining: context.getRemainingTimeInMillis(),
  waits: context.callbackWaitsForEmptyEventLoop,
  hasDone: ['done', 'succeed', 'fail'].every((k) => typeof context[k] === 'function'),
  trace: process.env._X_AMZN_TRACE_ID,
});
"""
    start("node", {"app.js": app})
    inv = api.invoke(
        {},
        timeout_ms=30000,
        headers={
            "Lambda-Runtime-Client-Context": json.dumps({"custom": {"k": "v"}}),
            "Lambda-Runtime-Cognito-Identity": json.dumps({"cognitoIdentityId": "id-1"}),
        },
    ).wait()
    out = inv.json()
    assert out["functionName"] == "fn" and out["functionVersion"] == "$LATEST"
    assert out["invokedFunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:fn"
    assert out["memoryLimitInMB"] == "128"
    assert out["awsRequestId"] == inv.request_id
    assert out["logGroupName"] == "/aws/lambda/fn"
    assert out["logStreamName"] == "2026/01/01/[$LATEST]abc"
    assert out["identity"] == {"cognitoIdentityId": "id-1"}
    assert out["clientContext"] == {"custom": {"k": "v"}}
    assert 20000 < out["remaining"] <= 30000
    assert out["waits"] is True and out["hasDone"] is True
    assert out["trace"] == "Root=1-abc;Parent=def;Sampled=0"


def test_console_prefix_format_and_levels(api, start):
    app = """
console.log('at init');
exports.handler = async (event) => {
  console.log('hello %s', 'world', { n: 1 });
  console.info('info');
  console.warn('warn');
  console.error('error');
  console.debug('debug');
  console.log('multi\\nline');
  return 1;
};
"""
    proc = start("node", {"app.js": app})
    inv = api.invoke({}).wait()
    proc.wait_for_output("multi")
    records = log_records(proc)
    assert records[0][1:] == ("undefined", "INFO", "at init")
    in_invoke = [r[1:] for r in records[1:]]
    assert in_invoke == [
        (inv.request_id, "INFO", "hello world { n: 1 }"),
        (inv.request_id, "INFO", "info"),
        (inv.request_id, "WARN", "warn"),
        (inv.request_id, "ERROR", "error"),
        (inv.request_id, "DEBUG", "debug"),
        (inv.request_id, "INFO", "multi\rline"),
    ]


def test_log_level_filter(api, start):
    app = "exports.handler = async () => { console.debug('d'); console.warn('w'); return 1; };\n"
    proc = start("node", {"app.js": app}, env={"AWS_LAMBDA_LOG_LEVEL": "WARN"})
    api.invoke({}).wait()
    proc.wait_for_output("\tw\n")
    assert [r[2] for r in log_records(proc)] == ["WARN"]


def test_environment_passthrough(api, start):
    app = "exports.handler = async (ks) => Object.fromEntries(ks.map((k) => [k, process.env[k]]));"
    start("node", {"app.js": app}, env={"GREETING": "hi"})
    out = api.invoke(["GREETING", "AWS_REGION", "TZ", "_HANDLER"]).wait().json()
    assert out == {
        "GREETING": "hi",
        "AWS_REGION": "us-east-1",
        "TZ": ":UTC",
        "_HANDLER": "app.handler",
    }


def test_unserializable_result_is_an_error(api, start):
    app = "exports.handler = async () => { const a = {}; a.a = a; return a; };\n"
    start("node", {"app.js": app})
    inv = api.invoke({}).wait()
    assert inv.kind == "error"
    assert inv.json()["errorMessage"] == "Unable to stringify response body"


def test_startup_reaches_next(api, start):
    proc = start("node", {"app.js": ASYNC_APP})
    assert api.first_next_event.wait(10)
    # Only a sanity bound for a loaded 2-core machine; measure_startup.py reports the figure.
    assert api.first_next_at - proc.started_at < 10.0


def test_large_event_and_result(api, start):
    start("node", {"app.js": "exports.handler = async (event) => event;\n"})
    big = {"data": "x" * (5 * 1024 * 1024), "n": list(range(1000))}
    inv = api.invoke(big).wait()
    assert inv.kind == "response"
    assert inv.json() == big


def test_unhandled_rejection_during_init_is_init_error(api, start):
    app = "Promise.reject(new Error('init went wrong'));\nexports.handler = async () => 1;\n"
    proc = start("node", {"app.js": app})
    assert proc.wait_exit() == 1
    headers, body = api.init_error
    assert headers["lambda-runtime-function-error-type"] == "Runtime.UnhandledPromiseRejection"
    assert json.loads(body)["errorMessage"] == "Error: init went wrong"
