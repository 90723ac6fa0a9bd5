"""Bulk paths of the real service: NDJSON imports, the 1,000,000-row export, and deep pages.

    python bench/bulk.py [--subscribers 100000] [--bounces 20000] [--rows 1000000] [--rounds 3]

One durable PostgreSQL and one `bounce-service serve` (2 workers) on this machine; every figure comes
with a baseline measured in the same run:

- subscriber import (COPY + one upsert per table) vs. raw COPY of the same rows into a copy of the table;
- bounce import (COPY straight into `bounces`, one recorder transaction) vs. the same events as native webhook batches of 1,000;
- export of every row, CSV and NDJSON, vs. the export's own COPY statement read directly with psycopg,
  with the service's RSS before, at its peak during, and after the export, and the NDJSON COPY used
  before (a row per bounce) read directly;
- GET /api/bounces at page 5,000 vs. page 1, and the query shape used before (OFFSET over joined rows
  plus COUNT(*)) run directly.

Progress goes to stderr, figures to stdout.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import httpx
import orjson
import psycopg
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import TOKEN, database, progress, service, workdir, write_config  # noqa: E402
from bounce_service import queries  # noqa: E402

LIST = "11111111-1111-4111-8111-111111111111"
AUTH = ("bench", TOKEN)
MAX_BODY = 64 * 1024 * 1024  # the CRD's maximum: one request carries a whole import

# The old listing: OFFSET over the joined rows, and an exact count, as GET /api/bounces ran them before.
OLD_PAGE = """
SELECT b.id, c.name FROM bounces b LEFT JOIN subscribers s ON s.id = b.subscriber_id
LEFT JOIN campaigns c ON c.id = b.campaign_id
ORDER BY b.created_at DESC NULLS LAST, b.id DESC LIMIT 20 OFFSET %s
"""
OLD_COUNT = "SELECT COUNT(*) FROM bounces b"

# The NDJSON export as it was before: one COPY row, in text format, per bounce.
OLD_NDJSON = """
COPY (SELECT row_to_json(bounce) FROM (SELECT b.id, b.type, b.source, b.meta, b.created_at, b.email, b.event_key,
  b.action, s.uuid::text AS subscriber_uuid, b.subscriber_id, s.status::text AS subscriber_status, c.campaign
  FROM bounces b LEFT JOIN subscribers s ON s.id = b.subscriber_id
  LEFT JOIN (SELECT id, json_build_object('id', id, 'name', name, 'uuid', uuid) AS campaign FROM campaigns) c
  ON c.id = b.campaign_id ORDER BY b.id) bounce) TO STDOUT
"""

SEED_BOUNCES = """
INSERT INTO bounces (subscriber_id, email, campaign_id, type, source, meta, created_at)
SELECT CASE WHEN g %% 10 = 0 THEN NULL ELSE g %% %(subscribers)s + 1 END,
       'user' || (g %% %(subscribers)s) || '@example.com',
       CASE WHEN g %% 7 = 0 THEN NULL ELSE g %% 50 + 1 END,
       (ARRAY['soft', 'hard', 'complaint']::bounce_type[])[g %% 3 + 1],
       (ARRAY['ses', 'sendgrid', 'mailbox', 'postmark'])[g %% 4 + 1],
       jsonb_build_object('smtp', '550 5.1.1 "user" unknown', 'n', g),
       TIMESTAMPTZ '2026-01-01 00:00:00+00' + g * INTERVAL '1 second'
FROM generate_series(1, %(rows)s) g
"""


def bench_config(work: Path) -> tuple[Path, Path]:
    """The harness's config, plus bounces:manage for the bounce import and thresholds that act."""
    config, secrets = write_config(work, maxBodySize=MAX_BODY)
    manifest = yaml.safe_load(config.read_text())
    manifest["spec"]["api"]["users"][0]["permissions"].append("bounces:manage")
    manifest["spec"]["actions"] = {"soft": {"count": 2, "action": "unsubscribe"},
                                   "hard": {"count": 1, "action": "blocklist"},
                                   "complaint": {"count": 1, "action": "blocklist"}}
    config.write_text(yaml.safe_dump(manifest))
    return config, secrets


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def posted(client: httpx.Client, path: str, body: bytes) -> dict:
    response = client.post(path, content=body, auth=AUTH)
    if response.status_code != 200:
        raise SystemExit(f"{path}: {response.status_code} {response.text[:300]}")
    return response.json()["data"]


