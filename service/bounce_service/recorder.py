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

import psycopg
from psycopg.types.json import Jsonb

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
        async with self.db.transaction() as conn:
            result = await self._record(conn, events)
        for event, outcome in zip(events, result.outcomes):
            metrics.count_event(event.type, event.source, outcome.value)
        for fired in result.actions:
            metrics.ACTIONS_FIRED.labels(action=fired.action).inc()
        return _split(result, [len(group) for group in groups])

    async def _record(self, conn: psycopg.AsyncConnection, events: Sequence[BounceEvent]) -> RecordResult:
        subscribers = await self._lock_subscribers(conn, events)
        campaigns = await self._campaign_ids(conn, events)
        resolved = [self._match(subscribers, event) for event in events]
        # Inserting in event_key order means two concurrent transactions that share keys (a provider's
        # redelivery racing its original) wait on each other in the same order and cannot deadlock.
        order = sorted(range(len(events)), key=lambda i: (events[i].event_key is None, events[i].event_key or ""))
        params = [self._row(events[i], resolved[i], campaigns) for i in order]

        inserted: dict[int, int] = {}
        async with conn.cursor() as cur:
            await cur.executemany(queries.INSERT_BOUNCE, params, returning=True)
            for index in order:
                row = await cur.fetchone()
                if row is not None:
                    inserted[index] = row["id"]
                cur.nextset()

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
    def _row(event: BounceEvent, subscriber: dict | None, campaigns: dict[str, int]) -> tuple:
        return (
            subscriber["id"] if subscriber else None,
            event.email or (subscriber["email"] if subscriber else ""),
            campaigns.get(event.campaign_uuid.lower()) if event.campaign_uuid else None,
            event.type,
            event.source,
            Jsonb(event.meta),
            event.event_key,
            event.created_at,
        )

    async def _lock_subscribers(self, conn: psycopg.AsyncConnection, events: Sequence[BounceEvent]) -> list[dict]:
        uuids = sorted({e.subscriber_uuid.lower() for e in events if e.subscriber_uuid})
        emails = sorted({e.email for e in events if e.email})
        cursor = await conn.execute(queries.LOCK_SUBSCRIBERS, {"uuids": uuids, "emails": emails})
        return await cursor.fetchall()

    async def _campaign_ids(self, conn: psycopg.AsyncConnection, events: Sequence[BounceEvent]) -> dict[str, int]:
        uuids = sorted({e.campaign_uuid.lower() for e in events if e.campaign_uuid})
        if not uuids:
            return {}
        cursor = await conn.execute(queries.FIND_CAMPAIGNS, {"uuids": uuids})
        return {row["uuid"]: row["id"] for row in await cursor.fetchall()}

    @staticmethod
    def _match(subscribers: list[dict], event: BounceEvent) -> dict | None:
        """By UUID first; an unknown UUID falls back to the address rather than losing the subscriber."""
        if event.subscriber_uuid:
            wanted = event.subscriber_uuid.lower()
            for subscriber in subscribers:
                if subscriber["uuid"] == wanted:
                    return subscriber
        if event.email:
            for subscriber in subscribers:
                if subscriber["email"] == event.email:
                    return subscriber
        return None

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
        if rule.action == "unsubscribe":
            changed = (await conn.execute(queries.UNSUBSCRIBE_ALL_LISTS, ids)).rowcount > 0
        elif rule.action == "blocklist":
            blocked = (await conn.execute(queries.BLOCKLIST_SUBSCRIBER, ids)).rowcount > 0
            unsubscribed = (await conn.execute(queries.UNSUBSCRIBE_ALL_LISTS, ids)).rowcount > 0
            changed = blocked or unsubscribed
        else:  # delete
            changed = (await conn.execute(queries.DELETE_SUBSCRIBER, ids)).rowcount > 0
        if not changed:
            return None
        await conn.execute(queries.MARK_ACTION, {"action": rule.action, "bounce_id": bounce_id})
        return FiredAction(subscriber_id=subscriber_id, bounce_id=bounce_id, action=rule.action)


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
