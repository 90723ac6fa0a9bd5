"""Shared fixtures: a real PostgreSQL (embedded, or $TEST_DATABASE_URL) and the app wired to it."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import AsyncIterator, Iterator

import httpx
import psycopg
import pytest

from bounce_service.app import create_app
from bounce_service.config import ServiceConfig, build_config
from bounce_service.devdb import EmbeddedPostgres
from bounce_service.migrate import migrate
from bounce_service.secrets import SecretSource

ROOT = Path(__file__).resolve().parent.parent
TABLES = "bounces, subscriber_lists, subscribers, lists, campaigns, mailbox_scans, webhook_tokens"

TOKENS = {"admin": "admin-secret-token", "viewer": "viewer-secret-token", "poster": "poster-secret-token"}
PERMISSIONS = {
    "admin": ["bounces:get", "bounces:manage", "webhooks:post_bounce", "subscribers:manage"],
    "viewer": ["bounces:get"],
    "poster": ["webhooks:post_bounce"],
}


def with_database(server_url: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(server_url, dbname=name)


def server_dir() -> Path:
    """A data directory the unprivileged server user can reach (pytest's tmp dirs are root-only)."""
    base = Path(os.environ.get("BOUNCE_TEST_TMP", ROOT / ".tmp"))
    base.mkdir(parents=True, exist_ok=True)
    return base / f"pg-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextmanager
def embedded_server() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(server_dir(), durable=False).start()
    try:
        yield server
    finally:
        if server.running():
            server.stop(mode="immediate")
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a server we may create databases on."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    with embedded_server() as server:
        yield server.url


@contextmanager
def own_database(server_url: str) -> Iterator[str]:
    """An empty database of our own on the server, dropped afterwards (TEST_DATABASE_URL may be yours)."""
    name = f"bounce_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_database(postgres_server: str) -> Iterator[str]:
    with own_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(postgres_server: str) -> Iterator[str]:
    """A migrated database of our own for the whole session (tables are emptied between tests)."""
    with own_database(postgres_server) as url:
        asyncio.run(migrate(url))
        yield url


@pytest.fixture
def db(database_url: str) -> Iterator[psycopg.Connection]:
    """A plain connection for arranging and checking rows; the tables start empty."""
    with psycopg.connect(database_url, autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        conn.execute(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
        yield conn


def write_secrets(directory: Path) -> SecretSource:
    for name, token in TOKENS.items():
        path = directory / "api" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(token + "\n")
    return SecretSource(directory=directory, environ={})


def make_spec(**overrides) -> dict:
    spec = {
        "actions": {
            "soft": {"count": 2, "action": "none"},
            "hard": {"count": 1, "action": "blocklist"},
            "complaint": {"count": 1, "action": "blocklist"},
        },
        "api": {
            "users": [
                {"name": name, "token": {"secretRef": {"name": "api", "key": name}}, "permissions": PERMISSIONS[name]}
                for name in TOKENS
            ]
        },
    }
    spec.update(overrides)
    return spec


@pytest.fixture
def secrets(tmp_path: Path) -> SecretSource:
    return write_secrets(tmp_path / "secrets")


@pytest.fixture
def make_config(database_url: str, secrets: SecretSource):
    def build(**overrides) -> ServiceConfig:
        return build_config(make_spec(**overrides), secrets=secrets, environ={"DATABASE_URL": database_url})

    return build


@pytest.fixture
async def make_client(make_config, db) -> AsyncIterator:
    """Factory for HTTP clients talking to a fully started app (lifespan included)."""
    stack = []

    async def build(**overrides) -> httpx.AsyncClient:
        app = create_app(make_config(**overrides))
        lifespan = app.router.lifespan_context(app)
        await lifespan.__aenter__()
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://test")
        stack.append((lifespan, client))
        client.app = app  # type: ignore[attr-defined]
        return client

    yield build
    for lifespan, client in reversed(stack):
        await client.aclose()
        await lifespan.__aexit__(None, None, None)


@pytest.fixture
async def client(make_client) -> httpx.AsyncClient:
    return await make_client()


def auth(user: str = "admin") -> httpx.BasicAuth:
    return httpx.BasicAuth(user, TOKENS[user])


async def blocked_on_a_lock(db, text: str) -> None:
    """Until a backend running a statement with `text` in it waits for a lock held by another transaction
    (10 s at most)."""
    for _ in range(1000):
        if db.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                      ("%" + text + "%",)).fetchone()["n"]:
            return
        await asyncio.sleep(0.01)  # lets a task of this event loop run its statement meanwhile
    raise AssertionError(f"no statement with {text!r} waited for a lock")
