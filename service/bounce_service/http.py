"""Request and response helpers shared by every endpoint: envelopes, JSON bodies, parameters."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)


def ok(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"data": data}, status_code=status)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


# Parsed, a megabyte of `[],[],...` is some 350,000 lists and 30 MB: bounded by the body limit, yet a few
# dozen such requests at once could exhaust a pod, and some arrive before any signature is checked (an SNS
# envelope carries its own). A real payload spends far more than 10 bytes per array or object.
MAX_CONTAINERS = 100_000


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise ApiError(400, "Invalid data: empty body")
    if body.count(b"[") + body.count(b"{") > MAX_CONTAINERS:
        raise ApiError(400, f"Invalid data: more than {MAX_CONTAINERS:,} JSON arrays and objects")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"Invalid data: the body is not valid JSON ({exc})") from None


async def json_object(request: Request) -> dict[str, Any]:
    value = parse_json(await request.body())
    if not isinstance(value, dict):
        raise ApiError(400, "Invalid data: expected a JSON object")
    return value


def int_param(request: Request, name: str, default: int | None = None, *, low: int = 1, high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"Invalid {name}: must be an integer") from None
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise ApiError(400, f"Invalid {name}: must be {bound}")
    return value


def row_id(raw: str) -> int | None:
    """A row id (1 to PostgreSQL's largest bigint) written in ASCII digits, or None. str.isdigit() alone
    would pass "²", which int() then refuses."""
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= 2**63 - 1:
        return None
    return int(raw)


def path_id(request: Request, name: str = "id") -> int:
    value = row_id(request.path_params[name])
    if value is None:
        raise ApiError(400, "invalid ID")
    return value


def timestamp(value: Any, field: str) -> datetime:
    """RFC 3339 with an explicit offset; a naive time would silently shift by the server's zone."""
    if not isinstance(value, str):
        raise ApiError(400, f"Invalid fields: {field}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, f"Invalid fields: {field} (expected RFC 3339, e.g. 2026-01-31T12:00:00Z)") from None
    if parsed.tzinfo is None:
        raise ApiError(400, f"Invalid fields: {field} (a time zone offset is required)")
    return parsed


class BodyLimitMiddleware:
    """Refuse request bodies over the limit with 413, whether or not Content-Length announces them."""

    def __init__(self, app: ASGIApp, max_body_size: int) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_size:
                await error(413, f"request body larger than {self.max_body_size} bytes")(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_size:
                    raise ApiError(413, f"request body larger than {self.max_body_size} bytes")
            return message

        await self.app(scope, limited_receive, send)
