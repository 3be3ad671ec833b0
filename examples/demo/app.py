# The demo function: a Lambda handler, unchanged from what runs on AWS.
import os

invocations = 0  # module state survives between warm invocations


def handler(event, context):
    global invocations
    invocations += 1
    name = "world"
    if isinstance(event, dict):
        # Invoked directly ({"name": ...}) or through the gateway (?name=...).
        query = event.get("queryStringParameters") or {}
        name = event.get("name") or query.get("name") or name
    print(f"greeting {name}")
    return {
        "message": f"hello, {name}!",
        "invocations_in_this_instance": invocations,
        "function": context.function_name,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "region": os.environ.get("AWS_REGION"),
    }
