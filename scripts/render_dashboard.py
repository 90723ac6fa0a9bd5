"""Render docs/dashboard.png: the Grafana dashboard's panels, from real data.

Starts an embedded PostgreSQL, `bounce-service serve` and Debian's Prometheus (the test stack of
tests/monitoring/stack.py), sends about two minutes of traffic through the service (native webhooks
from several sources, Postmark's own webhook, refused credentials, mailbox scans), then evaluates each
panel's query of charts/bounce-operator/files/dashboard.json over that time and plots them with
matplotlib in the dashboard's layout.

    .venv/bin/python -m pip install -e '.[dev,docs]'   # matplotlib, beyond what the tests need
    .venv/bin/python scripts/render_dashboard.py [--seconds 120] [--output docs/dashboard.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import matplotlib  # noqa: E402
import matplotlib.dates  # noqa: E402
import matplotlib.ticker  # noqa: E402

matplotlib.use("Agg")  # no display
import matplotlib.pyplot as plt  # noqa: E402
import psycopg  # noqa: E402

from bounce_operator.alerts import alert_rules  # noqa: E402
from bounce_service.migrate import migrate  # noqa: E402
from tests.conftest import embedded_server, own_database  # noqa: E402
from tests.monitoring.stack import DASHBOARD, MAILER, Prometheus, dashboard_queries, poll, record, stack  # noqa: E402

SPRING = ("33333333-3333-4333-8333-333333333333", "Spring sale", 4000)
SUMMER = ("55555555-5555-4555-8555-555555555555", "Summer news", 10000)
WEEKLY = ("66666666-6666-4666-8666-666666666666", "Weekly digest", 25000)
POSTMARK_PASSWORD = (ROOT / "examples/secrets/bounce-api/mailer").read_text().strip()


def scan(conn: psycopg.Connection, mailbox: str, ago: timedelta, *, failed: int = 0, error: str | None = None) -> None:
    """A scanner pass's row, as `bounce-service scan` leaves it: 4 messages, 3 of them bounces, unless it
    stopped at once with `error`."""
    finished = datetime.now(timezone.utc) - ago
    fetched, recorded, skipped = (0, 0, 0) if error else (4 - failed, 3 - failed, 1)
    conn.execute("INSERT INTO mailbox_scans (mailbox, started_at, finished_at, fetched, recorded, skipped, failed, error)"
                 " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                 (mailbox, finished - timedelta(seconds=4), finished, fetched, recorded, skipped, failed, error))


def postmark(client: httpx.Client, index: int, campaign: str, password: str = POSTMARK_PASSWORD) -> int:
    bounce = {"RecordType": "Bounce", "ID": 900000 + index, "Type": "HardBounce", "TypeCode": 1,
              "Email": f"pm{index}@example.net", "BouncedAt": datetime.now(timezone.utc).isoformat(),
              "Details": "smtp;550 5.1.1 user unknown", "Metadata": {"campaign_uuid": campaign}}
    return client.post("/webhooks/service/postmark", auth=("postmark", password), json=bounce).status_code


def traffic(client: httpx.Client, conn: psycopg.Connection, seconds: float) -> None:
    """Bounces accumulate so that Spring crosses 5% (and 0.1% complaints) halfway; the others stay low."""
    rng = random.Random(5)
    start, tick = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < seconds:
        tick += 1
        share = elapsed / seconds
        # Spring's first bounce of each tick is a known subscriber: its hard bounce blocklists them.
        client.post("/api/subscribers", auth=MAILER, json={"email": f"c{SPRING[0][:8]}-{tick * 100}@example.com"})
        spring = {"hard": rng.randint(2, 5) if share > 0.3 else rng.randint(0, 1), "soft": rng.randint(0, 2),
                  "complaint": 1 if share > 0.5 and tick % 4 == 0 else 0}
        record(client, SPRING[:2], SPRING[2], spring, "ses", start=tick * 100)
        record(client, SUMMER[:2], SUMMER[2], {"hard": rng.randint(0, 2), "soft": rng.randint(0, 1)}, "sendgrid",
               start=tick * 100 + 20)
        record(client, WEEKLY[:2], WEEKLY[2], {"soft": rng.randint(0, 3)}, "mta", start=tick * 100 + 40)
        assert postmark(client, tick, SUMMER[0]) == 200
        if share > 0.6:  # someone rotated the Postmark password on one side only
            for _ in range(3):
                postmark(client, -tick, SUMMER[0], password="old-password")
        if tick % 15 == 0:  # `returns` is scanned every 15 s here, one message unreadable now and then
            scan(conn, "returns", timedelta(seconds=1), failed=1 if tick % 45 == 0 else 0)
        if tick % 20 == 0:  # `feedback-loop`'s password was changed: no success since the start
            scan(conn, "feedback-loop", timedelta(seconds=1), error="login refused")
        time.sleep(1)  # pacing the simulated traffic, not synchronisation


def plot(prometheus: Prometheus, start: float, end: float, output: Path) -> None:
    """Each panel where the dashboard puts it (24 columns), with its unit and its red threshold line."""
    panels = {panel["title"]: panel for panel in json.loads(DASHBOARD.read_text())["panels"]}
    queries = dashboard_queries(rate_interval="15s", range_="5m")
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels.values())
    figure = plt.figure(figsize=(16, rows * 0.75), dpi=100)
    grid = figure.add_gridspec(rows, 24, hspace=3.0, wspace=1.2, top=0.975, bottom=0.02)
    for title, panel in panels.items():
        pos, defaults = panel["gridPos"], panel["fieldConfig"]["defaults"]
        axes = figure.add_subplot(grid[pos["y"]:pos["y"] + pos["h"], pos["x"]:pos["x"] + pos["w"]])
        axes.set_title(title, fontsize=10, loc="left")
        for expr, legend in queries[title]:
            for series in prometheus.query_range(expr, start, end, step=2):
                label = legend
                for key, value in series["metric"].items():
                    label = label.replace("{{" + key + "}}", value)
                axes.plot([datetime.fromtimestamp(float(t)) for t, _ in series["values"]],
                          [float(v) for _, v in series["values"]], label=label, linewidth=1.4)
        if panel["type"] == "timeseries":
            for step in defaults["thresholds"]["steps"]:
                if step["color"] == "red":
                    axes.axhline(step["value"], color="red", linestyle="--", linewidth=1, label="alert threshold")
        if defaults["unit"] == "percentunit":
            axes.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0, decimals=2))
        if defaults["unit"] == "s" and title.startswith("Time since"):
            axes.set_yscale("log")  # mailboxes scanned every minute and every hour share the panel
        axes.tick_params(labelsize=7)
        axes.xaxis.set_major_locator(matplotlib.dates.AutoDateLocator(maxticks=max(3, pos["w"] // 2)))
        axes.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%H:%M:%S"))
        if axes.lines:
            axes.legend(fontsize=7, loc="upper left")
        else:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes, color="grey")
    figure.suptitle("Bounce operator dashboard (charts/bounce-operator/files/dashboard.json) on data recorded "
                    "through the service by scripts/render_dashboard.py", fontsize=11, y=0.995)
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--output", type=Path, default=ROOT / "docs/dashboard.png")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dashboard-", dir=ROOT / ".tmp"))
    try:
        with embedded_server() as server, own_database(server.url) as url:
            asyncio.run(migrate(url))
            with psycopg.connect(url, autocommit=True) as conn:
                scan(conn, "returns", timedelta(minutes=3))
                scan(conn, "feedback-loop", timedelta(minutes=20))
                webhooks = {"postmark": {"enabled": True, "username": "postmark",
                                         "password": {"secretRef": {"name": "bounce-api", "key": "mailer"}}}}

                def prepare(client: httpx.Client) -> None:
                    for uuid, name, sent in (SPRING, SUMMER, WEEKLY):
                        client.post("/api/campaigns", auth=MAILER, json={"uuid": uuid, "name": name, "sent": sent})

                with stack(work, url, alert_rules(), mailboxes={"returns": "1m", "feedback-loop": "15m"},
                           prepare=prepare, webhooks=webhooks) as (prometheus, client):
                    poll(lambda: prometheus.query("bounce_database_up"), "the first scrape")
                    start = time.time()
                    traffic(client, conn, args.seconds)
                    end = time.time()
                    time.sleep(2)  # the last scrape and rule evaluation of the traffic (pause before plotting)
                    plot(prometheus, start, end, args.output)
        print(f"wrote {args.output}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
