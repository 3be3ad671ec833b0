"""Prints a few numbered lines tagged with the event's marker, to stdout and stderr."""

import sys


def handler(event, context):
    marker = event.get("marker", "none")
    for i in range(3):
        print(f"line-{i} {marker}")
    print(f"to-stderr {marker}", file=sys.stderr)
    return {"printed": 4}
