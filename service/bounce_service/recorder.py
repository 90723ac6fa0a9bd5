"""The one recorder every source feeds: store each bounce exactly once, then apply thresholds.

A call to `record` is one PostgreSQL transaction. The subscribers it touches are locked (in id order,
so concurrent batches cannot deadlock) before their bounces are counted, which serialises concurrent
events for one subscriber: the threshold fires once, however many replicas race. The caller is only
told "recorded" once the transaction has committed.
"""

from __future__ import annotations

import asyncio
import enum
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Awaitable, Iterable, Mapping, Sequence, TypeVar

import orjson
import psycopg
from psycopg.rows import tuple_row

from . import metrics, queries
from .config import ActionRule
from .db import Database
from .events import BounceEvent


A = TypeVar("A")
B = TypeVar("B")


class Outcome(str, enum.Enum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class FiredAction:
    subscriber_id: int
    bounce_id: int
    action: str


@dataclass(slots=True)
class RecordResult:
    outcomes: list[Outcome] = field(default_factory=list)
    bounce_ids: list[int | None] = field(default_factory=list)
    actions: list[FiredAction] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Named:
    """The addresses and (lower-case) subscriber UUIDs that a bulk import's events name, known before the
    events themselves: record_bulk locks those subscribers while it reads the events."""
    emails: frozenset[str]
    uuids: frozenset[str]

    @classmethod
    def of(cls, recipients: Iterable[tuple[str, str | None]]) -> "Named":
        """From (address, subscriber UUID) pairs, either one empty."""
        recipients = list(recipients)
        return cls(emails=frozenset(email for email, _ in recipients if email),
                   uuids=frozenset(uuid.lower() for _, uuid in recipients if uuid))

    @classmethod
    def by(cls, events: Iterable[BounceEvent]) -> "Named":
        return cls.of((event.email, event.subscriber_uuid) for event in events)

    def cover(self, events: Sequence[BounceEvent]) -> bool:
        named = Named.by(events)
        return named.emails <= self.emails and named.uuids <= self.uuids


class Recorder:
    def __init__(self, db: Database, actions: Mapping[str, ActionRule]) -> None:
        self.db = db
        self.actions = actions

    async def record(self, events: Sequence[BounceEvent]) -> RecordResult:
        """Store `events` atomically: all of them are committed when this returns, or none is."""
        return (await self.record_groups([events]))[0]

    async def record_groups(self, groups: Sequence[Sequence[BounceEvent]]) -> list[RecordResult]:
        """Store several requests' events in one transaction (group commit); one result per group."""
        events = [event for group in groups for event in group]
        if not events:
            return [RecordResult() for _ in groups]
        # Types whose action is "none" have no threshold step: a batch of only those is one statement.
        alone = all(self.actions[event.type].action == "none" for event in events)
        async with self.db.transaction(single_statement=alone) as conn:
            rows = orjson.dumps([self._row(index, event) for index, event in enumerate(events)]).decode()
            stored = await _stored(conn, queries.RECORD_BOUNCES, {"rows": rows})
            result = await self._apply(conn, events, stored)
        _count(events, result)
        return _split(result, [len(group) for group in groups])

    async def record_bulk(self, events: Iterable[BounceEvent], named: Named) -> RecordResult:
        """Store a bulk import's `events` in one transaction, exactly as `record` would.

        RECORD_BOUNCES takes its rows as one JSON document; an import's rows are COPYed straight into
        `bounces` instead (_copy_bounces), which is cheaper than building, sending and parsing that
        document and than staging the rows in a table of their own. The subscribers that `named` names
        are locked while `events` is read, in a thread: for 20,000 lines, the lock and the validation of
        all but each line's address take about as long. A bad line raises before anything is written.
        """
        async with self.db.transaction() as conn:
            subscribers, events = await _both(_lock_subscribers(conn, named), asyncio.to_thread(list, events))
            if not named.cover(events):
                raise RuntimeError("a bulk import's events name subscribers it did not lock")
            if not events:
                return RecordResult()
            stored = await _copy_bounces(conn, events, *subscribers)
            result = await self._apply(conn, events, stored)
        _count(events, result)
        return result

    async def _apply(self, conn: psycopg.AsyncConnection, events: Sequence[BounceEvent],
                     stored: dict[int, tuple[int, int | None]]) -> RecordResult:
        """The outcome of each event from what the store statement returned, then the thresholds."""
        result = RecordResult()
        # Newly stored bounces per (subscriber, type): only those can move a subscriber over a threshold.
        fresh: dict[tuple[int, str], list[int]] = defaultdict(list)
        for index, event in enumerate(events):
            bounce_id, subscriber_id = stored.get(index, (None, None))
            result.outcomes.append(Outcome.RECORDED if bounce_id is not None else Outcome.DUPLICATE)
            result.bounce_ids.append(bounce_id)
            if subscriber_id is not None:
                fresh[(subscriber_id, event.type)].append(bounce_id)

        # One type after another (in sorted order): a subscriber with bounces of two types in the batch sees
        # the first type's action before the second's, and one that was deleted is not acted on again.
        deleted: set[int] = set()
        for kind in sorted({kind for _, kind in fresh}):
            latest = {subscriber_id: ids[-1] for (subscriber_id, of), ids in fresh.items()
                      if of == kind and subscriber_id not in deleted}
            fired = await self._apply_threshold(conn, kind, latest)
            result.actions += fired
            if self.actions[kind].action == "delete":
                deleted.update(action.subscriber_id for action in fired)
        result.actions.sort(key=lambda action: action.bounce_id)
        return result

    @staticmethod
    def _row(index: int, event: BounceEvent) -> dict:
        """One input row of the store statement, its keys in the order of queries.BOUNCE_ROW_COLUMNS."""
        return {
            "i": index,
            "email": event.email,
            "subscriber_uuid": event.subscriber_uuid,
            "campaign_uuid": event.campaign_uuid,
            "type": event.type,
            "source": event.source,
            "meta": event.meta,
            "event_key": event.event_key,
            "created_at": event.created_at,
        }

    async def _apply_threshold(self, conn: psycopg.AsyncConnection, kind: str, latest: dict[int, int]) -> list[FiredAction]:
        """Act on the subscribers (of `latest`: subscriber id -> its newest bounce) over `kind`'s threshold.

        An action fires only where it changed something; the bounce that fired it is marked.
        """
        rule = self.actions[kind]
        if rule.action == "none" or not latest:
            return []
        subscriber_ids = sorted(latest)
        async with conn.cursor(row_factory=tuple_row) as cursor:
            await cursor.execute(queries.THRESHOLD_STEPS[rule.action], {
                "subscriber_ids": _bigint_array(subscriber_ids),
                "bounce_ids": _bigint_array([latest[subscriber_id] for subscriber_id in subscriber_ids]),
                "type": kind, "window": rule.window, "count": rule.count, "action": rule.action})
            return [FiredAction(subscriber_id=subscriber_id, bounce_id=latest[subscriber_id], action=rule.action)
                    for subscriber_id, in await cursor.fetchall()]


def _text_array(values: Iterable[str]) -> str:
    """The text of a `::text[]` (or `::uuid[]`) parameter, for the same reason as _bigint_array."""
    return "{" + ",".join('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' for value in values) + "}"


def _bigint_array(values: list[int]) -> str:
    """The text of a `::bigint[]` parameter. psycopg's list dumper takes ~1.5 µs an element, which for
    the 18,000 subscribers of a 20,000-line import was ~60 ms of one threshold step; joining takes 0.2 µs."""
    return "{" + ",".join(map(str, values)) + "}"


async def _stored(conn: psycopg.AsyncConnection, statement: str, params: dict | None = None) -> dict[int, tuple[int, int | None]]:
    """Input row -> (bounce id, subscriber id) of each row the store statement inserted.

    Plain tuples: a dict per returned row was a tenth of a large import's Python time.
    """
    async with conn.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute(statement, params)
        return {index: (bounce_id, subscriber_id) for index, bounce_id, subscriber_id in await cursor.fetchall()}


async def _lock_subscribers(conn: psycopg.AsyncConnection, named: Named) -> tuple[dict[str, tuple[int, str]], dict[str, int]]:
    """Lock the subscribers `named` names, in id order as RECORD_BOUNCES locks them; (by uuid: (id, address),
    by address: id) of those that exist."""
    async with conn.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute(queries.LOCK_IMPORT_SUBSCRIBERS, {"uuids": _text_array(named.uuids), "emails": _text_array(named.emails)})
        by_uuid: dict[str, tuple[int, str]] = {}
        by_email: dict[str, int] = {}
        for subscriber_id, uuid, email in await cursor.fetchall():
            by_uuid[uuid] = (subscriber_id, email)
            by_email[email] = subscriber_id
    return by_uuid, by_email


async def _copy_bounces(conn: psycopg.AsyncConnection, events: Sequence[BounceEvent], by_uuid: dict[str, tuple[int, str]],
                        by_email: dict[str, int]) -> dict[int, tuple[int, int | None]]:
    """_stored for a bulk import: the rows RECORD_BOUNCES would store, COPYed into `bounces`.

    RECORD_BOUNCES's rules, applied here (tests/service/test_recorder.py checks that both store the same
    rows), to the subscribers _lock_subscribers locked: a subscriber is found by UUID, else by address;
    rows go in in event_key order, the first of equal keys stored and a key already stored skipped; an
    unknown campaign is NULL; created_at defaults to the transaction's NOW().
    """
    async with conn.cursor(row_factory=tuple_row) as cursor:
        await cursor.execute(queries.IMPORT_DEFAULTS, {
            "count": len(events),
            "campaigns": _text_array({event.campaign_uuid.lower() for event in events if event.campaign_uuid})})
        now, ids, campaigns = await cursor.fetchone()
    # Python orders str by code point, which is the byte order of UTF-8: the "C" order of RECORD_BOUNCES.
    order = sorted(range(len(events)), key=lambda index: (events[index].event_key is None, events[index].event_key or "", index))
    keys = _text_array({event.event_key for event in events if event.event_key is not None})
    while True:
        async with conn.cursor(row_factory=tuple_row) as cursor:
            await cursor.execute(queries.KNOWN_EVENT_KEYS, {"keys": keys})
            taken = {key for key, in await cursor.fetchall()}
        stored: dict[int, tuple[int, int | None]] = {}
        try:
            async with conn.transaction(), conn.cursor() as cursor, cursor.copy(queries.COPY_BOUNCES) as copy:
                for index, bounce_id in zip(order, ids):
                    event = events[index]
                    if event.event_key is not None:
                        if event.event_key in taken:
                            continue
                        taken.add(event.event_key)
                    subscriber_id, address = _subscriber(event, by_uuid, by_email)
                    campaign_id = campaigns.get(event.campaign_uuid.lower()) if event.campaign_uuid else None
                    await copy.write_row((bounce_id, subscriber_id, address, campaign_id, event.type, event.source,
                                          orjson.dumps(event.meta).decode(), event.event_key, event.created_at or now))
                    stored[index] = (bounce_id, subscriber_id)
            return stored
        except psycopg.errors.UniqueViolation:
            pass  # another transaction stored one of the keys since they were looked up: look again


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both results, or the first one's error once both have finished: a query left running on the
    connection would meet the rollback of its transaction."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results[0], results[1]


def _subscriber(event: BounceEvent, by_uuid: dict[str, tuple[int, str]], by_email: dict[str, int]) -> tuple[int | None, str]:
    """(subscriber id, address) of a bounce: by UUID first, an unknown UUID falling back to the address;
    the event's address is kept, else the subscriber's."""
    if event.subscriber_uuid is not None and (found := by_uuid.get(event.subscriber_uuid.lower())):
        subscriber_id, email = found
        return subscriber_id, event.email or email
    return (by_email.get(event.email) if event.email else None), event.email


def _count(events: Sequence[BounceEvent], result: RecordResult) -> None:
    """Tallied first: a counter update takes a lock, and a 20,000-event import would take it 20,000 times."""
    tally = Counter((event.type, event.source, outcome) for event, outcome in zip(events, result.outcomes))
    for (kind, source, outcome), amount in tally.items():
        metrics.count_event(kind, source, outcome.value, amount)
    for action, amount in Counter(fired.action for fired in result.actions).items():
        metrics.ACTIONS_FIRED.labels(action=action).inc(amount)


def _split(result: RecordResult, sizes: list[int]) -> list[RecordResult]:
    """Cut one transaction's result back into the requests it served."""
    parts, start = [], 0
    for size in sizes:
        ids = result.bounce_ids[start:start + size]
        mine = set(filter(None, ids))
        parts.append(RecordResult(
            outcomes=result.outcomes[start:start + size],
            bounce_ids=ids,
            actions=[fired for fired in result.actions if fired.bounce_id in mine],
        ))
        start += size
    return parts
