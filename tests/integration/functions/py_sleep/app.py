"""Sleeps event["seconds"] and reports when it started and ended (wall clock) and how many
invocations this instance has served (a fresh instance starts at 1)."""

import os
import time

# Identifies this instance: inside a sandbox every instance is pid 1 of its own pid namespace.
INSTANCE = os.urandom(8).hex()
COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    start = time.time()
    time.sleep(float(event.get("seconds", 0)))
    return {"start": start, "end": time.time(), "pid": os.getpid(), "instance": INSTANCE, "count": COUNT}
