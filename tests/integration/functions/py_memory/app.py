"""Allocates and touches event["mb"] MiB, so the instance's resident memory really grows."""

CHUNK = 1 << 20


def handler(event, context):
    blocks = []
    for _ in range(int(event.get("mb", 1))):
        block = bytearray(CHUNK)
        # Touch every page: a fresh bytearray may be lazily mapped zero pages.
        for i in range(0, CHUNK, 4096):
            block[i] = 1
        blocks.append(block)
    return {"allocated_mb": len(blocks)}
