"""Migrations bring an empty database to head, once, even when several processes start together."""

from __future__ import annotations

import asyncio

import psycopg

from bounce_service.migrate import migrate, migration_files
from tests.conftest import create_database

EXPECTED_TABLES = {"subscribers", "lists", "subscriber_lists", "campaigns", "bounces", "mailbox_scans", "webhook_tokens",
                   "schema_migrations"}


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


async def test_empty_database_upgrades_to_head(postgres_server):
    url = create_database(postgres_server)
    assert tables(url) == set()
    applied = await migrate(url)
    assert applied == [version for version, _ in migration_files()]
    assert tables(url) == EXPECTED_TABLES
    assert await migrate(url) == []  # a second run has nothing to do


async def test_concurrent_migrations_apply_each_file_once(postgres_server):
    url = create_database(postgres_server)
    results = await asyncio.gather(*(migrate(url) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(migration_files())]
    with psycopg.connect(url) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [v[0] for v in versions] == [version for version, _ in migration_files()]