def subscriber_lines(count: int, first: int = 0) -> list[dict]:
    return [{"email": f"user{n}@example.com", "name": f"User {n}", "attribs": {"plan": "pro", "n": n},
             "lists": [{"uuid": LIST}]} for n in range(first, first + count)]


def reset(db_url: str, statements: tuple[str, ...]) -> None:
    """Bring the tables back to a round's starting state, vacuumed and checkpointed, so rounds compare."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for statement in (*statements, "VACUUM ANALYZE", "CHECKPOINT"):
            conn.execute(statement)


def rate(count: int, seconds: list[float]) -> str:
    """rows/s of the median round, and every round's, so the spread is in the output."""
    every = ", ".join(f"{count / took:,.0f}" for took in seconds)
    return f"{count / statistics.median(seconds):>10,.0f} rows/s  (median of {len(seconds)}: {every})"


def import_subscribers(client: httpx.Client, db_url: str, count: int, rounds: int) -> None:
    """Each round, into an empty table: `count` new subscribers, the same with every name changed (updates),
    then the changed file again (a re-sync in which nothing changes), then `count` other new subscribers
    into the table so filled and analysed (where the planner expects imported rows to exist already)."""
    lines = subscriber_lines(count)
    body = b"\n".join(orjson.dumps(line) for line in lines)
    renamed = b"\n".join(orjson.dumps({**line, "name": line["name"] + " (renamed)"}) for line in lines)
    others = b"\n".join(orjson.dumps(line) for line in subscriber_lines(count, first=count))
    posted(client, "/api/lists", orjson.dumps({"uuid": LIST, "name": "Newsletter"}))
    new, updated, unchanged, among, raw = [], [], [], [], []
    for round_ in range(1, rounds + 1):
        reset(db_url, ("TRUNCATE subscribers RESTART IDENTITY CASCADE",))
        progress(f"subscriber import, round {round_}/{rounds}: {count:,} new subscribers in one request ({len(body) / 1e6:.1f} MB)")
        new.append(timed(lambda: posted(client, "/api/subscribers/import", body)))
        progress(f"subscriber import, round {round_}/{rounds}: every name changed, then the same file again")
        updated.append(timed(lambda: posted(client, "/api/subscribers/import", renamed)))
        unchanged.append(timed(lambda: posted(client, "/api/subscribers/import", renamed)))
        reset(db_url, ())
        progress(f"subscriber import, round {round_}/{rounds}: {count:,} other new subscribers among those")
        among.append(timed(lambda: posted(client, "/api/subscribers/import", others)))
        progress(f"baseline, round {round_}/{rounds}: raw COPY of the same rows into a copy of the subscribers table")
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("CREATE TEMPORARY TABLE raw_subscribers (LIKE subscribers INCLUDING ALL)")

            def copy() -> None:
                with conn.transaction(), conn.cursor().copy("COPY raw_subscribers (email, name, attribs) FROM STDIN") as out:
                    for line in lines:
                        out.write_row((line["email"], line["name"], orjson.dumps(line["attribs"]).decode()))

            raw.append(timed(copy))
    print(f"\nPOST /api/subscribers/import, {count:,} lines with one list membership each, one request per round")
    print(f"  new subscribers:        {rate(count, new)}   goal >= 20,000 rows/s")
    print(f"  every name changed:     {rate(count, updated)}")
    print(f"  unchanged (re-sync):    {rate(count, unchanged)}")
    print(f"  new, among as many:     {rate(count, among)}")
    print(f"  baseline raw COPY:      {rate(count, raw)}   ratio import/raw COPY {statistics.median(raw) / statistics.median(new):.2f}")


def bounce_lines(first: int, count: int, tag: str) -> list[dict]:
    return [{"email": f"user{first + n}@example.com", "type": "hard" if n % 10 == 0 else "soft", "source": "bench",
             "meta": {"smtp": "550 5.1.1 user unknown"}, "event_id": f"{tag}-{n}"} for n in range(count)]


