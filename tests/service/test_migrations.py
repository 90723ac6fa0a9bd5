"""Migrations bring an empty database to head, once, even when several processes start together."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import psycopg
from psycopg import sql

from bounce_service import queries
from bounce_service.migrate import MIGRATION_LOCK_ID, migrate, migration_files
from tests.conftest import ROOT
from tests.serving import service_env

EXPECTED_TABLES = {"subscribers", "lists", "subscriber_lists", "campaigns", "bounces", "mailbox_scans", "webhook_tokens",
                   "schema_migrations"}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


async def test_empty_database_upgrades_to_head(empty_database):
    url = empty_database
    assert tables(url) == set()
    applied = await migrate(url)
    assert applied == [version for version, _ in migration_files()]
    assert tables(url) == EXPECTED_TABLES
    assert await migrate(url) == []  # a second run has nothing to do


async def test_concurrent_migrations_apply_each_file_once(empty_database):
    url = empty_database
    results = await asyncio.gather(*(migrate(url) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migration_files())]
    with psycopg.connect(url) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [v[0] for v in versions] == [version for version, _ in migration_files()]


def test_two_migrate_commands_racing_on_an_empty_database(empty_database):
    """Two `bounce-service migrate` processes, both made to wait on the lock and then let go at once."""
    url = empty_database
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "bounce_service", "migrate", "--config", str(ROOT / "examples/bounceconfig.yaml"),
                 "--secrets-dir", str(ROOT / "examples/secrets")],
                env=service_env(DATABASE_URL=url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
            for _ in range(2)
        ]
        deadline = time.monotonic() + 60
        while holder.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0] < 2:
            assert time.monotonic() < deadline, "the two processes never waited on the migration lock"
            assert all(p.poll() is None for p in processes), "a process finished without waiting for the lock"
            time.sleep(0.05)  # polling pg_locks until both wait, not synchronisation
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    outputs = [p.communicate(timeout=60)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    applied = [output.count("applied migration ") for output in outputs]
    assert sorted(applied) == [0, len(migration_files())], outputs
    assert tables(url) == EXPECTED_TABLES


async def test_bounce_addresses_stored_in_mixed_case_before_0008_are_found_after_it(empty_database):
    """0008 drops LOWER() from the e-mail index and compares bytes: it lower-cases the addresses another
    writer stored in mixed case, so that the e-mail filter and order treat them as the service's own."""
    with psycopg.connect(empty_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT NOW())")
        for version, statements in migration_files():
            if version.startswith("0008"):
                break
            conn.execute(statements)
            conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
        conn.execute("INSERT INTO bounces (email, type, source) VALUES ('Zoe@Example.COM', 'hard', 'ses'),"
                     " ('bob@example.com', 'soft', 'ses')")
    assert (await migrate(empty_database))[0].startswith("0008")
    with psycopg.connect(empty_database) as conn:
        filters = {"email": "zoe@example.com"}  # as routes/bounces.py hands it over, lower-cased
        assert conn.execute(queries.count_bounces(filters), {**filters, "count_cap": 10}).fetchone()[0] == 1
        ordered = sql.SQL("SELECT b.email FROM bounces b ORDER BY {key}").format(key=queries.ORDER_COLUMNS["email"])
        assert [row[0] for row in conn.execute(ordered)] == ["bob@example.com", "zoe@example.com"]
