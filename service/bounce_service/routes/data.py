"""Upserts for what the service needs from the sending system: subscribers, lists, campaigns.

They let the service work beside any sending system: it learns who the subscribers are (and their
lists, for the unsubscribe action) and how many messages each campaign sent (for bounce rates).
"""

from __future__ import annotations

import os
from itertools import chain, islice
from typing import Any, Iterable, Iterator, Sequence

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
        # Left out: a new membership is confirmed, an existing one keeps its status, so re-sending the same
        # subscriber never re-confirms the lists a bounce unsubscribed.
        list_status = entry.get("status")
        if list_status is not None and list_status not in SUBSCRIPTION_STATUSES:
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


# The first addresses of an import that are looked up before it chooses how to store them (_import).
PROBE_ADDRESSES = 100


class _ImportLines:
    """An import's lines, validated as they are read, with what they say about each address folded.

    `first_lines` yields each address's first line as soon as it is parsed, so that PostgreSQL takes in
    each row while Python parses the next (BENCHMARKS.md: 100,000 lines parsed and staged in 1.7 s,
    against 2.2–2.4 s when all were parsed first). Later lines of an address, rare in practice, are
    folded into one (each field's last given value), and so are the memberships. It ends where
    upserting the lines one by one would: the first line's uuid, each field's last given value, and
    each row keeps the first line that named it, for errors found in the database. Attributes are
    serialised by orjson for COPY to parse as jsonb (psycopg's Jsonb would use the much slower json module).
    """

    def __init__(self, body: bytes) -> None:
        self._parsed = parse_lines(body, _subscriber, "subscribers")
        # Subscribers the body can name at most: one per line, cut where parse_lines cuts (\n, \r, \r\n).
        self.most = body.count(b"\n") + body.count(b"\r") - body.count(b"\r\n") + 1
        self._uuids = random_uuids()  # used only if the subscriber is new: an existing one keeps its own
        self._seen: set[str] = set()
        self.count = 0
        self.later: dict[str, list] = {}  # address -> [address, line, name, attribs, status] of its later lines
        self.memberships: dict[tuple[str, str], list] = {}  # -> [address, list uuid, line, status]

    def first_lines(self) -> Iterator[tuple]:
        """(address, line, uuid, name, attribs, status) of each address's first line, in line order."""
        for line, (email, uuid, name, attribs, status, lists) in self._parsed:
            self.count += 1
            if attribs is not None:
                attribs = orjson.dumps(attribs).decode()
            for list_uuid, list_status in lists:
                membership = self.memberships.get((email, list_uuid))
                if membership is None:
                    self.memberships[(email, list_uuid)] = [email, list_uuid, line, list_status]
                elif list_status is not None:
                    membership[3] = list_status
            if email in self._seen:
                folded = self.later.setdefault(email, [email, line, None, None, None])
                for index, value in ((2, name), (3, attribs), (4, status)):
                    if value is not None:
                        folded[index] = value
                continue
            self._seen.add(email)
            yield email, line, uuid or next(self._uuids), name, attribs, status

    def later_lines(self) -> Iterator[tuple]:
        """Rows of queries.COPY_IMPORT_LATER_LINES."""
        return ((email, name, attribs, status) for email, _, name, attribs, status in self.later.values())

    def later_lines_staged(self) -> Iterator[tuple]:
        """The later lines as rows of queries.COPY_IMPORT_SUBSCRIBERS, for UPDATE_IMPORTED_SUBSCRIBERS
        to apply to the subscribers that the first lines created."""
        return ((email, line, next(self._uuids), name, attribs, status)
                for email, line, name, attribs, status in self.later.values())


