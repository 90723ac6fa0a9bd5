"""Deep, wide and huge JSON on every endpoint that reads a body: a 400 or a 413, never a 5xx, nothing
written, and memory bounded by the body limit rather than by what the body describes.

Mailgun stands for the providers whose signature travels inside the JSON, so that anyone may make the
service parse a body (SES's SNS envelope is the other).
"""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

from bounce_service.http import MAX_CONTAINERS
from tests.conftest import auth
from tests.service.providers_helpers import write_secret

LIMIT = 1024 * 1024  # the default spec.service.maxBodySize
BODIES = ["/webhooks/bounce", "/api/subscribers", "/api/lists", "/api/campaigns", "/api/subscribers/import",
          "/api/bounces/import", "/webhooks/service/mailgun"]
TABLES = ("bounces", "subscribers", "lists", "campaigns")


def fill(opening: bytes, middle: bytes, closing: bytes, size: int = LIMIT) -> bytes:
    """`opening * n + middle + closing * n`, as large as fits in `size` bytes."""
    n = (size - len(middle)) // (len(opening) + len(closing))
    return opening * n + middle + closing * n


HOSTILE = {
    "deep arrays": fill(b"[", b"", b"]"),
    "deep objects": fill(b'{"a":', b"1", b"}"),
    # The shapes that cost the most memory per byte once parsed: a million tiny containers.
    "wide array of arrays": b"[" + b"[]," * ((LIMIT - 4) // 3) + b"[]]",
    "wide array of objects": b"[" + b"{}," * ((LIMIT - 4) // 3) + b"{}]",
    "many lines": b"{}\n" * (LIMIT // 3),
    # As many containers as parse_json lets through, so parsed in full before being refused.
    "widest parsed": b"[" + b"[]," * (MAX_CONTAINERS - 2) + b"[]]",
}


# A bounce's `meta` may be a JSON string holding an object: parsed a second time, so hostile a second time.
DEEP_META = orjson.dumps({"email": "a@example.com", "type": "hard", "source": "x",
                          "meta": fill(b"[", b"", b"]", LIMIT - 100).decode()})
CASES = [(path, shape, HOSTILE[shape]) for path in BODIES for shape in HOSTILE] + [
    (path, "deep meta string", DEEP_META) for path in ("/webhooks/bounce", "/api/bounces/import")]


@pytest.fixture
async def client(make_client, secrets):
    write_secret(secrets, "mailgun", "key", "hostile-json-signing-key")
    return await make_client(webhooks={"mailgun": {"enabled": True, "secret": {"secretRef": {"name": "mailgun", "key": "key"}}}})


def rows(db) -> dict[str, int]:
    return {table: db.execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()["n"] for table in TABLES}


@pytest.mark.parametrize("path, shape, body", CASES, ids=[f"{shape}-{path}" for path, shape, _ in CASES])
async def test_hostile_json_within_the_limit_is_400_in_bounded_memory(client, db, path, shape, body):
    assert len(body) <= LIMIT
    tracemalloc.start()
    try:
        response = await client.post(path, content=body, auth=auth(), headers={"Content-Type": "application/json"})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert response.status_code == 400, response.text[:200]
    assert set(response.json()) == {"message"}
    assert rows(db) == dict.fromkeys(TABLES, 0)
    # Unchecked, a megabyte of `[],` would parse into ~350,000 lists, over 30 MB.
    assert peak < 16 * LIMIT, f"peak {peak / LIMIT:.1f} MiB"


@pytest.mark.parametrize("path", BODIES)
async def test_huge_json_is_413_before_it_is_read(client, db, path):
    big = HOSTILE["wide array of objects"] * 4

    async def streamed():  # no Content-Length: the limit must hold while the body arrives
        for start in range(0, len(big), 64 * 1024):
            yield big[start:start + 64 * 1024]

    tracemalloc.start()
    try:
        announced = await client.post(path, content=big, auth=auth())
        chunked = await client.post(path, content=streamed(), auth=auth())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for response in (announced, chunked):
        assert response.status_code == 413
        assert response.json() == {"message": f"request body larger than {LIMIT} bytes"}
    assert rows(db) == dict.fromkeys(TABLES, 0)
    assert peak < 16 * LIMIT + 2 * len(big), f"peak {peak / LIMIT:.0f} MiB"  # the test's own copies of `big`
