"""Bounce-rate gauges come from the database: every replica reports the same, scanner bounces count."""

from __future__ import annotations

import re
from datetime import datetime, timezone

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
    # A bounce the mailbox scanner (another process) recorded, and its scan.
    db.execute("INSERT INTO bounces (email, type, source, campaign_id) SELECT 'dsn@example.com', 'hard', 'mailbox', id"
               " FROM campaigns WHERE uuid = %s", (SPRING,))
    db.execute("INSERT INTO mailbox_scans (mailbox, started_at, finished_at, fetched, recorded)"
               " VALUES ('bounces', '2026-11-01T10:00:00Z', '2026-11-01T10:00:05Z', 1, 1)")

    texts = [(await client.get("/metrics")).text for client in (first, second)]
    for text in texts:
        spring = {"campaign_uuid": SPRING, "campaign": "Spring"}
        assert gauge(text, "bounce_campaign_sent", **spring) == 1000
        assert gauge(text, "bounce_campaign_bounces", type="hard", **spring) == 21
        assert gauge(text, "bounce_campaign_bounces", type="soft", **spring) == 10
        assert gauge(text, "bounce_campaign_bounce_rate", **spring) == 0.031
        assert gauge(text, "bounce_campaign_complaint_rate", **spring) == 0.001
        assert gauge(text, "bounce_campaign_sent", campaign_uuid=TINY, campaign="Tiny") is None  # below minSent
        assert gauge(text, "bounce_mailbox_last_success_timestamp_seconds", mailbox="bounces") == datetime(2026, 11, 1, 10, 0, 5, tzinfo=timezone.utc).timestamp()
        assert "bounce_database_up 1.0" in text


async def test_campaign_gauges_are_bounded(make_client, db):
    client = await make_client(service={"metrics": {"recentCampaigns": 3, "minSent": 0}})
    for index in range(6):
        uuid = f"55555555-5555-4555-8555-{index:012d}"
        await client.post("/api/campaigns", json={"uuid": uuid, "name": f"C{index}", "sent": 50}, auth=auth())
    text = (await client.get("/metrics")).text
    assert len(re.findall(r"^bounce_campaign_sent\{", text, re.M)) == 3
