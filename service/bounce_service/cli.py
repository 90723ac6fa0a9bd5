"""`bounce-service`: serve, migrate, check a config, scan a bounce mailbox, or run everything locally (`dev`)."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import psycopg

from .config import HANDOVER_ENV, ConfigError, ServiceConfig, handover, load_config, read_document, validated
from .log_config import SERVICE_FORMAT, log_config
from .migrate import migrate
from .secrets import SecretSource

log = logging.getLogger("bounce_service")

EXIT_CONFIG = 2


def _load(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ServiceConfig:
    from .providers import build_providers  # here, not at the top: see _counting_in_shared_files

    config = load_config(args.config, secrets=SecretSource.default(args.secrets_dir), environ=environ)
    build_providers(config.webhooks)  # a provider key that cannot work is a configuration error too
    return config


def _wait_and_migrate(conninfo: str, timeout: float) -> None:
    """Wait for the database (pods often start before it), then bring the schema to head."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            applied = asyncio.run(migrate(conninfo))
            log.info("database schema is current%s", f" (applied {', '.join(applied)})" if applied else "")
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("database not reachable yet (%s); retrying", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            time.sleep(1)


@contextmanager
def _counting_in_shared_files() -> Iterator[None]:
    """prometheus-client in multiprocess mode: each worker counts in files of one directory, /metrics sums them.

    The mode is chosen when prometheus-client is first imported, so this begins before anything imports
    it (the providers do, which is why _load imports them late); forked workers inherit the mode and
    open their own files. One worker counts the same way, so the series do not depend on the count.
    A directory this made is removed when the service stops.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before its multiprocess mode was set")
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        yield
        return
    directory = tempfile.mkdtemp(prefix="bounce-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def _forked_workers() -> Iterator[None]:
    """uvicorn's workers forked from this process, which has loaded the app, instead of spawned afresh.

    A spawned worker is a new interpreter that imports the whole service again before it can answer:
    half a second of CPU each, and on 2 cores the start of the service (bench/startup.py: ready 1.9 s
    after the database spawned, 1.2 s forked). Forking is safe here because this process runs no thread
    and holds no connection (migrations ran in their own event loop, closed); each worker builds its
    app, pool and event loop after the fork. uvicorn has no option for this: its one multiprocessing
    context is swapped for the fork context while it starts and restarts workers.
    """
    import multiprocessing

    import uvicorn._subprocess

    from . import app  # noqa: F401 - imported once here, inherited by every worker

    if threading.active_count() > 1 or not hasattr(uvicorn._subprocess, "spawn"):
        yield  # not safe (or not possible) to fork: uvicorn spawns, as it does by default
        return
    # What is loaded now is kept out of the workers' garbage collections, which would otherwise write
    # to every inherited object and so copy the pages the workers could share.
    gc.collect()
    gc.freeze()
    spawn = uvicorn._subprocess.spawn
    uvicorn._subprocess.spawn = multiprocessing.get_context("fork")
    try:
        yield
    finally:
        uvicorn._subprocess.spawn = spawn


def _serve(config: ServiceConfig, secrets_dir: str | None, host: str, port: int, workers: int, log_level: str) -> None:
    import uvicorn

    # Workers start from the spec validated here instead of validating the file again; they resolve its
    # secret references themselves, from the same directory and environment.
    os.environ[HANDOVER_ENV] = handover(config)
    if secrets_dir:
        os.environ["BOUNCE_SECRETS_DIR"] = str(Path(secrets_dir).absolute())
    with _forked_workers():
        uvicorn.run(
            "bounce_service.app:app_from_environment",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            log_config=log_config(log_level),
            proxy_headers=True,
            server_header=False,
            timeout_keep_alive=max(1, round(config.keep_alive)),  # whole seconds; uvicorn's own default is 5
        )


def cmd_serve(args: argparse.Namespace) -> int:
    with _counting_in_shared_files():
        config = _load(args)
        if not args.no_migrate:
            _wait_and_migrate(config.database_url.reveal(), args.database_timeout)
        _serve(config, args.secrets_dir, args.host, args.port, args.workers or config.spec["service"]["workers"],
               config.spec["service"]["logLevel"])
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(args)
    _wait_and_migrate(config.database_url.reveal(), args.database_timeout)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    if args.schema_only:  # a CI pipeline's check of a manifest, without the Secrets it will mount
        defaulted = validated(*read_document(args.config))
        print(f"{args.config}: valid against the CRD's schema and rules ({len(defaulted['mailboxes'])} mailboxes;"
              " secrets and provider keys not checked)")
        return 0
    config = _load(args)
    print(f"{args.config}: valid ({len(config.users)} API users, {len(config.webhooks)} providers enabled, "
          f"{len(config.spec['mailboxes'])} mailboxes)")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    """One pass over a bounce mailbox (what each CronJob runs), or one every scanInterval with --watch."""
    from .mailbox.scanner import EXIT_ERROR, run
    from .mailbox.settings import MailboxSettings

    config = _load(args)
    # An unknown mailbox or a missing password is a configuration error, found before any connection.
    settings = MailboxSettings.from_config(config, args.mailbox)
    try:
        _wait_and_migrate(config.database_url.reveal(), args.database_timeout)
    except psycopg.OperationalError as exc:
        log.error("database unavailable, mailbox not touched: %s", str(exc).strip())
        return EXIT_ERROR
    return asyncio.run(run(config, settings, watch=args.watch))


def cmd_dev(args: argparse.Namespace) -> int:
    """`make run`: an embedded PostgreSQL (unless DATABASE_URL is set), migrations, and the service."""
    # Refuse a bad config before starting anything; the embedded server will provide the database URL.
    config = _load(args, environ={"DATABASE_URL": "postgresql://embedded", **os.environ})
    if (problem := _port_taken(args.host, args.port)) is not None:
        print(f"cannot serve on {args.host}:{args.port}: {problem}; choose another port "
              f"(make run PORT=9001, or --port)", file=sys.stderr)
        return EXIT_CONFIG
    # Closing the terminal hangs up: stop exactly as on Ctrl-C (uvicorn shuts down on SIGINT; before it
    # runs, SIGINT interrupts the start), so the embedded server, in a session of its own that the hangup
    # does not reach, is stopped and its temporary data removed. Not by raising KeyboardInterrupt here:
    # uvloop can run this handler as a loop callback, log what it raises and serve on.
    signal.signal(signal.SIGHUP, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    server = None
    throwaway: Path | None = None
    if not os.environ.get("DATABASE_URL"):
        from .devdb import EmbeddedPostgres

        if args.data_dir:
            data_dir = Path(args.data_dir).absolute()
        else:
            data_dir = throwaway = Path(tempfile.mkdtemp(prefix="bounce-dev-"))
        server = EmbeddedPostgres(data_dir / "pgdata")
    try:
        if server is not None:
            # Inside the try: a Ctrl-C while the server starts must not leave it running.
            server.start()
            os.environ["DATABASE_URL"] = server.url
            log.info("embedded PostgreSQL running at %s (data in %s)", server.url, server.data_dir.parent)
        _wait_and_migrate(os.environ["DATABASE_URL"], args.database_timeout)
        _print_welcome(args, config, embedded=server is not None)
        _serve(config, args.secrets_dir, args.host, args.port, 1, "info")
    finally:
        if server is not None:
            if server.running():
                server.stop()
            if throwaway is not None:
                shutil.rmtree(throwaway, ignore_errors=True)
            log.info("embedded PostgreSQL stopped%s", " and its temporary data removed" if throwaway else "")
    return 0


def _port_taken(host: str, port: int) -> str | None:
    """Why the service could not listen there, found before a database is started for it."""
    try:
        with socket.create_server((host, port)):
            return None
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else str(exc)


def _print_welcome(args: argparse.Namespace, config: ServiceConfig, *, embedded: bool) -> None:
    url = f"http://{args.host}:{args.port}"
    user = next((u for u in config.users.values() if "webhooks:post_bounce" in u.permissions), None)
    stops = "it and the database" if embedded else "it (your DATABASE_URL server keeps running)"
    print(f"\n  bounce-service is starting on {url}  (Ctrl-C stops {stops})\n", file=sys.stderr)
    if user is not None:
        credentials = f"{user.name}:{user.token.reveal()}"  # development secrets from examples/secrets
        print("  Record a bounce:\n"
              f"    curl -s -u '{credentials}' -H 'Content-Type: application/json' \\\n"
              f"      -d '{{\"email\": \"someone@example.com\", \"type\": \"hard\", \"source\": \"curl\"}}' \\\n"
              f"      {url}/webhooks/bounce\n"
              "  List bounces:\n"
              f"    curl -s -u '{credentials}' {url}/api/bounces\n", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bounce-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", required=True, help="BounceConfig manifest or bare spec (YAML)")
        sub.add_argument("--secrets-dir", help="directory of <secret name>/<key> files (default $BOUNCE_SECRETS_DIR, "
                                               "else /etc/bounce-operator/secrets); BOUNCE_SECRET_* variables are read too")
        if name != "check":
            sub.add_argument("--database-timeout", type=float, default=120.0,
                             help="seconds to wait for the database (default %(default)g)")
        sub.set_defaults(handler=handler)
        return sub

    serve = add("serve", cmd_serve, "run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s; 0.0.0.0 in a pod)")
    serve.add_argument("--port", type=int, default=9000, help="port to listen on (default %(default)s)")
    serve.add_argument("--workers", type=int, help="uvicorn worker processes (default spec.service.workers)")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations at start")
    add("migrate", cmd_migrate, "apply database migrations and exit")
    check = add("check", cmd_check, "validate a config file and exit (status 2 when invalid)")
    check.add_argument("--schema-only", action="store_true",
                       help="only the CRD's schema and CEL rules: no Secret is read (for CI, where none is mounted)")
    scan = add("scan", cmd_scan, "scan a bounce mailbox once: exit 0, 1 when messages failed, 2 on a config or connection error")
    scan.add_argument("--mailbox", required=True, help="name of the mailbox in spec.mailboxes")
    scan.add_argument("--watch", action="store_true", help="keep scanning every scanInterval (local use; the cluster runs a CronJob)")
    dev = add("dev", cmd_dev, "embedded PostgreSQL (or $DATABASE_URL's server) + migrations + service, for a laptop")
    dev.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    dev.add_argument("--port", type=int, default=9000, help="port to listen on (default %(default)s)")
    dev.add_argument("--data-dir", help="keep the embedded database in DIR/pgdata (default: a new temp dir, removed at exit)")
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format=SERVICE_FORMAT)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        print("invalid configuration:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except psycopg.OperationalError as exc:  # still unreachable after --database-timeout
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        print(f"database unavailable after waiting {args.database_timeout:g} s: {reason}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
