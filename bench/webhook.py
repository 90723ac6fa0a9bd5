"""Webhook throughput: the service with group commit vs. one commit per request vs. a bare endpoint.

    python bench/webhook.py [--seconds 10] [--connections 64]

All three run in this one invocation under the same load (wrk, 64 connections, 2 uvicorn workers,
uvloop + httptools) against a durable PostgreSQL on the same machine. Prints req/s, p50/p99 and the
ratios the performance issue sets goals for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import bare_endpoint, database, progress, service, workdir, write_config, wrk  # noqa: E402

SCRIPT = Path(__file__).with_name("webhook.lua")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    work = workdir()
    results = {}
    with database(work) as db:
        for name, settings in (("group commit", {}), ("one commit per request", {"groupCommit": {"enabled": False}})):
            progress(f"service, {name}")
            config, secrets = write_config(work, **settings)
            with service(db.url, config, secrets) as url:
                wrk(url, SCRIPT, seconds=2, connections=args.connections)  # warm-up: pools, caches
                results[name] = wrk(url, SCRIPT, seconds=args.seconds, connections=args.connections)
    progress("bare Starlette endpoint")
    with bare_endpoint() as url:
        wrk(url, SCRIPT, seconds=2, connections=args.connections)
        results["bare endpoint"] = wrk(url, SCRIPT, seconds=args.seconds, connections=args.connections)

    print(f"\nPOST /webhooks/bounce, {args.connections} connections, {args.seconds}s, 2 workers each")
    print(f"{'configuration':<26}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}{'errors':>8}")
    for name, load in results.items():
        print(f"{name:<26}{load.requests_per_second:>10.0f}{load.p50_ms:>10.2f}{load.p99_ms:>10.2f}"
              f"{load.non_2xx:>10}{load.errors:>8}")
    group, single, bare = results["group commit"], results["one commit per request"], results["bare endpoint"]
    print(f"\nratio group commit / bare endpoint:          {group.requests_per_second / bare.requests_per_second:.2f}  (goal >= 0.40)")
    print(f"ratio group commit / one commit per request: {group.requests_per_second / single.requests_per_second:.2f}  (goal >= 1.5)")
    print(f"group commit p99: {group.p99_ms:.1f} ms  (goal <= 100 ms)")
    return 0 if group.non_2xx == 0 and single.non_2xx == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
