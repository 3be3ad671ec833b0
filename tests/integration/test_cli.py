"""The `tamaya` client commands against a real daemon (--endpoint)."""

import hashlib
import json
import subprocess

from itest import TAMAYA_BIN, free_port, function_dir, zip_tree


def ok(result):
    assert result.returncode == 0, f"rc={result.returncode}\nstdout:{result.stdout}\nstderr:{result.stderr}"
    return result


def test_deploy_directory_and_invoke(daemon):
    out = ok(daemon.cli("deploy", "echo", function_dir("py_echo"), "--runtime", "python3",
                        "--handler", "app.handler", "--memory", "256", "--timeout", "5",
                        "--env", "GREETING=hi", "--env", "EQ=a=b", "--description", "cli"))
    assert out.stdout.startswith("created function echo: python3 app.handler, code "), out.stdout
    f = daemon.get("/v1/functions/echo").json()
    assert f["code_sha256"][:12] in out.stdout
    assert (f["memory_mb"], f["timeout_s"], f["description"]) == (256, 5, "cli")
    assert f["environment"] == {"GREETING": "hi", "EQ": "a=b"}
    inv = ok(daemon.cli("invoke", "echo", "--data", '{"a": 1}'))
    body = json.loads(inv.stdout)
    assert body["event"] == {"a": 1}
    assert body["env"]["GREETING"] == "hi"


def test_deploy_keeps_exec_bit_for_provided(daemon):
    ok(daemon.cli("deploy", "prov", function_dir("provided_echo"), "--runtime", "provided"))
    body = json.loads(ok(daemon.cli("invoke", "prov", "--data", '{"p": true}')).stdout)
    assert body["runtime"] == "provided" and body["echo"] == {"p": True}


def test_deploy_single_file(daemon, tmp_path):
    src = tmp_path / "hello.py"
    src.write_text("def handler(event, context):\n    return {'hello': event.get('who')}\n")
    out = ok(daemon.cli("deploy", "single", src, "--runtime", "python3", "--handler",
                        "hello.handler"))
    assert "created function single" in out.stdout
    body = json.loads(ok(daemon.cli("invoke", "single", "--data", '{"who": "file"}')).stdout)
    assert body == {"hello": "file"}


def test_deploy_single_node_file_default_handler(daemon, tmp_path):
    src = tmp_path / "app.js"
    src.write_text("exports.handler = async (e) => ({ node: e.n * 2 });\n")
    ok(daemon.cli("deploy", "nodefile", src, "--runtime", "nodejs"))
    assert daemon.get("/v1/functions/nodefile").json()["handler"] == "app.handler"
    assert json.loads(ok(daemon.cli("invoke", "nodefile", "--data", '{"n": 21}')).stdout) == \
        {"node": 42}


