"""Upserts for what the service needs from the sending system: subscribers, lists, campaigns.

They let the service work beside any sending system: it learns who the subscribers are (and their
lists, for the unsubscribe action) and how many messages each campaign sent (for bounce rates).
"""

from __future__ import annotations

import os
from typing import Any

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


def _subscriber(body: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    if not isinstance(body, dict):
        raise ApiError(400, "Invalid data: expected a JSON object")
    email = normalise_email(body["email"]) if isinstance(body.get("email"), str) else None
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
    row = {
        "uuid": _uuid(body.get("uuid"), "uuid"),
        "email": email,
        "name": _name(body.get("name"), "name", required=False),
        "attribs": attribs,
        "status": status,
    }
    return row, memberships


async def _upsert_subscriber(conn: psycopg.AsyncConnection, row: dict, memberships: list[tuple[str, str]]) -> dict:
    params = {**row, "attribs": Jsonb(row["attribs"]) if row["attribs"] is not None else None}
    try:
        subscriber = await (await conn.execute(queries.UPSERT_SUBSCRIBER, params)).fetchone()
    except psycopg.errors.UniqueViolation:
        raise ApiError(409, "uuid already belongs to another subscriber") from None
    for list_uuid, status in memberships:
        params = {"subscriber_id": subscriber["id"], "list_uuid": list_uuid, "status": status}
        if await (await conn.execute(queries.UPSERT_MEMBERSHIP, params)).fetchone() is None:
            raise ApiError(400, f"Unknown list: {list_uuid}")
    return subscriber


async def _with_lists(conn: psycopg.AsyncConnection, subscriber: dict) -> dict:
    lists = await (await conn.execute(queries.SUBSCRIBER_LISTS, {"id": subscriber["id"]})).fetchall()
    return {**subscriber, "lists": lists}


@requires("subscribers:manage")
async def upsert_subscriber(request: Request) -> Response:
    row, memberships = _subscriber(await json_object(request))
    async with request.app.state.db.transaction() as conn:
        subscriber = await _upsert_subscriber(conn, row, memberships)
        return ok(await _with_lists(conn, subscriber))


def _merge(parsed: list[tuple[int, tuple[dict, list[tuple[str, str]]]]]) -> tuple[list[list], list[list]]:
    """One staging row per e-mail and per (e-mail, list), folded in line order.

    A statement cannot upsert one subscriber twice, so lines for the same address are merged here the
    way upserting them one by one would: the first line's uuid, each field's last given value. Each
    row keeps the first line that named it, for errors found in the database. Attributes are serialised
    here, by orjson, for COPY to parse as jsonb (psycopg's Jsonb would use the much slower json module).
    """
    subscribers: dict[str, list] = {}
    memberships: dict[tuple[str, str], list] = {}
    for line, (row, lists) in parsed:
        email = row["email"]
        merged = subscribers.get(email)
        if merged is None:
            subscribers[email] = [email, line, row["uuid"], row["name"], row["attribs"], row["status"]]
        else:
            for index, name in ((3, "name"), (4, "attribs"), (5, "status")):
                if row[name] is not None:
                    merged[index] = row[name]
        for list_uuid, status in lists:
            membership = memberships.get((email, list_uuid))
            if membership is None:
                memberships[(email, list_uuid)] = [email, list_uuid, line, status]
            else:
                membership[3] = status
    fresh = iter(new_uuids(sum(merged[2] is None for merged in subscribers.values())))
    for merged in subscribers.values():
        if merged[2] is None:
            merged[2] = next(fresh)  # used only if the subscriber is new: an existing one keeps its own
        if merged[4] is not None:
            merged[4] = orjson.dumps(merged[4]).decode()
    return list(subscribers.values()), list(memberships.values())


def new_uuids(count: int) -> list[str]:
    """`count` random (version 4) UUIDs, as the 32 hex digits PostgreSQL reads as a uuid.

    Drawn from the OS in one call: gen_random_uuid() per row cost ~4 µs on PostgreSQL builds that read
    /dev/urandom for each one (a 100,000-line import: 0.4 s), and uuid.uuid4() as much in Python.
    """
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes(byte & 0x0F | 0x40 for byte in raw[6::16])  # version 4
    raw[8::16] = bytes(byte & 0x3F | 0x80 for byte in raw[8::16])  # RFC 4122 variant
    digits = raw.hex()
    return [digits[start:start + 32] for start in range(0, 32 * count, 32)]


async def _stage(conn: psycopg.AsyncConnection, subscribers: list[list], memberships: list[list]) -> None:
    await conn.execute(queries.CREATE_IMPORT_SUBSCRIBERS)
    await conn.execute(queries.CREATE_IMPORT_MEMBERSHIPS)
    async with conn.cursor() as cursor:
        for statement, rows in ((queries.COPY_IMPORT_SUBSCRIBERS, subscribers), (queries.COPY_IMPORT_MEMBERSHIPS, memberships)):
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
    with paused_gc():
        parsed = parse_lines(body, _subscriber, "subscribers")
        subscribers, memberships = _merge(parsed)
    async with request.app.state.db.transaction() as conn:
        await _stage(conn, subscribers, memberships)
        unknown = await (await conn.execute(queries.FIRST_UNKNOWN_IMPORT_LIST)).fetchone()
        if unknown is not None:
            raise ApiError(400, f"line {unknown['line']}: Unknown list: {unknown['list_uuid']}")
        await _store_staged(conn)
    return ok({"imported": len(parsed)})


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
