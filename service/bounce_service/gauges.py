"""Metrics read from the database and the configuration: campaign bounce and complaint rates, and the
health of the configured bounce mailboxes.

They are computed from PostgreSQL, not from in-process counters, so every replica reports the same
numbers and what the scanner CronJobs did counts too: a scanner is a short-lived process Prometheus never
scrapes, and its `mailbox_scans` rows are how its work reaches /metrics. A scrape refreshes them at most
every `ttl` seconds (one query per family), campaigns are bounded by `recentCampaigns` and mailboxes by
the configuration, so cardinality is too.

`mailbox_scans` grows by a row per pass for ever, so its totals are kept in two parts: passes started
more than SETTLED ago (finished or dead by then: a pass never runs that long) are summed at most once an
hour, and every refresh adds only the recent ones, which the (mailbox, started_at) index finds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator, Mapping

import psycopg
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from . import queries
from .config import ServiceConfig
from .db import UNAVAILABLE, Database
from .durations import parse_duration

log = logging.getLogger(__name__)

SCAN_OUTCOMES = ("success", "partial", "error")  # exit status 0, 1 (some messages unreadable), 2
MESSAGE_OUTCOMES = ("fetched", "recorded", "skipped", "failed")  # the columns of a mailbox_scans row
SETTLED = timedelta(days=1)
_EARLIEST, _LATEST = datetime.min.replace(tzinfo=timezone.utc), datetime.max.replace(tzinfo=timezone.utc)


def _combine(old: Mapping[str, Any], recent: Mapping[str, Any]) -> dict[str, Any]:
    """One mailbox's totals over two disjoint sets of passes."""
    def pick(choose, key: str) -> Any:
        values = [row[key] for row in (old, recent) if row[key] is not None]
        return choose(values) if values else None

    return {"mailbox": recent["mailbox"], "first_started_at": pick(min, "first_started_at"),
            "last_success": pick(max, "last_success"),
            **{key: old[key] + recent[key] for key in SCAN_OUTCOMES + MESSAGE_OUTCOMES}}


@dataclass
class Snapshot:
    campaigns: list[dict] = field(default_factory=list)
    mailboxes: list[dict] = field(default_factory=list)
    database_up: bool = False


