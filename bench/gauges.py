"""Cost of one refresh of the database-derived metrics (what a /metrics scrape pays at most every 10 s per
replica), on a database with history.

    python bench/gauges.py [--days 365] [--campaigns 20] [--bounces 10000] [--repeat 20]

One durable PostgreSQL on this machine, seeded with a mailbox scanned every minute and one every 15
minutes for `--days` days, and `--campaigns` recent campaigns of `--bounces` bounces each. Figures, each
the median of `--repeat` refreshes, with baselines measured in the same run:

- a refresh (campaign gauges + mailbox totals) vs. the same refresh on the empty database;
- the mailbox totals as a refresh computes them (settled passes summed once, the last day per refresh)
  vs. re-summing every pass of the mailboxes on each refresh.

Progress goes to stderr, figures to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import database, progress, workdir  # noqa: E402
from bounce_service.db import Database  # noqa: E402
from bounce_service.gauges import SETTLED, DatabaseGauges  # noqa: E402
from bounce_service.migrate import migrate  # noqa: E402

MAILBOXES = {"returns": 60.0, "fbl": 900.0}

SEED_SCANS = """
INSERT INTO mailbox_scans (mailbox, started_at, finished_at, fetched, recorded, skipped)
SELECT %(mailbox)s, NOW() - g * %(every)s * INTERVAL '1 second',
       NOW() - g * %(every)s * INTERVAL '1 second' + INTERVAL '3 seconds', 3, 2, 1
FROM generate_series(1, %(passes)s) g
"""
SEED_CAMPAIGNS = """
INSERT INTO campaigns (uuid, name, sent) SELECT gen_random_uuid(), 'Campaign ' || g, 1000000
FROM generate_series(1, %(campaigns)s) g
"""
SEED_BOUNCES = """
INSERT INTO bounces (email, type, source, campaign_id, event_key)
SELECT 'user' || g || '@example.com', (ARRAY['soft', 'hard', 'complaint']::bounce_type[])[g %% 3 + 1], 'ses', c.id,
       'bench:' || c.id || ':' || g
FROM campaigns c, generate_series(1, %(bounces)s) g
"""


async def median_ms(step: Callable[[], Awaitable[object]], repeat: int) -> float:
    await step()  # warm: the first refresh also sums the settled passes
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


async def measure(url: str, repeat: int) -> tuple[float, float, float]:
    """(refresh, mailbox totals as a refresh reads them, every pass re-summed), in ms."""
    db = Database(url)
    await db.open()
    try:
        gauges = DatabaseGauges(db, recent_campaigns=20, min_sent=100, scan_intervals=MAILBOXES, ttl=0)
        refresh = await median_ms(gauges.refresh, repeat)

        async def totals(since: datetime) -> None:
            async with db.transaction() as conn:
                await gauges.scans(conn, since=since, before=datetime.max.replace(tzinfo=timezone.utc))

        last_day = datetime.now(timezone.utc) - SETTLED
        earliest = datetime.min.replace(tzinfo=timezone.utc)

        return refresh, await median_ms(lambda: totals(last_day), repeat), await median_ms(lambda: totals(earliest), repeat)
    finally:
        await db.close()


def seed(url: str, days: int, campaigns: int, bounces: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        passes = 0
        for mailbox, every in MAILBOXES.items():
            count = int(days * 86400 / every)
            progress(f"seeding {count:,} passes of {mailbox}")
            conn.execute(SEED_SCANS, {"mailbox": mailbox, "every": every, "passes": count})
            passes += count
        progress(f"seeding {campaigns} campaigns of {bounces:,} bounces")
        conn.execute(SEED_CAMPAIGNS, {"campaigns": campaigns})
        conn.execute(SEED_BOUNCES, {"bounces": bounces})
        conn.execute("VACUUM ANALYZE")
    return passes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--bounces", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with database(workdir()) as server:
        asyncio.run(migrate(server.url))
        progress("measuring the empty database")
        empty, _, _ = asyncio.run(measure(server.url, args.repeat))
        passes = seed(server.url, args.days, args.campaigns, args.bounces)
        progress("measuring the seeded database")
        refresh, recent, everything = asyncio.run(measure(server.url, args.repeat))
    print(f"metrics refresh, {passes:,} mailbox passes + {args.campaigns * args.bounces:,} campaign bounces: "
          f"{refresh:.1f} ms (empty database: {empty:.1f} ms, x{refresh / empty:.1f})")
    print(f"mailbox totals per refresh: {recent:.1f} ms (every pass re-summed: {everything:.1f} ms, "
          f"x{everything / recent:.0f} cheaper)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