def test_deploy_zip_as_is(daemon, tmp_path):
    archive = tmp_path / "code.zip"
    archive.write_bytes(zip_tree(function_dir("py_counter")))
    ok(daemon.cli("deploy", "zipped", archive, "--runtime", "python3"))
    f = daemon.get("/v1/functions/zipped").json()
    # A .zip is uploaded unchanged: the artifact's sha256 is the file's.
    assert f["code_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert json.loads(ok(daemon.cli("invoke", "zipped")).stdout)["count"] == 1


def test_deploy_updates_existing(daemon, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("def handler(e, c):\n    return 'v1'\n")
    ok(daemon.cli("deploy", "upd", code, "--runtime", "python3"))
    (code / "app.py").write_text("def handler(e, c):\n    return 'v2'\n")
    out = ok(daemon.cli("deploy", "upd", code, "--timeout", "9"))
    assert out.stdout.startswith("updated function upd"), out.stdout
    assert json.loads(ok(daemon.cli("invoke", "upd")).stdout) == "v2"
    assert daemon.get("/v1/functions/upd").json()["timeout_s"] == 9
    # Same tree, same bytes: the CLI's zip is reproducible, so the sha is unchanged.
    before = daemon.get("/v1/functions/upd").json()["code_sha256"]
    ok(daemon.cli("deploy", "upd", code))
    assert daemon.get("/v1/functions/upd").json()["code_sha256"] == before


def test_deploy_errors(daemon, tmp_path):
    missing_runtime = daemon.cli("deploy", "new", function_dir("py_echo"))
    assert missing_runtime.returncode == 2
    assert "--runtime" in missing_runtime.stderr
    bad_path = daemon.cli("deploy", "new", tmp_path / "nope", "--runtime", "python3")
    assert bad_path.returncode == 2 and "error:" in bad_path.stderr
    bad_name = daemon.cli("deploy", "bad name", function_dir("py_echo"), "--runtime", "python3")
    assert bad_name.returncode == 2 and "name" in bad_name.stderr
    assert daemon.functions() == []


def test_invoke_payload_sources(daemon, tmp_path):
    daemon.deploy("echo", "py_echo")
    payload = tmp_path / "event.json"
    payload.write_text('{"from": "file"}')
    body = json.loads(ok(daemon.cli("invoke", "echo", "--file", payload)).stdout)
    assert body["event"] == {"from": "file"}
    body = json.loads(ok(daemon.cli("invoke", "echo", input='{"from": "stdin"}')).stdout)
    assert body["event"] == {"from": "stdin"}
    body = json.loads(ok(daemon.cli("invoke", "echo", "--file", "-",
                                    input='{"from": "dash"}')).stdout)
    assert body["event"] == {"from": "dash"}
    missing = daemon.cli("invoke", "echo", "--file", tmp_path / "missing.json")
    assert missing.returncode == 2 and "missing.json" in missing.stderr


def test_invoke_exit_codes(daemon):
    daemon.deploy("raise", "py_raise")
    failed = daemon.cli("invoke", "raise", "--data", "{}")
    assert failed.returncode == 1, failed.stderr
    err = json.loads(failed.stdout)
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "boom"

    unknown = daemon.cli("invoke", "nope", "--data", "{}")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("error:") and "nope" in unknown.stderr

    bad_json = daemon.cli("invoke", "raise", "--data", "{oops")
    assert bad_json.returncode == 2 and "JSON" in bad_json.stderr

    down = daemon.cli("invoke", "raise", "--data", "{}",
                      endpoint=f"http://127.0.0.1:{free_port()}")
    assert down.returncode == 2 and down.stderr.startswith("error:")


def test_invoke_log_tail(daemon):
    daemon.deploy("printer", "py_print")
    out = ok(daemon.cli("invoke", "printer", "--data", '{"marker": "tail"}', "--log-tail"))
    assert json.loads(out.stdout) == {"printed": 4}
    assert "START RequestId:" in out.stderr
    assert "line-0 tail" in out.stderr
    assert "END RequestId:" in out.stderr
    assert "REPORT RequestId:" in out.stderr
    assert "Init Duration:" in out.stderr  # first call: cold


def test_ls_get_rm(daemon):
    daemon.deploy("beta", "py_echo", environment={"K": "V"})
    daemon.deploy("alpha", "node_async", runtime="nodejs", timeout_s=4)
    ls = ok(daemon.cli("ls")).stdout.splitlines()
    assert ls[0].split() == ["NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "UPDATED"]
    assert [line.split()[0] for line in ls[1:]] == ["alpha", "beta"]
    assert ls[1].split()[1:6] == ["nodejs", "app.handler", "128", "MB", "4"]

    ls_json = json.loads(ok(daemon.cli("--json", "ls")).stdout)
    assert ls_json == daemon.get("/v1/functions").json()
    ls_json_after = json.loads(ok(daemon.cli("ls", "--json")).stdout)
    assert ls_json_after == ls_json

    get = ok(daemon.cli("get", "beta")).stdout
    assert "name".ljust(17) + "beta" in get
    assert "runtime".ljust(17) + "python3" in get
    assert "K=V" in get
    assert json.loads(ok(daemon.cli("get", "beta", "--json")).stdout) == \
        daemon.get("/v1/functions/beta").json()

    rm = ok(daemon.cli("rm", "beta"))
    assert rm.stdout.strip() == "deleted function beta"
    gone = daemon.cli("get", "beta")
    assert gone.returncode == 2 and "beta" in gone.stderr
    assert daemon.cli("rm", "beta").returncode == 2
    assert [f["name"] for f in daemon.functions()] == ["alpha"]


def test_ls_empty(daemon):
    out = ok(daemon.cli("ls"))
    assert out.stdout.split() == ["NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "UPDATED"]
    assert "tamaya deploy" in out.stderr


def test_publish_and_versions(daemon, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text("def handler(e, c):\n    return 'one'\n")
    ok(daemon.cli("deploy", "pv", code, "--runtime", "python3"))
    first = ok(daemon.cli("publish", "pv", "--description", "first"))
    assert first.stdout.strip() == "1"
    again = ok(daemon.cli("publish", "pv"))
    assert again.stdout.strip() == "1" and "nothing changed" in again.stderr

    (code / "app.py").write_text("def handler(e, c):\n    return 'two'\n")
    ok(daemon.cli("deploy", "pv", code))
    published = json.loads(ok(daemon.cli("--json", "publish", "pv")).stdout)
    assert published["version"] == "2"

    versions = ok(daemon.cli("versions", "pv")).stdout.splitlines()
    assert versions[0].split() == ["VERSION", "CODE", "CREATED", "DESCRIPTION"]
    assert [line.split()[0] for line in versions[1:]] == ["$LATEST", "1", "2"]
    assert "first" in versions[2]
    as_json = json.loads(ok(daemon.cli("versions", "pv", "--json")).stdout)
    assert [v["version"] for v in as_json["versions"]] == ["$LATEST", "1", "2"]

    assert json.loads(ok(daemon.cli("invoke", "pv", "--qualifier", "1")).stdout) == "one"
    assert json.loads(ok(daemon.cli("invoke", "pv")).stdout) == "two"
    assert "version".ljust(17) + "1" in ok(daemon.cli("get", "pv", "--qualifier", "1")).stdout
    assert daemon.cli("publish", "nope").returncode == 2


def test_endpoint_from_environment(daemon):
    daemon.deploy("echo", "py_echo")
    out = subprocess.run([str(TAMAYA_BIN), "ls"], capture_output=True, text=True, timeout=30,
                         env={"TAMAYA_ENDPOINT": daemon.base, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "echo" in out.stdout


def test_usage_errors(daemon):
    assert daemon.cli("invoke").returncode == 2
    assert daemon.cli("frobnicate").returncode == 2
    assert daemon.cli("deploy", "x", function_dir("py_echo"), "--runtime", "cobol").returncode == 2
    help_out = daemon.cli("--help")
    assert help_out.returncode == 0 and "deploy" in help_out.stdout