def import_bounces(client: httpx.Client, db_url: str, count: int, rounds: int) -> None:
    """Import and baseline hit disjoint subscribers, so both fire the same number of thresholds.

    Every round starts from no bounces and every subscriber enabled and subscribed.
    """
    body = b"\n".join(orjson.dumps(line) for line in bounce_lines(0, count, "import"))
    events = bounce_lines(count, count, "webhook")
    took, replay, baseline = [], [], []

    def webhook() -> None:
        for start in range(0, count, 1000):
            posted(client, "/webhooks/bounce", orjson.dumps(events[start:start + 1000]))

    for round_ in range(1, rounds + 1):
        reset(db_url, ("TRUNCATE bounces", "UPDATE subscribers SET status = 'enabled' WHERE status <> 'enabled'",
                       "UPDATE subscriber_lists SET status = 'confirmed' WHERE status <> 'confirmed'"))
        progress(f"bounce import, round {round_}/{rounds}: {count:,} events in one request, then the same file again")
        took.append(timed(lambda: posted(client, "/api/bounces/import", body)))
        replay.append(timed(lambda: posted(client, "/api/bounces/import", body)))
        progress(f"baseline, round {round_}/{rounds}: {count:,} events as native webhook batches of 1,000")
        baseline.append(timed(webhook))
    print(f"\nPOST /api/bounces/import, {count:,} native bounce lines (10% hard), COPYed into bounces, one transaction")
    print(f"  import:                 {rate(count, took)}   goal >= 20,000 rows/s")
    print(f"  same file again (dups): {rate(count, replay)}")
    print(f"  baseline webhook x1000: {rate(count, baseline)}   ratio {statistics.median(baseline) / statistics.median(took):.2f}")


def seed(db_url: str, rows: int, subscribers: int) -> None:
    """Bounces of the imported subscribers (ids 1..subscribers), one in ten of an unknown recipient."""
    progress(f"seeding {rows:,} bounces with generate_series")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE bounces")
        conn.execute("INSERT INTO campaigns (name, sent) SELECT 'Campaign ' || g, 100000 FROM generate_series(1, 50) g")
        conn.execute(SEED_BOUNCES, {"rows": rows, "subscribers": subscribers})
    # The seed writes ~1.2 GB of WAL, which sets off a checkpoint that PostgreSQL spreads over minutes: its
    # writes and final fsyncs landed in the middle of the paging and export figures (one NDJSON export ran
    # at a third of its usual speed). The reset's checkpoint ends it first, and the figures start clean.
    reset(db_url, ())


def service_pids() -> list[int]:
    """This process's Python descendants: the service's uvicorn supervisor and its workers (not wrk)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    python = os.path.realpath(sys.executable)
    return [pid for pid in found if _executable(pid) == python]


def _executable(pid: int) -> str | None:
    try:
        return os.path.realpath(f"/proc/{pid}/exe")
    except OSError:
        return None


def _memory_mib(path: str, field: str) -> float:
    """`field` (in kB) of /proc/<pid>/`path`, summed over the service's processes, in MiB."""
    total = 0
    for pid in service_pids():
        try:
            for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def rss_mib() -> float:
    return _memory_mib("status", "VmRSS")


def pss_mib() -> float:
    """Proportional set size: pages shared by the forked workers counted once between them, as the
    container's memory limit counts them (RSS counts them once per process)."""
    return _memory_mib("smaps_rollup", "Pss")


