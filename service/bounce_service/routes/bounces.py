"""Bounce management: /api/bounces and /api/subscribers/{id}/bounces (listmonk's paths and envelopes)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any, AsyncIterator, Callable

from psycopg import sql
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import queries
from ..addresses import fold_address
from ..auth import requires
from ..errors import ApiError
from ..events import BOUNCE_TYPES, UUID_RE
from ..http import int_param, ok, parse_json, path_id, row_id, timestamp
from ..recorder import Named, Outcome
from .native import _event as native_event, recipient
from .ndjson import at_line, numbered_lines, paused_gc

MAX_PER_PAGE = 1000
MAX_PAGE = 10**12  # (page - 1) * per_page must stay a bigint OFFSET
# Totals are exact up to here. Beyond, counting every match (a million rows: ~40 ms and growing with the
# table) would cost more than the page itself, so `total` is PostgreSQL's estimate, and never below it.
COUNT_CAP = 10_000
# COPY hands over one row at a time; sending them to the client in blocks this size keeps the number of
# writes (and their per-call cost) low without holding more than one block in memory.
EXPORT_BLOCK = 256 * 1024

def _filters(request: Request) -> dict[str, Any]:
    query = request.query_params
    kind = query.get("type") or None
    if kind is not None and kind not in BOUNCE_TYPES:
        raise ApiError(400, "Invalid type: must be soft, hard or complaint")
    email = fold_address(query.get("email", ""))  # as the recorder stores addresses
    campaign_uuid = query.get("campaign_uuid") or None
    if campaign_uuid is not None and not UUID_RE.match(campaign_uuid):
        raise ApiError(400, "Invalid campaign_uuid: must be a UUID")
    return {
        "campaign_id": int_param(request, "campaign_id"),
        "campaign_uuid": campaign_uuid,
        "subscriber_id": int_param(request, "subscriber_id"),
        "source": query.get("source") or None,
        "type": kind,
        "email": email or None,
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
    page = int_param(request, "page", 1, high=MAX_PAGE)
    per_page = int_param(request, "per_page", 20, high=MAX_PER_PAGE)
    params = {**filters, "limit": per_page, "offset": (page - 1) * per_page, "count_cap": COUNT_CAP + 1}
    async with request.app.state.db.transaction() as conn:
        total = (await (await conn.execute(queries.count_bounces(filters), params)).fetchone())["total"]
        if total > COUNT_CAP:
            plan = (await (await conn.execute(queries.estimate_bounces(filters), params)).fetchone())["QUERY PLAN"]
            total = max(total, round(plan[0]["Plan"]["Plan Rows"]))
        rows = await (await conn.execute(queries.list_bounces(filters, order_by, order, few=total <= COUNT_CAP), params)).fetchall()
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
        ids = [row_id(raw) for raw in query.getlist("id")]
        if not ids or None in ids:
            raise ApiError(400, "Invalid ID(s)")
        statement, params = queries.DELETE_BOUNCES_BY_ID, {"ids": ids}
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


async def _copy_out(request: Request, statement: sql.Composed, params: dict[str, Any],
                    transform: Callable[[bytes], bytes] | None = None) -> AsyncIterator[bytes]:
    """The output of a COPY ... TO STDOUT, in blocks of about EXPORT_BLOCK bytes.

    The COPY is started, and its first row read, before this returns: a query that fails is an error
    response, not a cut stream. Rows are read as the client takes them, so memory stays flat at any size.
    """
    stack = AsyncExitStack()
    try:
        conn = await stack.enter_async_context(request.app.state.db.pool.connection())
        await stack.enter_async_context(conn.transaction())
        cursor = await stack.enter_async_context(conn.cursor())
        copy = await stack.enter_async_context(cursor.copy(statement, params))
        first = await copy.read()
    except BaseException:
        await stack.aclose()
        raise

    async def blocks() -> AsyncIterator[bytes]:
        async with stack:
            block, size, row = [first], len(first), first
            while row:
                row = await copy.read()
                block.append(row)
                size += len(row)
                if size >= EXPORT_BLOCK or (size and not row):
                    data = b"".join(block)
                    yield transform(data) if transform else data
                    block, size = [], 0

    return blocks()


def _unquote_ndjson(block: bytes) -> bytes:
    """Drop the \\x02 quotes COPY put around each block of JSON lines, the only \\x02 there is (queries.py)."""
    return block.replace(b"\x02", b"")


@requires("bounces:get")
async def export_bounces(request: Request) -> Response:
    """Stream every matching bounce, oldest first, straight from a COPY of the rows PostgreSQL formats."""
    export_format = request.query_params.get("format", "csv")
    if export_format not in ("csv", "ndjson"):
        raise ApiError(400, "Invalid format: must be csv or ndjson")
    filters = _filters(request)
    if export_format == "csv":
        body = await _copy_out(request, queries.export_bounces_csv(filters), filters)
        return StreamingResponse(
            body, media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="bounces.csv"'},
        )
    body = await _copy_out(request, queries.export_bounces_ndjson(filters), filters, _unquote_ndjson)
    return StreamingResponse(body, media_type="application/x-ndjson")


@requires("bounces:manage")
async def import_bounces(request: Request) -> Response:
    """NDJSON of native webhook bodies, one per line, recorded exactly as if each had been posted.

    They go through the one recorder (its COPY path): same event keys (an event already received by
    webhook is a duplicate), same subscriber matching, thresholds fire. Every line is validated before
    any bounce is written (the subscribers the file names are locked meanwhile, _recipients), and the
    whole file is one transaction: it is recorded entirely or not at all, and posting it again after an
    error is always safe (lines with an `event_id` are never recorded twice).
    """
    body = await request.body()
    with paused_gc():
        lines, named = _recipients(body)
        events = (at_line(number, native_event, line) for number, line in lines)
        result = await request.app.state.bulk_recorder.record_bulk(events, named)
    imported, recorded = len(result.outcomes), result.outcomes.count(Outcome.RECORDED)
    return ok({"imported": imported, "recorded": recorded, "duplicates": imported - recorded})


def _recipients(body: bytes) -> tuple[list[tuple[int, bytes]], Named]:
    """Each line's address and subscriber UUID, for the recorder to lock while it reads the lines in full.

    Read up to the first line whose JSON or recipient is bad, and no further: reading in full stops there
    at the latest, and reports the first bad line, whatever is wrong with it. So a body of many bad lines
    is never held in memory as parsed objects.
    """
    lines: list[tuple[int, bytes]] = []
    recipients: list[tuple[str, str | None]] = []
    for number, line in numbered_lines(body, "bounces"):
        lines.append((number, line))
        try:
            recipients.append(recipient(parse_json(line)))
        except ApiError:
            break
    return lines, Named.of(recipients)
