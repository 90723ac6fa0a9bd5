"""Webhook throughput: the service with group commit vs. one commit per request vs. a bare endpoint.

    python bench/webhook.py [--seconds 10] [--connections 64] [--rounds 3] [--hard-every N]

All three servers run side by side in this one invocation (2 uvicorn workers each, uvloop + httptools)
against a durable PostgreSQL on the same machine, and take the same load (wrk, realistic bodies) in
turn, round after round. Each round's ratios compare runs seconds apart, so a machine shared with other
work shifts both sides alike; the figures reported are the medians over the rounds. Prints req/s,
p50/p99 and the ratios the performance issue sets goals for.

By default every body is a soft bounce (the commonest kind, whose default action is `none`): its batches
are one self-committing statement. `--hard-every 10` makes every tenth a hard bounce with a threshold
action, so nearly every batch takes the transactional path (BEGIN, record, thresholds, COMMIT).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import Load, bare_endpoint, database, progress, service, workdir, write_config, wrk  # noqa: E402

SCRIPT = Path(__file__).with_name("webhook.lua")
GROUP, SINGLE, BARE = "group commit", "one commit per request", "bare endpoint"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hard-every", type=int, default=0, help="every Nth body a hard bounce (0: none)")
    args = parser.parse_args()
    body = {"HARD_EVERY": str(args.hard_every)}
    work = workdir()
    runs: dict[str, list[Load]] = {GROUP: [], SINGLE: [], BARE: []}
    with database(work) as db, ExitStack() as servers:
        urls = {}
        for name, settings in ((GROUP, {}), (SINGLE, {"groupCommit": {"enabled": False}})):
            progress(f"starting the service, {name}")
            config, secrets = write_config(work, **settings)
            urls[name] = servers.enter_context(service(db.url, config, secrets))
        progress("starting the bare Starlette endpoint")
        urls[BARE] = servers.enter_context(bare_endpoint())
        for url in urls.values():
            wrk(url, SCRIPT, seconds=2, connections=args.connections, env=body)  # warm-up: pools, caches
        for round_number in range(1, args.rounds + 1):
            progress(f"round {round_number} of {args.rounds}")
            for name, url in urls.items():
                runs[name].append(wrk(url, SCRIPT, seconds=args.seconds, connections=args.connections, env=body))

    kinds = f"every {args.hard_every}th hard, the rest soft" if args.hard_every else "all soft"
    print(f"\nPOST /webhooks/bounce ({kinds}), {args.connections} connections, {args.seconds}s per run, 2 workers each")
    print(f"{'round':<7}{'configuration':<26}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}{'errors':>8}")
    for index in range(args.rounds):
        for name, loads in runs.items():
            load = loads[index]
            print(f"{index + 1:<7}{name:<26}{load.requests_per_second:>10.0f}{load.p50_ms:>10.2f}{load.p99_ms:>10.2f}"
                  f"{load.non_2xx:>10}{load.errors:>8}")
    to_bare = statistics.median(g.requests_per_second / b.requests_per_second for g, b in zip(runs[GROUP], runs[BARE]))
    to_single = statistics.median(g.requests_per_second / s.requests_per_second for g, s in zip(runs[GROUP], runs[SINGLE]))
    p99 = statistics.median(load.p99_ms for load in runs[GROUP])
    print("\nmedian over the rounds:")
    for name, loads in runs.items():
        print(f"  {name:<26}{statistics.median(load.requests_per_second for load in loads):>10.0f} req/s")
    print(f"ratio group commit / bare endpoint:          {to_bare:.2f}  (goal >= 0.40)")
    print(f"ratio group commit / one commit per request: {to_single:.2f}  (goal >= 1.5)")
    print(f"group commit p99: {p99:.1f} ms  (goal <= 100 ms)")
    failed = any(load.non_2xx or load.errors for loads in runs.values() for load in loads)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
