"""The bounce import of two checkouts, side by side: one database, one service each, rounds alternating.

    python bench/ab_bounce_import.py [--rounds 7] [CHECKOUT_A CHECKOUT_B]

Each checkout is a directory of this repository at some commit (`git worktree add ../before <commit>`);
with none given, both services run this checkout, and the two figures show the host's noise. The state is
bench/bulk.py's: 200,000 subscribers, then each round the same 20,000-line file into an emptied
`bounces`, after `VACUUM ANALYZE` and a `CHECKPOINT`, the order of the two services swapped every round.
Both checkouts must share the schema: the database is migrated by the first service to start. Progress goes
to stderr, figures to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

import httpx
import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bulk  # noqa: E402
from bench._harness import ROOT, database, progress, service, workdir  # noqa: E402

LINES = 20_000
RESET = ("TRUNCATE bounces", "UPDATE subscribers SET status = 'enabled' WHERE status <> 'enabled'",
         "UPDATE subscriber_lists SET status = 'confirmed' WHERE status <> 'confirmed'")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("checkouts", nargs="*", type=Path, help="two checkouts (default: this one, twice)")
    args = parser.parse_args()
    if len(args.checkouts) not in (0, 2):
        parser.error("give two checkouts, or none")
    checkouts = [path.resolve() for path in args.checkouts] or [ROOT, ROOT]
    work = workdir()
    with database(work) as db, contextlib.ExitStack() as stack:
        config, secrets = bulk.bench_config(work)
        clients = [stack.enter_context(httpx.Client(base_url=stack.enter_context(
            service(db.url, config, secrets, checkout=checkout)), timeout=300)) for checkout in checkouts]
        progress("importing 200,000 subscribers")
        bulk.posted(clients[0], "/api/lists", orjson.dumps({"uuid": bulk.LIST, "name": "Newsletter"}))
        for first in (0, 100_000):
            bulk.posted(clients[0], "/api/subscribers/import",
                        b"\n".join(orjson.dumps(line) for line in bulk.subscriber_lines(100_000, first)))
        body = b"\n".join(orjson.dumps(line) for line in bulk.bounce_lines(0, LINES, "import"))
        took: list[list[float]] = [[], []]
        for round_ in range(1, args.rounds + 1):
            for side in ((0, 1) if round_ % 2 else (1, 0)):
                progress(f"round {round_}/{args.rounds}: {'AB'[side]} ({checkouts[side]})")
                bulk.reset(db.url, RESET)
                took[side].append(bulk.timed(lambda: bulk.posted(clients[side], "/api/bounces/import", body)))
                with psycopg.connect(db.url) as conn:  # both must store and act alike
                    stored, fired = conn.execute("SELECT COUNT(*), COUNT(action) FROM bounces").fetchone()
                if (stored, fired) != (LINES, LINES // 10):
                    raise SystemExit(f"{checkouts[side]}: {stored} bounces stored and {fired} actions, not {LINES} and {LINES // 10}")
    print(f"POST /api/bounces/import, {LINES:,} lines, {args.rounds} rounds each, alternating")
    for side, checkout in enumerate(checkouts):
        print(f"  {'AB'[side]} {checkout}: {bulk.rate(LINES, took[side])}")
    print(f"  ratio B/A (rows/s): {statistics.median(took[0]) / statistics.median(took[1]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
