"""Gauges come from the database and the configuration: every replica reports the same, scanner work
counts, a removed mailbox leaves the metrics, and a scrape within the cache's lifetime reads nothing."""

from __future__ import annotations

import re
from datetime import datetime
from typing import AsyncIterator

import pytest

from bounce_service.db import Database
from bounce_service.gauges import DatabaseGauges
from bounce_service.metrics import exposition
from tests.conftest import auth

SPRING = "33333333-3333-4333-8333-333333333333"
TINY = "44444444-4444-4444-8444-444444444444"


def gauge(text: str, name: str, **labels: str) -> float | None:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and ",".join(sorted(match.group(1).split(","))) == wanted:
            return float(match.group(2))
    return None


def mailbox(name: str, interval: str) -> dict:
    return {"name": name, "host": "pop.example.com", "auth": "none", "scanInterval": interval}


def scan(db, name: str, started: str, finished: str | None, error: str | None = None, **counts: int) -> None:
    db.execute("INSERT INTO mailbox_scans (mailbox, started_at, finished_at, error, fetched, recorded, skipped, failed)"
               " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
               (name, started, finished, error, *(counts.get(k, 0) for k in ("fetched", "recorded", "skipped", "failed"))))


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_two_replicas_report_the_same_rates_including_scanner_bounces(make_client, db):
    metrics = {"metrics": {"recentCampaigns": 5, "minSent": 100}}
    first, second = await make_client(service=metrics), await make_client(service=metrics)
    await first.post("/api/campaigns", json={"uuid": SPRING, "name": "Spring", "sent": 1000}, auth=auth())
    await first.post("/api/campaigns", json={"uuid": TINY, "name": "Tiny", "sent": 10}, auth=auth())
    for index in range(30):
        kind = "hard" if index < 20 else "soft"
        replica = first if index % 2 else second
        response = await replica.post("/webhooks/bounce", auth=auth("poster"), json={
            "email": f"r{index}@example.com", "type": kind, "source": "ses", "campaign_uuid": SPRING})
        assert response.status_code == 200
    await first.post("/webhooks/bounce", auth=auth("poster"), json={
        "email": "angry@example.com", "type": "complaint", "source": "fbl", "campaign_uuid": SPRING})
    # A bounce the mailbox scanner (another process) recorded, after two delay notices for the same recipient:
    # three bounces, one bounced recipient.
    for kind in ("soft", "soft", "hard"):
        db.execute("INSERT INTO bounces (email, type, source, campaign_id) SELECT 'dsn@example.com', %s, 'mailbox', id"
                   " FROM campaigns WHERE uuid = %s", (kind, SPRING))

    texts = [(await client.get("/metrics")).text for client in (first, second)]
    for text in texts:
        spring = {"campaign_uuid": SPRING, "campaign": "Spring"}
        assert gauge(text, "bounce_campaign_sent", **spring) == 1000
        assert gauge(text, "bounce_campaign_bounces", type="hard", **spring) == 21
        assert gauge(text, "bounce_campaign_bounces", type="soft", **spring) == 12
        assert gauge(text, "bounce_campaign_bounce_rate", **spring) == 0.031  # 31 recipients of 1,000
        assert gauge(text, "bounce_campaign_complaint_rate", **spring) == 0.001
        assert gauge(text, "bounce_campaign_sent", campaign_uuid=TINY, campaign="Tiny") is None  # below minSent
        assert "bounce_database_up 1.0" in text


async def test_campaign_gauges_are_bounded(make_client, db):
    client = await make_client(service={"metrics": {"recentCampaigns": 3, "minSent": 0}})
    for index in range(6):
        uuid = f"55555555-5555-4555-8555-{index:012d}"
        await client.post("/api/campaigns", json={"uuid": uuid, "name": f"C{index}", "sent": 50}, auth=auth())
    text = (await client.get("/metrics")).text
    assert len(re.findall(r"^bounce_campaign_sent\{", text, re.M)) == 3


