"""Gateway test function: echoes the event it got (as a 2.0 response) and the request id; the
query string steers it: ?sleep=S sleeps, ?raise=1 raises, ?shape=string|raw|bad answers in
other shapes."""

import json
import time


def handler(event, context):
    q = event.get("queryStringParameters") or {}
    if "sleep" in q:
        time.sleep(float(q["sleep"]))
    if q.get("raise"):
        raise RuntimeError("asked to fail")
    if q.get("shape") == "string":
        return "plain text"
    if q.get("shape") == "raw":
        return {"hello": "world"}
    if q.get("shape") == "bad":
        return {"statusCode": "not a number"}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-fn": "gw_echo"},
        "cookies": ["c1=a", "c2=b"],
        "body": json.dumps({"event": event, "aws_request_id": context.aws_request_id}),
    }
