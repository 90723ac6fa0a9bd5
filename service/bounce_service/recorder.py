"""The one recorder every source feeds: store each bounce exactly once, then apply thresholds.

A call to `record` is one PostgreSQL transaction. The subscribers it touches are locked (in id order,
so concurrent batches cannot deadlock) before their bounces are counted, which serialises concurrent
events for one subscriber: the threshold fires once, however many replicas race. The caller is only
told "recorded" once the transaction has committed.
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import orjson
import psycopg
from psycopg.rows import tuple_row

from . import metrics, queries
from .config import ActionRule
from .db import Database
from .events import BounceEvent


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

    async def record_bulk(self, events: Iterable[BounceEvent]) -> RecordResult:
        """Store a bulk import's `events` in one transaction, exactly as `record` would.

        The rows reach PostgreSQL by COPY into a temporary table, which RECORD_STAGED_BOUNCES reads in
        place of RECORD_BOUNCES's JSON document: the same keys, matching, locks and thresholds, without
        building and parsing one JSON document of the whole import. Each event is sent as soon as
        `events` yields it, so that PostgreSQL takes in rows while the caller parses the next; an error
        raised by `events` rolls everything back. Rows with distinct keys are first tried with a plain
        INSERT (queries.INSERT_STAGED_BOUNCES), in a savepoint.
        """
        received: list[BounceEvent] = []
        async with self.db.transaction() as conn:
            await conn.execute(queries.CREATE_IMPORT_BOUNCES)
            async with conn.cursor() as cursor, cursor.copy(queries.COPY_IMPORT_BOUNCES) as copy:
                for index, event in enumerate(events):
                    received.append(event)
                    row = self._row(index, event)
                    row["meta"] = orjson.dumps(event.meta).decode()  # COPY takes jsonb as its text
                    await copy.write_row(tuple(row.values()))
            if not received:
                return RecordResult()
            stored = await _stored_staged(conn, received)
            result = await self._apply(conn, received, stored)
        _count(received, result)
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


async def _stored_staged(conn: psycopg.AsyncConnection, events: Sequence[BounceEvent]) -> dict[int, tuple[int, int | None]]:
    """_stored for a staged import: by a plain insert when no two events share a key, else with ON CONFLICT."""
    keys = [event.event_key for event in events if event.event_key is not None]
    if len(set(keys)) == len(keys):
        try:
            async with conn.transaction():
                return await _stored(conn, queries.INSERT_STAGED_BOUNCES)
        except psycopg.errors.UniqueViolation:
            pass  # another transaction stored one of the keys since the statement's snapshot
    return await _stored(conn, queries.RECORD_STAGED_BOUNCES)


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
