"""Gauges read from the database: campaign bounce and complaint rates, and mailbox scan freshness.

They are computed from PostgreSQL, not from in-process counters, so every replica reports the same
numbers and bounces recorded by the scanner CronJobs count too. A scrape refreshes them at most every
`ttl` seconds (one cheap query), and the number of campaigns is bounded, so cardinality is too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import queries
from .db import UNAVAILABLE, Database


@dataclass
class Snapshot:
    campaigns: list[dict] = field(default_factory=list)
    mailboxes: list[dict] = field(default_factory=list)
    database_up: bool = False


class DatabaseGauges(Collector):
    def __init__(self, db: Database, *, recent_campaigns: int, min_sent: int, ttl: float = 10.0) -> None:
        self.db = db
        self.recent_campaigns = recent_campaigns
        self.min_sent = min_sent
        self.ttl = ttl
        self.snapshot = Snapshot()
        self._taken_at = float("-inf")

    async def refresh(self) -> None:
        if time.monotonic() - self._taken_at < self.ttl:
            return
        try:
            async with self.db.transaction() as conn:
                params = {"limit": self.recent_campaigns, "min_sent": self.min_sent}
                campaigns = await (await conn.execute(queries.CAMPAIGN_RATES, params)).fetchall()
                mailboxes = await (await conn.execute(queries.MAILBOX_LAST_SCANS)).fetchall()
        except UNAVAILABLE:
            self.snapshot = Snapshot(self.snapshot.campaigns, self.snapshot.mailboxes, database_up=False)
            return
        self.snapshot = Snapshot(campaigns, mailboxes, database_up=True)
        self._taken_at = time.monotonic()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snapshot = self.snapshot
        up = GaugeMetricFamily("bounce_database_up", "1 when the last gauge refresh reached the database.")
        up.add_metric([], 1.0 if snapshot.database_up else 0.0)
        yield up

        labels = ["campaign_uuid", "campaign"]
        sent = GaugeMetricFamily("bounce_campaign_sent", "Messages sent by a recent campaign (from the sending system).", labels=labels)
        bounces = GaugeMetricFamily("bounce_campaign_bounces", "Bounces recorded for a recent campaign, by type.", labels=labels + ["type"])
        bounce_rate = GaugeMetricFamily("bounce_campaign_bounce_rate", "(hard + soft bounces) / sent for a recent campaign.", labels=labels)
        complaint_rate = GaugeMetricFamily("bounce_campaign_complaint_rate", "Complaints / sent for a recent campaign.", labels=labels)
        for row in snapshot.campaigns:
            key = [row["uuid"], row["name"]]
            sent.add_metric(key, row["sent"])
            for kind in ("hard", "soft", "complaint"):
                bounces.add_metric(key + [kind], row[kind])
            if row["sent"] > 0:
                bounce_rate.add_metric(key, (row["hard"] + row["soft"]) / row["sent"])
                complaint_rate.add_metric(key, row["complaint"] / row["sent"])
        yield from (sent, bounces, bounce_rate, complaint_rate)

        last = GaugeMetricFamily(
            "bounce_mailbox_last_success_timestamp_seconds",
            "When the last scan of a mailbox that finished without error ended (Unix time).",
            labels=["mailbox"],
        )
        for row in snapshot.mailboxes:
            last.add_metric([row["mailbox"]], row["finished_at"].timestamp())
        yield last
