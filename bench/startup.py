"""Start-up and footprint: time to ready, an empty mailbox pass, and the service's RSS idle and under load.

    python bench/startup.py [--rounds 3] [--seconds 5]

- `bounce-service serve` (2 workers) on a database that is up and migrated, from start to /readyz 200,
  vs. a bare Starlette endpoint under the same uvicorn settings, from start to /healthz 200 (the
  harness polls every 100 ms, so both figures are within 0.1 s); with the CPU seconds the server's
  processes used to get there, which other load on a shared machine does not inflate as it does the wall time;
- one scanner pass over an empty mailbox on the tests' Dovecot (IMAP and POP3, implicit TLS): in process,
  and as the whole `bounce-service scan` command a CronJob runs, vs. a bare TLS login and logout with the
  standard library;
- the RSS of the service (supervisor + workers) idle and at its peak under wrk load on the webhook, and its
  PSS (what the container is charged: pages the forked workers share are counted once) idle and after it.

Progress goes to stderr, figures to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import imaplib
import os
import poplib
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import bare_endpoint, database, progress, service, workdir, write_config, wrk  # noqa: E402
from bench.bulk import PeakRss, pss_mib, rss_mib  # noqa: E402
from bounce_service.config import build_config  # noqa: E402
from bounce_service.mailbox.scanner import open_scanner  # noqa: E402
from bounce_service.mailbox.settings import MailboxSettings  # noqa: E402
from bounce_service.migrate import migrate  # noqa: E402
from bounce_service.secrets import SecretSource  # noqa: E402
from tests.mailbox.dovecot import PASSWORD, Dovecot, install  # noqa: E402

WEBHOOK_SCRIPT = ROOT / "bench" / "webhook.lua"


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def server_cpu_seconds() -> float:
    """CPU seconds used so far by the Python servers this process started, workers included (not the database)."""
    ticks = 0
    servers = [pid for pid in _children(os.getpid())
               if Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == sys.executable.encode()]
    while servers:
        pid = servers.pop()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        servers.extend(_children(pid))
    return ticks / os.sysconf("SC_CLK_TCK")


def seconds_to_ready(start: Callable[[], object]) -> tuple[float, float]:
    """Wall and server CPU seconds until the context manager `start()` yields: its readiness probe answered 200."""
    started = time.perf_counter()
    with start():
        return time.perf_counter() - started, server_cpu_seconds()


def mailbox_spec(protocol: str, port: int, user: str) -> dict:
    return {"mailboxes": [{
        "name": f"empty-{protocol}", "protocol": protocol, "host": "127.0.0.1", "port": port, "tls": "implicit",
        "tlsSkipVerify": True, "username": user, "scanInterval": "1m",
        "password": {"secretRef": {"name": "mail", "key": "password"}},
    }]}


async def in_process_pass(spec: dict, name: str, db_url: str) -> float:
    secrets = SecretSource(directory=None, environ={"BOUNCE_SECRET_MAIL_PASSWORD": PASSWORD})
    config = build_config(spec, secrets=secrets, environ={"DATABASE_URL": db_url})
    started = time.perf_counter()
    async with open_scanner(config, MailboxSettings.from_config(config, name)) as scanner:
        counts = await scanner.scan()
    if counts.error or counts.fetched:
        raise SystemExit(f"{name}: unexpected pass {counts}")
    return time.perf_counter() - started


def cli_pass(spec: dict, name: str, db_url: str, work: Path) -> float:
    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump(spec))
    (work / "mail").mkdir(exist_ok=True)
    (work / "mail" / "password").write_text(PASSWORD)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bounce_service", "scan", "--config", str(config), "--secrets-dir", str(work),
                    "--mailbox", name], env={"DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def bare_login(protocol: str, port: int, user: str) -> float:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    started = time.perf_counter()
    if protocol == "imap":
        client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=context)
        client.login(user, PASSWORD)
        client.select("INBOX")
        client.logout()
    else:
        client = poplib.POP3_SSL("127.0.0.1", port, context=context)
        client.user(user)
        client.pass_(PASSWORD)
        client.stat()
        client.quit()
    return time.perf_counter() - started


def scanner(db_url: str, work: Path, rounds: int) -> None:
    install()
    dovecot = Dovecot().start()
    try:
        print("\nscanner pass over an empty mailbox (implicit TLS), median of", rounds, "(goal < 1 s)")
        for protocol in ("imap", "pop3"):
            user = dovecot.add_user()
            user.create()
            port = dovecot.port(protocol, "implicit")
            spec, name = mailbox_spec(protocol, port, user.name), f"empty-{protocol}"
            progress(f"empty mailbox, {protocol}")
            inside = statistics.median(asyncio.run(in_process_pass(spec, name, db_url)) for _ in range(rounds))
            command = statistics.median(cli_pass(spec, name, db_url, work) for _ in range(rounds))
            bare = statistics.median(bare_login(protocol, port, user.name) for _ in range(rounds))
            print(f"  {protocol}: pass {inside * 1000:.0f} ms, whole `bounce-service scan` {command * 1000:.0f} ms;"
                  f" bare login/logout {bare * 1000:.0f} ms; pass/bare {inside / bare:.1f}")
    finally:
        dovecot.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    work = workdir()
    with database(work) as db:
        asyncio.run(migrate(db.url))
        config, secrets = write_config(work)
        progress(f"serve to /readyz, {args.rounds} rounds")
        ready, ready_cpu = zip(*(seconds_to_ready(lambda: service(db.url, config, secrets)) for _ in range(args.rounds)))
        progress(f"bare endpoint to /healthz, {args.rounds} rounds")
        bare, bare_cpu = zip(*(seconds_to_ready(bare_endpoint) for _ in range(args.rounds)))
        wall, cpu = statistics.median(ready), statistics.median(ready_cpu)
        print(f"\nstart to ready, 2 workers, database up and migrated, median of {args.rounds} (goal < 2 s)")
        print(f"  bounce-service serve: {wall:.2f} s, CPU {cpu:.2f} s  (runs: {', '.join(f'{r:.2f}' for r in ready)})")
        print(f"  bare endpoint:        {statistics.median(bare):.2f} s, CPU {statistics.median(bare_cpu):.2f} s"
              f"   ratio {wall / statistics.median(bare):.2f}, CPU {cpu / statistics.median(bare_cpu):.2f}")

        with service(db.url, config, secrets) as url:
            idle, idle_pss = rss_mib(), pss_mib()
            progress(f"RSS under webhook load for {args.seconds}s")
            with PeakRss() as peak:
                load = wrk(url, WEBHOOK_SCRIPT, seconds=args.seconds)
            loaded_pss = pss_mib()
            print(f"\nservice RSS (supervisor + 2 workers): idle {idle:.0f} MiB, peak {peak.peak:.0f} MiB under "
                  f"{load.requests_per_second:,.0f} webhook req/s (wrk, 64 connections)")
            print(f"service PSS (shared pages counted once): idle {idle_pss:.0f} MiB, after the load {loaded_pss:.0f} MiB")
        scanner(db.url, work, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
