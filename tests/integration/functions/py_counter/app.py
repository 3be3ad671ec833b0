"""Counts invocations in module state: the count grows only while one instance stays warm."""

import os

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    return {"count": COUNT, "pid": os.getpid(), "tag": os.environ.get("TAG", "")}
