"""Upserts for what the service needs from the sending system: subscribers, lists, campaigns.

They let the service work beside any sending system: it learns who the subscribers are (and their
lists, for the unsubscribe action) and how many messages each campaign sent (for bounce rates).
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator

import orjson
import psycopg
from psycopg.types.json import Jsonb
from starlette.requests import Request
from starlette.responses import Response

from .. import queries
from ..addresses import normalise_email
from ..auth import requires
from ..errors import ApiError
from ..events import UUID_RE
from ..http import json_object, ok, path_id
from .ndjson import parse_lines, paused_gc

SUBSCRIBER_STATUSES = ("enabled", "disabled", "blocklisted")
SUBSCRIPTION_STATUSES = ("unconfirmed", "confirmed", "unsubscribed")
MAX_NAME = 1000
UUID_BLOCK = 1024


def _uuid(value: Any, field: str, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not UUID_RE.match(value):
        raise ApiError(400, f"Invalid fields: {field}")
    return value.lower()


def _name(value: Any, field: str, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > MAX_NAME:
        raise ApiError(400, f"Invalid fields: {field}")
    return value.strip()


# A subscriber as a request gives it: address, uuid, name, attribs, status (None: not given) and the
# memberships, as (list uuid, subscription status). A tuple, not a dict: an import builds one per line.
Subscriber = tuple[str, str | None, str | None, dict | None, str | None, list[tuple[str, str]]]


def _subscriber(body: Any) -> Subscriber:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid data: expected a JSON object")
    email = body.get("email")
    email = normalise_email(email) if isinstance(email, str) else None
    if email is None:
        raise ApiError(400, "Invalid email.")
    status = body.get("status")
    if status is not None and status not in SUBSCRIBER_STATUSES:
        raise ApiError(400, "Invalid fields: status")
    attribs = body.get("attribs")
    if attribs is not None and not isinstance(attribs, dict):
        raise ApiError(400, "Invalid fields: attribs (must be a JSON object)")
    lists = body.get("lists", [])
    if not isinstance(lists, list):
        raise ApiError(400, "Invalid fields: lists")
    memberships = []
    for entry in lists:
        if not isinstance(entry, dict):
            raise ApiError(400, "Invalid fields: lists (each entry is {uuid, status})")
        list_status = entry.get("status", "confirmed")
        if list_status not in SUBSCRIPTION_STATUSES:
            raise ApiError(400, "Invalid fields: lists[].status")
        memberships.append((_uuid(entry.get("uuid"), "lists[].uuid", required=True), list_status))
    uuid, name = _uuid(body.get("uuid"), "uuid"), _name(body.get("name"), "name", required=False)
    return email, uuid, name, attribs, status, memberships


async def _upsert_subscriber(conn: psycopg.AsyncConnection, subscriber: Subscriber) -> dict:
    email, uuid, name, attribs, status, memberships = subscriber
    params = {"email": email, "uuid": uuid, "name": name, "status": status,
              "attribs": Jsonb(attribs) if attribs is not None else None}
    try:
        row = await (await conn.execute(queries.UPSERT_SUBSCRIBER, params)).fetchone()
    except psycopg.errors.UniqueViolation:
        raise ApiError(409, "uuid already belongs to another subscriber") from None
    for list_uuid, list_status in memberships:
        params = {"subscriber_id": row["id"], "list_uuid": list_uuid, "status": list_status}
        if await (await conn.execute(queries.UPSERT_MEMBERSHIP, params)).fetchone() is None:
            raise ApiError(400, f"Unknown list: {list_uuid}")
    return row


async def _with_lists(conn: psycopg.AsyncConnection, subscriber: dict) -> dict:
    lists = await (await conn.execute(queries.SUBSCRIBER_LISTS, {"id": subscriber["id"]})).fetchall()
    return {**subscriber, "lists": lists}


@requires("subscribers:manage")
async def upsert_subscriber(request: Request) -> Response:
    subscriber = _subscriber(await json_object(request))
    async with request.app.state.db.transaction() as conn:
        return ok(await _with_lists(conn, await _upsert_subscriber(conn, subscriber)))


def random_uuids() -> Iterator[str]:
    """Random (version 4) UUIDs, as the 32 hex digits PostgreSQL reads as a uuid, without end.

    Drawn from the OS 1,024 at a time: gen_random_uuid() per row cost ~4 µs on PostgreSQL builds that
    read /dev/urandom for each one (a 100,000-line import: 0.4 s), and uuid.uuid4() as much in Python.
    """
    while True:
        raw = bytearray(os.urandom(16 * UUID_BLOCK))
        raw[6::16] = bytes(byte & 0x0F | 0x40 for byte in raw[6::16])  # version 4
        raw[8::16] = bytes(byte & 0x3F | 0x80 for byte in raw[8::16])  # RFC 4122 variant
        digits = raw.hex()
        yield from (digits[start:start + 32] for start in range(0, 32 * UUID_BLOCK, 32))


async def _stage(conn: psycopg.AsyncConnection, body: bytes) -> int:
    """Validate the body's lines into the staging tables (a row per address and per membership); the line count.

    An address's first line goes to COPY as soon as it is parsed, so that PostgreSQL takes in each row
    while Python parses the next (BENCHMARKS.md: 100,000 lines parsed and staged in 1.7 s, against
    2.2–2.4 s when all were parsed first). Its later lines, rare in practice, are folded into one row
    (each field's last given value) and applied to the staged row after the COPY. It ends where
    upserting the lines one by one would: the first line's uuid, each field's last given value, and each
    row keeps the first line that named it, for errors found in the database. Attributes are serialised
    by orjson for COPY to parse as jsonb (psycopg's Jsonb would use the much slower json module).
    """
    await conn.execute(queries.CREATE_IMPORT_SUBSCRIBERS)
    await conn.execute(queries.CREATE_IMPORT_MEMBERSHIPS)
    staged: set[str] = set()
    later: dict[str, list] = {}  # address -> [address, name, attribs, status] that lines after its first give
    memberships: dict[tuple[str, str], list] = {}
    uuids = random_uuids()  # used only if the subscriber is new: an existing one keeps its own
    count = 0
    async with conn.cursor() as cursor:
        async with cursor.copy(queries.COPY_IMPORT_SUBSCRIBERS) as copy:
            for line, (email, uuid, name, attribs, status, lists) in parse_lines(body, _subscriber, "subscribers"):
                count += 1
                if attribs is not None:
                    attribs = orjson.dumps(attribs).decode()
                if email not in staged:
                    staged.add(email)
                    await copy.write_row((email, line, uuid or next(uuids), name, attribs, status))
                else:
                    folded = later.setdefault(email, [email, None, None, None])
                    for index, value in ((1, name), (2, attribs), (3, status)):
                        if value is not None:
                            folded[index] = value
                for list_uuid, list_status in lists:
                    membership = memberships.get((email, list_uuid))
                    if membership is None:
                        memberships[(email, list_uuid)] = [email, list_uuid, line, list_status]
                    else:
                        membership[3] = list_status
        await _copy(cursor, queries.COPY_IMPORT_MEMBERSHIPS, memberships.values())
        if later:
            await conn.execute(queries.CREATE_IMPORT_LATER_LINES)
            await _copy(cursor, queries.COPY_IMPORT_LATER_LINES, later.values())
            await conn.execute(queries.FOLD_IMPORT_LATER_LINES)
    return count


async def _copy(cursor: psycopg.AsyncCursor, statement: str, rows: Iterable[list]) -> None:
    async with cursor.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


@requires("subscribers:manage")
async def import_subscribers(request: Request) -> Response:
    """NDJSON, one subscriber per line; all lines are imported or none, and an error names its line.

    The rows are staged with COPY and stored with a few statements (_store_staged), which is what makes
    a bulk import tens of times faster than a statement (and a round trip) per line.
    """
    body = await request.body()
    async with request.app.state.db.transaction() as conn:
        with paused_gc():
            count = await _stage(conn, body)
        unknown = await (await conn.execute(queries.FIRST_UNKNOWN_IMPORT_LIST)).fetchone()
        if unknown is not None:
            raise ApiError(400, f"line {unknown['line']}: Unknown list: {unknown['list_uuid']}")
        await _store_staged(conn)
    return ok({"imported": count})


async def _store_staged(conn: psycopg.AsyncConnection) -> None:
    """Update, then insert, the staged subscribers and memberships; upsert them all if the insert fails.

    The insert and its retry run in savepoints, so that the staged rows outlive a conflict: to be
    retried with, or to name the line whose uuid is taken (queries.py, "An import stores its staged rows").
    """
    await conn.execute(queries.UPDATE_IMPORTED_SUBSCRIBERS)
    await conn.execute(queries.UPSERT_IMPORTED_MEMBERSHIPS)
    try:
        async with conn.transaction():
            await conn.execute(queries.INSERT_IMPORTED_SUBSCRIBERS)
        return
    except psycopg.errors.UniqueViolation:
        pass  # an address inserted by another client meanwhile, or a uuid taken
    try:
        async with conn.transaction():
            await conn.execute(queries.UPSERT_IMPORTED_SUBSCRIBERS)
    except psycopg.errors.UniqueViolation:
        line = (await (await conn.execute(queries.FIRST_IMPORT_UUID_CONFLICT)).fetchone())["line"]
        # None only if the subscriber that held the uuid was deleted in between.
        where = f"line {line}: " if line is not None else ""
        raise ApiError(409, f"{where}uuid already belongs to another subscriber") from None
    await conn.execute(queries.UPSERT_IMPORTED_MEMBERSHIPS)


@requires("subscribers:manage")
async def get_subscriber(request: Request) -> Response:
    async with request.app.state.db.transaction() as conn:
        subscriber = await (await conn.execute(queries.GET_SUBSCRIBER, {"id": path_id(request)})).fetchone()
        if subscriber is None:
            raise ApiError(404, "Subscriber not found")
        return ok(await _with_lists(conn, subscriber))


@requires("subscribers:manage")
async def upsert_list(request: Request) -> Response:
    body = await json_object(request)
    params = {"uuid": _uuid(body.get("uuid"), "uuid"), "name": _name(body.get("name"), "name", required=True)}
    async with request.app.state.db.transaction() as conn:
        return ok(await (await conn.execute(queries.UPSERT_LIST, params)).fetchone())


@requires("subscribers:manage")
async def upsert_campaign(request: Request) -> Response:
    body = await json_object(request)
    sent = body.get("sent")
    if sent is not None and (not isinstance(sent, int) or isinstance(sent, bool) or not 0 <= sent < 2**63):
        raise ApiError(400, "Invalid fields: sent (a non-negative integer)")
    params = {
        "uuid": _uuid(body.get("uuid"), "uuid", required=True),
        "name": _name(body.get("name"), "name", required=True),
        "sent": sent,
    }
    async with request.app.state.db.transaction() as conn:
        return ok(await (await conn.execute(queries.UPSERT_CAMPAIGN, params)).fetchone())
