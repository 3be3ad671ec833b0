"""Users service: who am I (from the JWT's claims) and a small in-memory directory."""

import json

USERS = {"u1": {"id": "u1", "name": "Ada"}, "u2": {"id": "u2", "name": "Linus"}}


def reply(status, body):
    return {"statusCode": status, "headers": {"content-type": "application/json"},
            "body": json.dumps(body)}


def handler(event, context):
    claims = event["requestContext"].get("authorizer", {}).get("jwt", {}).get("claims", {})
    if event["routeKey"] == "GET /users/me":
        user = USERS.get(claims.get("sub"))
        return reply(200, user) if user else reply(404, {"message": "no such user"})
    user_id = (event.get("pathParameters") or {}).get("id")
    user = USERS.get(user_id)
    return reply(200, user) if user else reply(404, {"message": f"no user {user_id}"})
