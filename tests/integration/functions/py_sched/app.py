"""Prints the event it got on one line tagged SCHED, for the schedule tests to read back."""

import json


def handler(event, context):
    print("SCHED " + json.dumps({"event": event, "request_id": context.aws_request_id}))
    return {"ok": True}
