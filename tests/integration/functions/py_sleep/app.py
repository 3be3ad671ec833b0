"""Sleeps event["seconds"] and reports when it started and ended (wall clock) and how many
invocations this instance has served (a fresh instance starts at 1)."""

import os
import time

COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    start = time.time()
    time.sleep(float(event.get("seconds", 0)))
    return {"start": start, "end": time.time(), "pid": os.getpid(), "count": COUNT}
