"""Counts invocations in module state: the count grows only while one instance stays warm."""

import os

# Identifies this instance: inside a sandbox every instance is pid 1 of its own pid namespace.
INSTANCE = os.urandom(8).hex()
COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    return {"count": COUNT, "pid": os.getpid(), "instance": INSTANCE, "tag": os.environ.get("TAG", "")}