async def _import(conn: psycopg.AsyncConnection, body: bytes) -> int:
    """Validate and store the body's lines, in the transaction of `conn`; the line count.

    Where none of the first PROBE_ADDRESSES addresses exists (a first import, or new subscribers), the
    subscribers and their memberships are copied straight into their tables (_copy_new), which saves
    staging them and then finding out in the database which are new (BENCHMARKS.md). If one of them
    exists after all, or a uuid is taken, that copy is undone and every line is staged, as it is from
    the start for a file of known addresses; the staged statements then sort out, in the database,
    which subscriber to update and which to add (_store_staged).
    """
    lines = _ImportLines(body)
    first_lines = lines.first_lines()
    probe = list(islice(first_lines, PROBE_ADDRESSES))
    await conn.execute(queries.CREATE_IMPORT_SUBSCRIBERS)
    async with conn.cursor() as cursor:
        if not await _any_known(conn, probe):
            if await _copy_new(conn, cursor, lines, chain(probe, first_lines)):
                return lines.count
            # That copy was undone: the body is read again, rather than every row kept for this rare case.
            lines = _ImportLines(body)
            first_lines, probe = lines.first_lines(), []
        await _copy(cursor, queries.COPY_IMPORT_SUBSCRIBERS, chain(probe, first_lines))
        if lines.later:
            await conn.execute(queries.CREATE_IMPORT_LATER_LINES)
            await _copy(cursor, queries.COPY_IMPORT_LATER_LINES, lines.later_lines())
            await conn.execute(queries.FOLD_IMPORT_LATER_LINES)
        await conn.execute(queries.CREATE_IMPORT_MEMBERSHIPS)
        await _copy(cursor, queries.COPY_IMPORT_MEMBERSHIPS, lines.memberships.values())
    unknown = await (await conn.execute(queries.FIRST_UNKNOWN_IMPORT_LIST)).fetchone()
    if unknown is not None:
        raise _unknown_list(unknown["line"], unknown["list_uuid"])
    await _store_staged(conn)
    return lines.count


def _unknown_list(line: int, list_uuid: str) -> ApiError:
    return ApiError(400, f"line {line}: Unknown list: {list_uuid}")


async def _any_known(conn: psycopg.AsyncConnection, rows: list[tuple]) -> bool:
    emails = [email for email, *_ in rows]
    return (await (await conn.execute(queries.ANY_ADDRESS_KNOWN, {"emails": emails})).fetchone())["known"]


async def _copy_new(conn: psycopg.AsyncConnection, cursor: psycopg.AsyncCursor, lines: _ImportLines,
                    first_lines: Iterable[tuple]) -> bool:
    """COPY new subscribers, then their memberships, straight into their tables; False, with nothing
    written, if an address or a uuid is taken (a savepoint undoes the subscribers copied so far).

    Their ids are drawn first, one per line of the body (a few go unused), so that the memberships
    can name them without looking each address up again.
    """
    drawn = await (await conn.execute(queries.DRAW_SUBSCRIBER_IDS, {"count": lines.most})).fetchone()
    ids = iter(drawn["ids"])
    id_of: dict[str, int] = {}
    try:
        async with conn.transaction(), cursor.copy(queries.COPY_NEW_SUBSCRIBERS) as copy:
            for email, _, uuid, name, attribs, status in first_lines:
                id_of[email] = subscriber_id = next(ids)
                # The subscribers table's defaults, which COPY cannot leave to it row by row.
                await copy.write_row((subscriber_id, uuid, email, "" if name is None else name,
                                      "{}" if attribs is None else attribs, status or "enabled"))
    except psycopg.errors.UniqueViolation:
        return False
    list_ids = await _list_ids(conn, lines.memberships)
    await _copy(cursor, queries.COPY_NEW_MEMBERSHIPS, ((id_of[email], list_ids[list_uuid], status or "confirmed")
                                                       for email, list_uuid, _, status in lines.memberships.values()))
    if lines.later:
        await _copy(cursor, queries.COPY_IMPORT_SUBSCRIBERS, lines.later_lines_staged())
        await conn.execute(queries.UPDATE_IMPORTED_SUBSCRIBERS)
    return True


async def _list_ids(conn: psycopg.AsyncConnection, memberships: dict[tuple[str, str], list]) -> dict[str, int]:
    """The id of each list the memberships name; an unknown one is refused, with the first line naming it."""
    uuids = sorted({list_uuid for _, list_uuid in memberships})
    rows = await (await conn.execute(queries.LIST_IDS, {"uuids": uuids})).fetchall()
    found = {row["uuid"]: row["id"] for row in rows}
    unknown = [(line, list_uuid) for _, list_uuid, line, _ in memberships.values() if list_uuid not in found]
    if unknown:
        raise _unknown_list(*min(unknown))
    return found


async def _copy(cursor: psycopg.AsyncCursor, statement: str, rows: Iterable[Sequence]) -> None:
    async with cursor.copy(statement) as copy:
        for row in rows:
            await copy.write_row(row)


@requires("subscribers:manage")
async def import_subscribers(request: Request) -> Response:
    """NDJSON, one subscriber per line; all lines are imported or none, and an error names its line.

    The rows go in with COPY and a few statements (_import), which is what makes a bulk import tens of
    times faster than a statement (and a round trip) per line.
    """
    body = await request.body()
    async with request.app.state.db.transaction() as conn:
        with paused_gc():
            count = await _import(conn, body)
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
