"""End to end: the real service records bounces in PostgreSQL, a real Prometheus scrapes it and evaluates
the rules from `alert_rules` (every `for` at 0s), and the alerts fire through /api/v1/alerts."""

from __future__ import annotations

import socket
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import httpx
import psycopg
import pytest

from bounce_operator.alerts import HOLD, alert_rules
from tests.conftest import TABLES

from .stack import MAILER, Prometheus, Target, dashboard_queries, poll, record, stack

SPRING = ("33333333-3333-4333-8333-333333333333", "Spring")  # 16 bounces and a complaint in 200: 8%, 0.5%
STEADY = ("55555555-5555-4555-8555-555555555555", "Steady")  # 10 in 1000: 1%, no complaints


@pytest.fixture(scope="module")
def monitored(database_url: str, tmp_path_factory, prometheus_tools) -> Iterator[tuple[Prometheus, httpx.Client]]:
    """The service with Spring, Steady and two mailboxes' scans recorded, and Prometheus scraping it."""
    now = datetime.now(timezone.utc)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        # Scanned every 15 minutes, last success 2 hours ago: stale. Hourly, 10 minutes ago: fine.
        for mailbox, finished in (("returns", now - timedelta(hours=2)), ("fbl", now - timedelta(minutes=10))):
            conn.execute("INSERT INTO mailbox_scans (mailbox, started_at, finished_at, fetched, recorded)"
                         " VALUES (%s, %s, %s, 0, 0)", (mailbox, finished - timedelta(seconds=5), finished))

    def prepare(client) -> None:
        record(client, SPRING, 200, {"hard": 12, "soft": 4, "complaint": 1}, source="ses")
        record(client, STEADY, 1000, {"hard": 10}, source="sendgrid", start=100)

    rules = alert_rules(hold=dict.fromkeys(HOLD, "0s"))
    # A bounce service whose pod does not answer: a port bound but never listened on refuses connections.
    unreachable = socket.socket()
    unreachable.bind(("127.0.0.1", 0))
    down = Target(unreachable.getsockname()[1], "shop", "receipts")
    mailboxes = {"returns": "15m", "fbl": "1h"}
    with unreachable, stack(tmp_path_factory.mktemp("monitoring"), database_url, rules, mailboxes=mailboxes,
                            prepare=prepare, extra_targets=(down,)) as (server, client):
        # Prometheus hands new targets to its scrapers in 5 s batches: wait for the first scrape here, once.
        poll(lambda: server.query("bounce_database_up"), "the first scrape of the service")
        yield server, client


@pytest.fixture
def prometheus(monitored) -> Prometheus:
    return monitored[0]


def firing(prometheus: Prometheus, alert: str) -> list[dict[str, Any]]:
    return poll(lambda: prometheus.alerts(alert), f"{alert} to fire")


def test_bounce_rate_alert_fires_for_the_campaign_over_5_percent_only(prometheus: Prometheus) -> None:
    (alert,) = firing(prometheus, "BounceRateHigh")  # Steady is evaluated in the same round: it stays quiet
    uuid, name = SPRING
    assert alert["labels"] == {"alertname": "BounceRateHigh", "severity": "warning", "namespace": "mail",
                               "service": "newsletters", "campaign_uuid": uuid, "campaign": name}
    assert float(alert["value"]) == pytest.approx(0.08)
    assert alert["annotations"]["description"].startswith(f"8% of campaign Spring ({uuid}) bounced (mail/newsletters).")


def test_complaint_rate_alert_fires_for_the_campaign_over_a_tenth_of_a_percent(prometheus: Prometheus) -> None:
    (alert,) = firing(prometheus, "ComplaintRateHigh")
    assert (alert["labels"]["campaign"], float(alert["value"])) == ("Spring", pytest.approx(0.005))


def test_service_down_alert_names_the_unreachable_service_only(prometheus: Prometheus) -> None:
    (alert,) = firing(prometheus, "BounceServiceDown")
    assert (alert["labels"]["namespace"], alert["labels"]["service"]) == ("shop", "receipts")
    assert alert["labels"]["severity"] == "critical"
    # The service that answers is scraped (so the alert above is not about it) and reaches its database.
    assert prometheus.query('up{service="newsletters"}')[0]["value"][1] == "1"
    assert not prometheus.alerts("BounceDatabaseDown")


def test_stale_mailbox_alert_fires_for_the_mailbox_three_intervals_behind(prometheus: Prometheus) -> None:
    interval = prometheus.query("bounce_mailbox_scan_interval_seconds")  # scraped with everything else
    assert {s["metric"]["mailbox"]: s["value"][1] for s in interval} == {"returns": "900", "fbl": "3600"}
    (alert,) = firing(prometheus, "MailboxScanStale")
    assert alert["labels"]["mailbox"] == "returns"


def test_dashboard_panels_show_the_recorded_data(monitored) -> None:
    """Every panel's query is valid PromQL, and all but two show data (no threshold action fires, as the
    bounced addresses are not subscribers; no request fails authentication)."""
    prometheus, client = monitored
    # Rate panels need requests between two scrapes: a few more webhook calls (already-known events).
    for _ in range(3):
        assert client.post("/webhooks/bounce", auth=MAILER, json={
            "email": "again@example.com", "type": "soft", "source": "ses", "event_id": "again"}).status_code == 200
    quiet = {"Threshold actions fired", "Authentication failures by provider"}
    results = {}
    for title, queries in dashboard_queries(rate_interval="30s").items():  # the requests stay in the window
        ((expr, _),) = queries
        results[title] = (prometheus.query(expr) if title in quiet
                          else poll(lambda expr=expr: prometheus.query(expr), f"data in panel {title!r}"))
    assert not results["Threshold actions fired"] and not results["Authentication failures by provider"]
    rates = {r["metric"]["campaign"]: float(r["value"][1]) for r in results["Bounce rate by campaign"]}
    assert rates == {"Spring": pytest.approx(0.08), "Steady": pytest.approx(0.01)}
    assert {r["metric"]["provider"] for r in results["Webhook latency (p99, with commit)"]} == {"native"}
    sources = {r["metric"]["source"] for r in results["Bounce events by provider"]}
    assert sources == {"ses", "sendgrid"}
    scans = {(r["metric"]["mailbox"], r["metric"]["outcome"]) for r in results["Mailbox scans by outcome (last hour)"]}
    assert scans == {(mailbox, outcome) for mailbox in ("returns", "fbl") for outcome in ("success", "partial", "error")}
    ages = {r["metric"]["mailbox"]: float(r["value"][1]) for r in results["Time since last successful mailbox scan"]}
    assert ages["returns"] == pytest.approx(7200, abs=60) and ages["fbl"] == pytest.approx(600, abs=60)
