"""Bounce management: /api/bounces and /api/subscribers/{id}/bounces (listmonk's paths and envelopes)."""

from __future__ import annotations

import csv
import io
from contextlib import AsyncExitStack
from typing import Any, AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import queries
from ..auth import requires
from ..errors import ApiError
from ..events import BOUNCE_TYPES
from ..http import int_param, ok, path_id, timestamp

MAX_PER_PAGE = 1000
EXPORT_BATCH = 2000
EXPORT_COLUMNS = (
    "id", "created_at", "type", "source", "email", "subscriber_id", "subscriber_uuid", "subscriber_status",
    "campaign_id", "campaign_uuid", "campaign_name", "event_key", "action", "meta",
)


def _filters(request: Request) -> dict[str, Any]:
    query = request.query_params
    kind = query.get("type") or None
    if kind is not None and kind not in BOUNCE_TYPES:
        raise ApiError(400, "Invalid type: must be soft, hard or complaint")
    return {
        "campaign_id": int_param(request, "campaign_id"),
        "subscriber_id": int_param(request, "subscriber_id"),
        "source": query.get("source") or None,
        "type": kind,
        "email": query.get("email") or None,
        "from": timestamp(query["from"], "from") if query.get("from") else None,
        "to": timestamp(query["to"], "to") if query.get("to") else None,
    }


@requires("bounces:get")
async def list_bounces(request: Request) -> Response:
    filters = _filters(request)
    order_by = request.query_params.get("order_by") or "created_at"
    if order_by not in queries.ORDER_COLUMNS:
        raise ApiError(400, "Invalid order_by: must be one of " + ", ".join(queries.ORDER_COLUMNS))
    order = (request.query_params.get("order") or "desc").lower()
    if order not in ("asc", "desc"):
        raise ApiError(400, "Invalid order: must be asc or desc")
    page = int_param(request, "page", 1)
    per_page = int_param(request, "per_page", 20, high=MAX_PER_PAGE)
    params = {**filters, "limit": per_page, "offset": (page - 1) * per_page}
    async with request.app.state.db.transaction() as conn:
        total = (await (await conn.execute(queries.count_bounces(filters), params)).fetchone())["total"]
        rows = await (await conn.execute(queries.list_bounces(filters, order_by, order), params)).fetchall()
    return ok({"results": rows, "query": "", "search": "", "total": total, "per_page": per_page, "page": page})


@requires("bounces:get")
async def get_bounce(request: Request) -> Response:
    async with request.app.state.db.transaction() as conn:
        row = await (await conn.execute(queries.GET_BOUNCE, {"id": path_id(request)})).fetchone()
    if row is None:
        raise ApiError(404, "Bounce not found")
    return ok(row)


@requires("bounces:manage")
async def delete_bounces(request: Request) -> Response:
    query = request.query_params
    if query.get("all", "").lower() in ("1", "t", "true", "yes"):
        statement, params = queries.DELETE_ALL_BOUNCES, {}
    else:
        raw_ids = query.getlist("id")
        if not raw_ids or not all(raw.isdigit() and 0 < int(raw) < 2**63 for raw in raw_ids):
            raise ApiError(400, "Invalid ID(s)")
        statement, params = queries.DELETE_BOUNCES_BY_ID, {"ids": [int(raw) for raw in raw_ids]}
    async with request.app.state.db.transaction() as conn:
        await conn.execute(statement, params)
    return ok(True)


@requires("bounces:manage")
async def delete_bounce(request: Request) -> Response:
    async with request.app.state.db.transaction() as conn:
        await conn.execute(queries.DELETE_BOUNCES_BY_ID, {"ids": [path_id(request)]})
    return ok(True)


@requires("bounces:manage")
async def blocklist_bounced(request: Request) -> Response:
    async with request.app.state.db.transaction() as conn:
        await conn.execute(queries.BLOCKLIST_BOUNCED)
    return ok(True)


async def _existing_subscriber(conn: Any, request: Request) -> int:
    subscriber_id = path_id(request)
    if await (await conn.execute(queries.SUBSCRIBER_EXISTS, {"id": subscriber_id})).fetchone() is None:
        raise ApiError(404, "Subscriber not found")
    return subscriber_id


@requires("bounces:get")
async def subscriber_bounces(request: Request) -> Response:
    async with request.app.state.db.transaction() as conn:
        subscriber_id = await _existing_subscriber(conn, request)
        rows = await (await conn.execute(queries.SUBSCRIBER_BOUNCES, {"subscriber_id": subscriber_id})).fetchall()
    return ok(rows)


@requires("bounces:manage")
async def delete_subscriber_bounces(request: Request) -> Response:
    async with request.app.state.db.transaction() as conn:
        subscriber_id = await _existing_subscriber(conn, request)
        await conn.execute(queries.DELETE_SUBSCRIBER_BOUNCES, {"subscriber_id": subscriber_id})
    return ok(True)


def _csv_line(row: dict[str, Any]) -> list[Any]:
    campaign = row["campaign"] or {}
    return [
        row["id"], row["created_at"].isoformat(), row["type"], row["source"], row["email"],
        row["subscriber_id"] or "", row["subscriber_uuid"] or "", row["subscriber_status"] or "",
        campaign.get("id", ""), campaign.get("uuid", ""), campaign.get("name", ""),
        row["event_key"] or "", row["action"] or "", orjson.dumps(row["meta"]).decode(),
    ]


@requires("bounces:get")
async def export_bounces(request: Request) -> Response:
    """Stream every matching bounce through a server-side cursor, so memory stays flat at any size."""
    export_format = request.query_params.get("format", "csv")
    if export_format not in ("csv", "ndjson"):
        raise ApiError(400, "Invalid format: must be csv or ndjson")
    filters = _filters(request)
    stack = AsyncExitStack()
    try:
        conn = await stack.enter_async_context(request.app.state.db.pool.connection())
        await stack.enter_async_context(conn.transaction())
        cursor = await stack.enter_async_context(conn.cursor(name="bounce_export"))
        await cursor.execute(queries.export_bounces(filters), filters)
        first = await cursor.fetchmany(EXPORT_BATCH)
    except BaseException:
        await stack.aclose()
        raise

    async def batches() -> AsyncIterator[list[dict[str, Any]]]:
        async with stack:
            rows = first
            while rows:
                yield rows
                rows = await cursor.fetchmany(EXPORT_BATCH)

    async def csv_body() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(EXPORT_COLUMNS)
        async for rows in batches():
            writer.writerows(_csv_line(row) for row in rows)
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
        if buffer.tell():
            yield buffer.getvalue().encode()

    async def ndjson_body() -> AsyncIterator[bytes]:
        async for rows in batches():
            yield b"".join(orjson.dumps(row) + b"\n" for row in rows)

    if export_format == "csv":
        return StreamingResponse(
            csv_body(), media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="bounces.csv"'},
        )
    return StreamingResponse(ndjson_body(), media_type="application/x-ndjson")
