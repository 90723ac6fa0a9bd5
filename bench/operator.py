"""Reconcile scale: how long the real operator takes to bring 200 BounceConfigs to Ready, and its memory.

The API server is kmock's emulator (tests/operator/cluster.py) in this process; the operator is the
`bounce-operator` command in another, as in a cluster. Baseline, measured in the same run: the time the
emulator takes to create and read back the same 200 BounceConfigs with no operator running, i.e. the
floor set by the emulated API itself. Progress goes to stderr; the figures to stdout.

    .venv/bin/python bench/operator.py [--count 200]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the emulator lives with the tests

import kmock  # noqa: E402

from tests.operator.cluster import BUILTIN, MONITORING, Cluster  # noqa: E402
from tests.operator.conftest import Api, Operator, bounceconfig, create_secrets  # noqa: E402

CONCURRENCY = 16  # requests in flight from the bench itself, as a busy `kubectl apply` would send
MAILBOX = {"name": "returns", "host": "pop.example.com", "auth": "none", "scanInterval": "15m"}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def create_all(api: Api, namespace: str, count: int, prefix: str) -> None:
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(index: int) -> None:
        async with limit:
            await api.create(bounceconfig(f"{prefix}{index}", namespace, mailboxes=[MAILBOX]))

    await asyncio.gather(*(one(index) for index in range(count)))


async def baseline(api: Api, count: int) -> float:
    """Create and read back `count` BounceConfigs, nothing else running."""
    limit = asyncio.Semaphore(CONCURRENCY)
    started = time.perf_counter()
    await create_all(api, "baseline", count, "b")

    async def read(index: int) -> None:
        async with limit:
            assert await api.bounceconfig("baseline", f"b{index}") is not None

    await asyncio.gather(*(read(index) for index in range(count)))
    return time.perf_counter() - started


def ready_count(cluster: Cluster, namespace: str) -> int:
    ready = 0
    for (resource, ns, _), obj in list(cluster.objects.items()):
        if resource.plural == "bounceconfigs" and ns == namespace and not obj.deleted:
            conditions = obj.raw.get("status", {}).get("conditions", [])
            ready += any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
    return ready


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc: not Linux?")


async def main(count: int, timeout: float) -> int:
    async with Cluster() as cluster, kmock.Server(cluster):
        cluster.serve(BUILTIN | MONITORING)
        api = Api(cluster)
        base = await baseline(api, count)
        progress(f"baseline: created and read {count} BounceConfigs in {base:.2f} s")

        operator = await Operator(cluster, Path(tempfile.mkdtemp(prefix="bench-operator-")), "--namespace", "bench").start()
        try:
            assert operator.process is not None
            await create_secrets(api, "bench")
            requests_before = api.request_count()
            started = time.perf_counter()
            await create_all(api, "bench", count, "mail")
            progress(f"created {count} BounceConfigs in {time.perf_counter() - started:.2f} s")
            ready, last_report = 0, started
            while ready < count:
                if time.perf_counter() - started > timeout:
                    progress(f"timed out: {ready}/{count} Ready after {timeout:.0f} s; log: {operator.log_path}")
                    return 1
                await asyncio.sleep(0.05)  # a polling period, not synchronisation: the loop re-checks
                ready = ready_count(cluster, "bench")
                if time.perf_counter() - last_report >= 1:
                    last_report = time.perf_counter()
                    progress(f"  {ready}/{count} Ready after {last_report - started:.1f} s")
            elapsed = time.perf_counter() - started
            peak = peak_rss_mib(operator.process.pid)
            requests = api.request_count() - requests_before - count
        finally:
            await operator.stop()

    print(f"operator: {count} BounceConfigs Ready in {elapsed:.2f} s ({count / elapsed:.1f}/s), "
          f"peak RSS {peak:.0f} MiB, {requests / count:.1f} API requests per BounceConfig")
    print(f"baseline: the emulator creates and reads back {count} BounceConfigs in {base:.2f} s")
    print(f"ratio: {elapsed / base:.1f}x the baseline")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.count, arguments.timeout)))