async def test_mailbox_metrics_come_from_the_scanners_rows_for_configured_mailboxes_only(make_client, db):
    scan(db, "returns", "2026-11-01T10:00:00Z", "2026-11-01T10:00:05Z", fetched=4, recorded=3, skipped=1)
    scan(db, "returns", "2026-11-01T10:15:00Z", "2026-11-01T10:15:09Z", fetched=5, recorded=2, skipped=1, failed=2)
    scan(db, "returns", "2026-11-01T10:30:00Z", "2026-11-01T10:30:01Z", error="login refused")
    scan(db, "returns", "2026-11-01T10:45:00Z", None, fetched=7, recorded=7)  # still running: not counted yet
    scan(db, "fbl", "2026-11-01T09:00:00Z", "2026-11-01T09:00:02Z", error="connection refused")
    scan(db, "removed", "2026-11-01T10:00:00Z", "2026-11-01T10:00:01Z", fetched=1, recorded=1)
    client = await make_client(mailboxes=[mailbox("returns", "15m"), mailbox("fbl", "1h"), mailbox("new", "5m")])
    text = (await client.get("/metrics")).text

    intervals = {name: gauge(text, "bounce_mailbox_scan_interval_seconds", mailbox=name) for name in ("returns", "fbl", "new")}
    assert intervals == {"returns": 900, "fbl": 3600, "new": 300}
    # A partial pass (some messages unreadable) finished without error: it is the last success.
    assert gauge(text, "bounce_mailbox_last_success_timestamp_seconds", mailbox="returns") == ts("2026-11-01T10:15:09Z")
    scans = {o: gauge(text, "bounce_mailbox_scans_total", mailbox="returns", outcome=o) for o in ("success", "partial", "error")}
    assert scans == {"success": 1, "partial": 1, "error": 1}
    messages = {o: gauge(text, "bounce_mailbox_messages_total", mailbox="returns", outcome=o)
                for o in ("fetched", "recorded", "skipped", "failed")}
    assert messages == {"fetched": 9, "recorded": 5, "skipped": 2, "failed": 2}
    # Never a success: waited for since its first attempt (fbl), or since this replica started (new).
    assert gauge(text, "bounce_mailbox_last_success_timestamp_seconds", mailbox="fbl") is None
    assert gauge(text, "bounce_mailbox_watched_since_timestamp_seconds", mailbox="fbl") == ts("2026-11-01T09:00:00Z")
    assert gauge(text, "bounce_mailbox_watched_since_timestamp_seconds", mailbox="new") == client.app.state.gauges.started_at
    assert gauge(text, "bounce_mailbox_scans_total", mailbox="new", outcome="error") == 0
    assert gauge(text, "bounce_mailbox_watched_since_timestamp_seconds", mailbox="returns") is None
    assert 'mailbox="removed"' not in text


async def test_the_interval_is_exported_while_the_database_is_away(make_config, db):
    """From the configuration alone: MailboxScanStale keeps its threshold through an outage."""
    config = make_config(mailboxes=[mailbox("returns", "15m")])
    gauges = DatabaseGauges.from_config(Database("postgresql://nobody@127.0.0.1:1/none", timeout=0.5), config)
    await gauges.refresh()
    text = exposition(gauges)[0].decode()
    assert "bounce_database_up 0.0" in text
    assert gauge(text, "bounce_mailbox_scan_interval_seconds", mailbox="returns") == 900


async def test_a_database_that_refuses_the_gauges_queries_leaves_metrics_answering(make_client, db, caplog):
    """Reached but refusing (a privilege revoked, a table gone): a 500 would read as a replica down and
    lose every per-pod counter of the scrape."""
    client = await make_client()
    db.execute("ALTER TABLE campaigns RENAME TO campaigns_away")
    try:
        response = await client.get("/metrics")
        assert response.status_code == 200
        assert "bounce_database_up 0.0" in response.text and "bounce_events_total" in response.text
        assert "metrics refresh failed: UndefinedTable (SQLSTATE 42P01)" in caplog.text
    finally:
        db.execute("ALTER TABLE campaigns_away RENAME TO campaigns")


async def refreshed(gauges: DatabaseGauges) -> dict[str, float | None]:
    await gauges.refresh()
    text = exposition(gauges)[0].decode()
    return {o: gauge(text, "bounce_mailbox_scans_total", mailbox="returns", outcome=o) for o in ("success", "error")}


@pytest.fixture
async def returns_gauges(make_config, database_url, db) -> AsyncIterator[DatabaseGauges]:
    """The gauges of a service with one mailbox, `returns`, on the test database."""
    database = Database(database_url)
    await database.open()
    yield DatabaseGauges.from_config(database, make_config(mailboxes=[mailbox("returns", "15m")]))
    await database.close()


async def test_a_scrape_within_the_ttl_reads_nothing(returns_gauges, db):
    returns_gauges.ttl = 3600
    assert await refreshed(returns_gauges) == {"success": 0, "error": 0}
    scan(db, "returns", "now", "now")
    assert await refreshed(returns_gauges) == {"success": 0, "error": 0}
    returns_gauges.ttl = 0
    assert await refreshed(returns_gauges) == {"success": 1, "error": 0}


async def test_settled_passes_are_summed_once_an_hour_and_recent_ones_at_every_refresh(returns_gauges, db):
    """A year of passes is not re-read every 10 s: only those of the last day are. The totals stay exact."""
    scan(db, "returns", "2026-01-01T10:00:00Z", "2026-01-01T10:00:05Z")
    returns_gauges.ttl = 0
    assert await refreshed(returns_gauges) == {"success": 1, "error": 0}
    scan(db, "returns", "now", "now", error="login refused")  # recent: counted at the next refresh
    scan(db, "returns", "2026-01-02T10:00:00Z", "2026-01-02T10:00:05Z")  # settled: at the next hourly sum
    assert await refreshed(returns_gauges) == {"success": 1, "error": 1}
    returns_gauges.settled_ttl = 0
    assert await refreshed(returns_gauges) == {"success": 2, "error": 1}
    assert await refreshed(returns_gauges) == {"success": 2, "error": 1}  # nothing counted twice
