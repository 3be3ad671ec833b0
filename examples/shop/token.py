#!/usr/bin/env python3
"""Prints an HS256 JWT for the shop: token.py SECRET SUB [SCOPE ...] (valid for one hour)."""

import base64
import hashlib
import hmac
import json
import sys
import time


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


secret, sub, *scopes = sys.argv[1:] or ["shop-demo-secret", "u1", "orders:read", "orders:write"]
claims = {"sub": sub, "iss": "https://shop.example", "aud": "shop", "iat": int(time.time()),
          "exp": int(time.time()) + 3600, "scope": " ".join(scopes)}
head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64url(json.dumps(claims).encode())
sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64url(sig)}")