class DatabaseGauges(Collector):
    def __init__(self, db: Database, *, recent_campaigns: int, min_sent: int,
                 scan_intervals: Mapping[str, float], ttl: float = 10.0, settled_ttl: float = 3600.0) -> None:
        self.db = db
        self.recent_campaigns = recent_campaigns
        self.min_sent = min_sent
        self.scan_intervals = dict(scan_intervals)
        self.ttl = ttl
        self.settled_ttl = settled_ttl
        self.started_at = time.time()
        self.snapshot = Snapshot()
        self._taken_at = float("-inf")
        # The sums over settled passes: those started before _cutoff, taken at _settled_at (monotonic).
        self._settled: list[dict] = []
        self._cutoff = _EARLIEST
        self._settled_at = float("-inf")

    @classmethod
    def from_config(cls, db: Database, config: ServiceConfig) -> "DatabaseGauges":
        intervals = {m["name"]: parse_duration(m["scanInterval"]).total_seconds() for m in config.spec["mailboxes"]}
        return cls(db, recent_campaigns=config.recent_campaigns, min_sent=config.min_sent, scan_intervals=intervals)

    async def refresh(self) -> None:
        if time.monotonic() - self._taken_at < self.ttl:
            return
        try:
            async with self.db.transaction() as conn:
                params = {"limit": self.recent_campaigns, "min_sent": self.min_sent}
                campaigns = await (await conn.execute(queries.CAMPAIGN_RATES, params)).fetchall()
                if time.monotonic() - self._settled_at >= self.settled_ttl:
                    cutoff = datetime.now(timezone.utc) - SETTLED
                    self._settled = await self.scans(conn, since=_EARLIEST, before=cutoff)
                    self._cutoff, self._settled_at = cutoff, time.monotonic()
                recent = await self.scans(conn, since=self._cutoff, before=_LATEST)
                mailboxes = [_combine(old, new) for old, new in zip(self._settled, recent)]
        except psycopg.Error as exc:
            if not isinstance(exc, UNAVAILABLE):
                # Reached, but it refuses the gauges' queries (a lost privilege, a dropped table): /metrics
                # still answers, so the per-pod counters are not lost and no replica looks down.
                log.error("metrics refresh failed: %s (SQLSTATE %s)", type(exc).__name__, exc.sqlstate)
            self.snapshot = Snapshot(self.snapshot.campaigns, self.snapshot.mailboxes, database_up=False)
            return
        self.snapshot = Snapshot(campaigns, mailboxes, database_up=True)
        self._taken_at = time.monotonic()

    async def scans(self, conn: psycopg.AsyncConnection, *, since: datetime, before: datetime) -> list[dict]:
        """Each configured mailbox's totals over the passes started in [since, before)."""
        params = {"mailboxes": sorted(self.scan_intervals), "since": since, "before": before}
        return await (await conn.execute(queries.MAILBOX_SCANS, params)).fetchall()

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        snapshot = self.snapshot
        up = GaugeMetricFamily("bounce_database_up", "1 when the last gauge refresh reached the database.")
        up.add_metric([], 1.0 if snapshot.database_up else 0.0)
        yield up
        yield from self._campaigns(snapshot)
        yield from self._mailboxes(snapshot)

    def _campaigns(self, snapshot: Snapshot) -> Iterator[GaugeMetricFamily]:
        labels = ["campaign_uuid", "campaign"]
        sent = GaugeMetricFamily("bounce_campaign_sent", "Messages sent by a recent campaign (from the sending system).", labels=labels)
        bounces = GaugeMetricFamily("bounce_campaign_bounces", "Bounces recorded for a recent campaign, by type.", labels=labels + ["type"])
        bounce_rate = GaugeMetricFamily("bounce_campaign_bounce_rate",
                                        "Recipients with a hard or soft bounce / sent, for a recent campaign.", labels=labels)
        complaint_rate = GaugeMetricFamily("bounce_campaign_complaint_rate",
                                           "Recipients who complained / sent, for a recent campaign.", labels=labels)
        for row in snapshot.campaigns:
            key = [row["uuid"], row["name"]]
            sent.add_metric(key, row["sent"])
            for kind in ("hard", "soft", "complaint"):
                bounces.add_metric(key + [kind], row[kind])
            if row["sent"] > 0:
                bounce_rate.add_metric(key, row["bounced"] / row["sent"])
                complaint_rate.add_metric(key, row["complained"] / row["sent"])
        yield from (sent, bounces, bounce_rate, complaint_rate)

    def _mailboxes(self, snapshot: Snapshot) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        # From the configuration alone, so MailboxScanStale can compare even while the database is away.
        interval = GaugeMetricFamily("bounce_mailbox_scan_interval_seconds",
                                     "The configured scanInterval of a bounce mailbox.", labels=["mailbox"])
        for name, seconds in sorted(self.scan_intervals.items()):
            interval.add_metric([name], seconds)
        yield interval

        last = GaugeMetricFamily(
            "bounce_mailbox_last_success_timestamp_seconds",
            "When the last scan of a mailbox that finished without error ended (Unix time).",
            labels=["mailbox"],
        )
        watched = GaugeMetricFamily(
            "bounce_mailbox_watched_since_timestamp_seconds",
            "Since when a mailbox with no successful scan yet is waited for: its first scan's start, or this "
            "replica's start if earlier (a changed mailbox list restarts the service).",
            labels=["mailbox"],
        )
        scans = CounterMetricFamily("bounce_mailbox_scans", "Finished scanner passes of a mailbox, by outcome.",
                                    labels=["mailbox", "outcome"])
        messages = CounterMetricFamily(
            "bounce_mailbox_messages",
            "Mailbox messages by outcome over finished passes: fetched, skipped (not a bounce, too big), failed "
            "(unreadable, left in place); recorded counts the bounces newly stored from them.",
            labels=["mailbox", "outcome"],
        )
        for row in snapshot.mailboxes:
            name = row["mailbox"]
            if row["last_success"] is not None:
                last.add_metric([name], row["last_success"].timestamp())
            else:
                first = row["first_started_at"]
                watched.add_metric([name], min(first.timestamp(), self.started_at) if first else self.started_at)
            for outcome in SCAN_OUTCOMES:
                scans.add_metric([name, outcome], row[outcome])
            for outcome in MESSAGE_OUTCOMES:
                messages.add_metric([name, outcome], row[outcome])
        yield from (last, watched, scans, messages)
