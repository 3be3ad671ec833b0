"""Echoes the event, the context fields and the environment, so tests can see what reached it."""

import os


def handler(event, context):
    return {
        "event": event,
        "context": {
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "aws_request_id": context.aws_request_id,
            "log_group_name": context.log_group_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
        "env": dict(os.environ),
        "pid": os.getpid(),
        "cwd": os.getcwd(),
    }
