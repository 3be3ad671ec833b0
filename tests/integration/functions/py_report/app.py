# Reports each invocation to the test's collector (REPORT_URL, on loopback:
# the function runs with network "host") and fails when the collector says so.
# Used by test_async.py: the sandbox's /tmp is private, so the network is the
# way out.
import json
import os
import time
import urllib.request


def handler(event, context):
    body = json.dumps({"request_id": context.aws_request_id, "event": event}).encode()
    req = urllib.request.Request(os.environ["REPORT_URL"], data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        answer = json.loads(r.read() or b"{}")
    if answer.get("sleep_s"):
        time.sleep(answer["sleep_s"])
    if answer.get("fail"):
        raise RuntimeError("the collector said fail")
    return {"ok": True, "request_id": context.aws_request_id}
