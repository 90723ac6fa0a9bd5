"""The one recorder every source feeds: store each bounce exactly once, then apply thresholds.

A call to `record` is one PostgreSQL transaction. The subscribers it touches are locked (in id order,
so concurrent batches cannot deadlock) before their bounces are counted, which serialises concurrent
events for one subscriber: the threshold fires once, however many replicas race. The caller is only
told "recorded" once the transaction has committed.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import orjson
import psycopg

from . import metrics, queries
from .config import ActionRule
from .db import Database
from .events import BounceEvent


# What each threshold action changes; it counts as fired when any of its statements changed a row.
ACTION_STATEMENTS = {
    "unsubscribe": (queries.UNSUBSCRIBE_ALL_LISTS,),
    "blocklist": (queries.BLOCKLIST_SUBSCRIBER, queries.UNSUBSCRIBE_ALL_LISTS),
    "delete": (queries.DELETE_SUBSCRIBER,),
}


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
        async with self.db.transaction(pipeline=True) as conn:
            result = await self._record(conn, events)
        for event, outcome in zip(events, result.outcomes):
            metrics.count_event(event.type, event.source, outcome.value)
        for fired in result.actions:
            metrics.ACTIONS_FIRED.labels(action=fired.action).inc()
        return _split(result, [len(group) for group in groups])

    async def _record(self, conn: psycopg.AsyncConnection, events: Sequence[BounceEvent]) -> RecordResult:
        subscribers = _Subscribers(await self._lock_subscribers(conn, events))
        resolved = [subscribers.match(event) for event in events]
        rows = [self._row(index, event, subscriber)
                for index, (event, subscriber) in enumerate(zip(events, resolved))]
        cursor = await conn.execute(queries.INSERT_BOUNCES, {"rows": orjson.dumps(rows).decode()})
        inserted = {row["i"]: row["id"] for row in await cursor.fetchall()}

        result = RecordResult()
        # Newly stored bounces per (subscriber, type): only those can move a subscriber over a threshold.
        fresh: dict[tuple[int, str], list[int]] = defaultdict(list)
        for index, (event, subscriber) in enumerate(zip(events, resolved)):
            bounce_id = inserted.get(index)
            result.outcomes.append(Outcome.RECORDED if bounce_id is not None else Outcome.DUPLICATE)
            result.bounce_ids.append(bounce_id)
            if bounce_id is not None and subscriber is not None:
                fresh[(subscriber["id"], event.type)].append(bounce_id)

        deleted: set[int] = set()
        for (subscriber_id, kind), bounce_ids in sorted(fresh.items()):
            if subscriber_id in deleted:
                continue
            fired = await self._apply_threshold(conn, subscriber_id, kind, bounce_ids[-1])
            if fired is not None:
                result.actions.append(fired)
                if fired.action == "delete":
                    deleted.add(subscriber_id)
        return result

    @staticmethod
    def _row(index: int, event: BounceEvent, subscriber: dict | None) -> dict:
        """One row of INSERT_BOUNCES's JSON input."""
        return {
            "i": index,
            "subscriber_id": subscriber["id"] if subscriber else None,
            "email": event.email or (subscriber["email"] if subscriber else ""),
            "campaign_uuid": event.campaign_uuid,
            "type": event.type,
            "source": event.source,
            "meta": event.meta,
            "event_key": event.event_key,
            "created_at": event.created_at,
        }

    async def _lock_subscribers(self, conn: psycopg.AsyncConnection, events: Sequence[BounceEvent]) -> list[dict]:
        uuids = sorted({e.subscriber_uuid.lower() for e in events if e.subscriber_uuid})
        emails = sorted({e.email for e in events if e.email})
        cursor = await conn.execute(queries.LOCK_SUBSCRIBERS, {"uuids": uuids, "emails": emails})
        return await cursor.fetchall()

    async def _apply_threshold(
        self, conn: psycopg.AsyncConnection, subscriber_id: int, kind: str, bounce_id: int
    ) -> FiredAction | None:
        rule = self.actions[kind]
        if rule.action == "none":
            return None
        cursor = await conn.execute(
            queries.COUNT_BOUNCES, {"subscriber_id": subscriber_id, "type": kind, "window": rule.window}
        )
        if (await cursor.fetchone())["n"] < rule.count:
            return None
        ids = {"subscriber_id": subscriber_id}
        async with conn.pipeline():  # leaving the block syncs: the statements' row counts are known after it
            cursors = [await conn.execute(statement, ids) for statement in ACTION_STATEMENTS[rule.action]]
        changed = any(cursor.rowcount > 0 for cursor in cursors)
        if not changed:
            return None
        await conn.execute(queries.MARK_ACTION, {"action": rule.action, "bounce_id": bounce_id})
        return FiredAction(subscriber_id=subscriber_id, bounce_id=bounce_id, action=rule.action)


class _Subscribers:
    """The locked subscribers of a batch, found by UUID first; an unknown UUID falls back to the address."""

    def __init__(self, rows: list[dict]) -> None:
        self.by_uuid = {row["uuid"]: row for row in rows}
        self.by_email = {row["email"]: row for row in rows}

    def match(self, event: BounceEvent) -> dict | None:
        found = self.by_uuid.get(event.subscriber_uuid.lower()) if event.subscriber_uuid else None
        if found is None and event.email:
            found = self.by_email.get(event.email)
        return found


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