class PeakRss:
    """Samples the service's RSS every 50 ms while the block runs."""

    def __enter__(self) -> "PeakRss":
        self.peak, self._stop = rss_mib(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stream(client: httpx.Client, export_format: str) -> tuple[int, int, float]:
    """(lines, bytes, seconds) of one full export."""
    lines = size = 0
    started = time.perf_counter()
    with client.stream("GET", "/api/bounces/export", params={"format": export_format}, auth=AUTH, timeout=120) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            lines += chunk.count(b"\n")
            size += len(chunk)
    return lines, size, time.perf_counter() - started


def direct_copy(db_url: str, statement: object) -> float:
    def read() -> None:
        with psycopg.connect(db_url) as conn, conn.cursor().copy(statement) as copy:
            for _ in copy:
                pass

    return timed(read)


def export(client: httpx.Client, db_url: str, rows: int) -> None:
    print(f"\nGET /api/bounces/export, {rows:,} rows, streamed by the client")
    for export_format, statement in (("csv", queries.export_bounces_csv({})), ("ndjson", queries.export_bounces_ndjson({}))):
        before = rss_mib()
        progress(f"export {export_format} (service RSS {before:.0f} MiB)")
        with PeakRss() as peak:
            lines, size, took = stream(client, export_format)
        after = rss_mib()
        progress(f"baseline: the export's COPY read directly ({export_format})")
        baseline = direct_copy(db_url, statement)
        data_rows = lines - (export_format == "csv")
        if data_rows != rows:
            raise SystemExit(f"export {export_format}: {data_rows} rows, expected {rows}")
        print(f"  {export_format:<6} {rows / took:>10,.0f} rows/s  ({took:.2f} s, {size / 1e6:,.0f} MB)   goal >= 100,000 rows/s")
        print(f"         baseline direct COPY {rows / baseline:>10,.0f} rows/s ({baseline:.2f} s)   ratio {baseline / took:.2f}")
        print(f"         service RSS (supervisor + 2 workers): before {before:.0f} MiB, peak {peak.peak:.0f} MiB, after {after:.0f} MiB")
    progress("before: the per-bounce NDJSON COPY read directly")
    old = direct_copy(db_url, OLD_NDJSON)
    print(f"  before: per-bounce NDJSON COPY read directly {rows / old:>10,.0f} rows/s ({old:.2f} s)")


def latency_ms(client: httpx.Client, params: dict, rounds: int = 21) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        response = client.get("/api/bounces", params=params, auth=AUTH)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
    return statistics.median(samples)


def paging(client: httpx.Client, db_url: str) -> None:
    progress("paging")
    print("\nGET /api/bounces, per_page 20, median of 21 requests (ms), goal < 50 ms at pages 1 and 5,000")
    first = latency_ms(client, {"page": 1})
    deep = latency_ms(client, {"page": 5000})
    print(f"  order_by created_at desc: page 1 {first:6.1f}   page 5,000 {deep:6.1f}   ratio {deep / first:.2f}")
    for order_by in ("created_at", "email", "source", "type", "campaign_name"):
        for order in ("asc", "desc"):
            params = {"order_by": order_by, "order": order}
            shallow = latency_ms(client, {**params, "page": 1}, rounds=5)
            far = latency_ms(client, {**params, "page": 5000}, rounds=5)
            print(f"  order_by {order_by} {order}:{' ' * (20 - len(order_by) - len(order))}page 1 {shallow:6.1f}   page 5,000 {far:6.1f}")
    filtered = latency_ms(client, {"source": "ses", "type": "hard", "page": 50}, rounds=5)
    print(f"  source=ses&type=hard page 50: {filtered:.1f}")
    with psycopg.connect(db_url) as conn:
        old_count = statistics.median(timed(lambda: conn.execute(OLD_COUNT).fetchall()) for _ in range(5)) * 1000
        old_page = statistics.median(timed(lambda: conn.execute(OLD_PAGE, (99_980,)).fetchall()) for _ in range(5)) * 1000
    print(f"  before (direct SQL, no HTTP): COUNT(*) {old_count:.1f} + page 5,000 by OFFSET {old_page:.1f}"
          f" = {old_count + old_page:.1f}   ratio before/now {(old_count + old_page) / deep:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100_000)
    parser.add_argument("--bounces", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each import; the median is the figure")
    args = parser.parse_args()
    work = workdir()
    with database(work) as db:
        config, secrets = bench_config(work)
        with service(db.url, config, secrets) as url, httpx.Client(base_url=url, timeout=300) as client:
            import_subscribers(client, db.url, args.subscribers, args.rounds)
            import_bounces(client, db.url, args.bounces, args.rounds)
            seed(db.url, args.rows, args.subscribers)
            paging(client, db.url)
            export(client, db.url, args.rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
