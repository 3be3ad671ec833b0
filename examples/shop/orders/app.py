"""Orders service: place an order (needs the orders:write scope) and list one's own orders.
Orders live in the instance's memory: enough to show the flow, not a database."""

import json
import uuid

ORDERS = {}


def handler(event, context):
    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    user = claims["sub"]
    if event["requestContext"]["http"]["method"] == "POST":
        body = json.loads(event.get("body") or "{}")
        order = {"id": str(uuid.uuid4()), "user": user, "items": body.get("items", []),
                 "request_id": context.aws_request_id}
        ORDERS.setdefault(user, []).append(order)
        return {"statusCode": 201, "headers": {"content-type": "application/json"},
                "body": json.dumps(order)}
    return {"orders": ORDERS.get(user, [])}
