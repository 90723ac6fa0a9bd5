"""Two real `bounce-service serve` instances on one database, and the real scanner (`bounce-service scan`,
as its CronJob runs it) reading bounces from Dovecot: both replicas' /metrics agree on every
database-derived number, scanner bounces included, and the per-pod counters add up to what was stored
(nothing counted twice, nothing missing)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import httpx
import psycopg
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT, TABLES
from tests.mailbox.conftest import dsn
from tests.mailbox.dovecot import Dovecot
from tests.serving import service_env

from .stack import MAILER, bounce_service, record

SPRING = ("33333333-3333-4333-8333-333333333333", "Spring")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every `bounce_` sample of an exposition, keyed by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) if family.name.startswith("bounce_")
            for s in family.samples}


def from_database(values: dict[tuple[str, frozenset], float]) -> dict[tuple[str, frozenset], float]:
    return {key: value for key, value in values.items()
            if key[0].startswith(("bounce_campaign_", "bounce_mailbox_", "bounce_database_up"))}


def value(values: dict, name: str, **labels: str) -> float:
    return values[(name, frozenset(labels.items()))]


def test_two_replicas_and_the_scanner_agree(database_url: str, dovecot: Dovecot, tmp_path: Path) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
    user = dovecot.add_user()
    secrets = tmp_path / "secrets"
    shutil.copytree(ROOT / "examples/secrets", secrets)
    (secrets / "mail").mkdir()
    (secrets / "mail" / "password").write_text(user.password)
    document = yaml.safe_load((ROOT / "examples/bounceconfig.yaml").read_text())
    document["spec"]["mailboxes"] = [{
        "name": "returns", "protocol": "pop3", "host": "127.0.0.1", "port": dovecot.port("pop3", "implicit"),
        "tls": "implicit", "tlsSkipVerify": True, "username": user.name, "scanInterval": "15m",
        "password": {"secretRef": {"name": "mail", "key": "password"}}}]
    document["spec"]["service"]["metrics"] = {"minSent": 10}
    config = tmp_path / "bounceconfig.yaml"
    config.write_text(yaml.safe_dump(document))

    with ExitStack() as stack:
        first, second = (stack.enter_context(httpx.Client(base_url=stack.enter_context(
            bounce_service(database_url, config, secrets)), timeout=10)) for _ in range(2))
        record(first, SPRING, 100, {"hard": 3}, source="ses")
        record(second, SPRING, 100, {"soft": 2}, source="sendgrid", start=3)
        record(second, SPRING, 100, {"hard": 3}, source="ses")  # the first replica's events, redelivered
        for index in range(2):
            user.deliver(dsn(f"dsn{index}@example.org", original_headers=f"X-Listmonk-Campaign: {SPRING[0]}\n"))
        scanner = subprocess.run(
            [sys.executable, "-m", "bounce_service", "scan", "--config", str(config), "--secrets-dir", str(secrets),
             "--mailbox", "returns"], env=service_env(DATABASE_URL=database_url), capture_output=True, text=True,
            timeout=120)
        assert scanner.returncode == 0, scanner.stderr
        # Each replica's first scrape: its cache of the database is filled now, after all of the above.
        metrics = [samples(client.get("/metrics").text) for client in (first, second)]

    with psycopg.connect(database_url) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM bounces").fetchone()[0]
        (finished,) = conn.execute("SELECT finished_at FROM mailbox_scans").fetchone()
    assert stored == 7

    one, other = metrics
    assert from_database(one) == from_database(other)
    spring = {"campaign_uuid": SPRING[0], "campaign": SPRING[1]}
    assert value(one, "bounce_campaign_bounces", type="hard", **spring) == 5  # 3 by webhook, 2 by the scanner
    assert value(one, "bounce_campaign_bounces", type="soft", **spring) == 2
    assert value(one, "bounce_campaign_bounce_rate", **spring) == 0.07
    assert value(one, "bounce_mailbox_scans_total", mailbox="returns", outcome="success") == 1
    assert value(one, "bounce_mailbox_messages_total", mailbox="returns", outcome="recorded") == 2
    assert value(one, "bounce_mailbox_last_success_timestamp_seconds", mailbox="returns") == finished.timestamp()
    assert value(one, "bounce_mailbox_scan_interval_seconds", mailbox="returns") == 900

    # Per-pod counters: summed over the replicas, the webhooks' share of what was stored, counted once.
    def events(outcome: str) -> float:
        return sum(v for pod in metrics for (name, labels), v in pod.items()
                   if name == "bounce_events_total" and ("outcome", outcome) in labels)

    assert events("recorded") + value(one, "bounce_mailbox_messages_total", mailbox="returns", outcome="recorded") == stored
    assert events("duplicate") == 3
