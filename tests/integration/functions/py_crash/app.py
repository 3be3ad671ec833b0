"""Exits the whole process with status 3 when the event asks for it; otherwise counts."""

import os
import sys

# Identifies this instance: inside a sandbox every instance is pid 1 of its own pid namespace.
INSTANCE = os.urandom(8).hex()
COUNT = 0


def handler(event, context):
    global COUNT
    COUNT += 1
    if event.get("crash"):
        print("about to exit")
        sys.stdout.flush()
        os._exit(3)
    return {"count": COUNT, "pid": os.getpid(), "instance": INSTANCE}
