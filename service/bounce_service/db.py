"""The connection pool, and JSON handled by orjson in both directions."""

from __future__ import annotations

import logging
import select
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import set_json_dumps, set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

log = logging.getLogger(__name__)

set_json_dumps(lambda obj: orjson.dumps(obj).decode())
set_json_loads(orjson.loads)

# Errors that mean "the database cannot do this right now": callers answer 503 so senders retry.
UNAVAILABLE = (psycopg.OperationalError, PoolTimeout)
# The SQLSTATE classes among them that say the server itself is not there: connection exceptions,
# shutting down or refusing connections (57P), out of resources (53). The others fail one transaction
# only (a deadlock, a serialisation failure, a statement or lock timeout) and say nothing of the next.
_SERVER_DOWN = ("08", "57P", "53")
# After a failure, requests are refused at once for this long; then one probe request may try again.
RETRY_AFTER_FAILURE = 1.0


def database_down(exc: BaseException) -> bool:
    """Whether `exc` says the database is unreachable, not just that one transaction failed."""
    if not isinstance(exc, UNAVAILABLE):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(_SERVER_DOWN)


async def _check_connection(conn: psycopg.AsyncConnection) -> None:
    """Detect a connection the server has ended, without a round trip on every checkout.

    An idle connection has nothing to read. When the server ends the session (a restart, a terminated
    backend) it sends its reason and closes the socket, which makes the socket readable: only then is the
    pool's full check run, and it raises. A query per checkout would cost more than some transactions.
    """
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        await AsyncConnectionPool.check_connection(conn)


# The subscriber import stages its rows in temporary tables, which live in a session's own buffers.
# PostgreSQL's default (8 MB) is smaller than a 100,000-line import's staging tables: the staged pages
# were written out to temporary files and read back, a sixth of the import's time. The buffers are taken
# only as a session fills them, and the setting can only change before a session's first temporary
# table: hence here.
TEMP_BUFFERS = "64MB"


async def _configure(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("SELECT set_config('temp_buffers', %s, false)", (TEMP_BUFFERS,))


class DatabaseDown(psycopg.OperationalError):
    """Refused without trying: the database failed a moment ago and a probe has not yet succeeded."""


class Database:
    def __init__(self, conninfo: str, *, max_size: int = 10, timeout: float = 3.0) -> None:
        self.pool = AsyncConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_size,
            # A request waits at most this long for a connection before it is answered 503.
            timeout=timeout,
            # psycopg's reconnection backoff doubles without bound, so after a long outage the pool could
            # sit idle for as long as the outage lasted. Giving up early lets the next request start a
            # fresh attempt at once: recovery takes seconds, whatever the outage's length.
            reconnect_timeout=2.0,
            open=False,
            # Autocommit: a block of one statement needs no BEGIN and COMMIT (see `transaction`); every
            # other block opens its transaction explicitly.
            kwargs={"row_factory": dict_row, "autocommit": True},
            configure=_configure,
            # A connection broken by a database restart is found before it is handed out, so recovery
            # costs nobody a failed request once the server is back.
            check=_check_connection,
            name="bounce-service",
        )

        self._failed_at: float | None = None
        self._probing = False

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def transaction(self, *, single_statement: bool = False) -> AsyncIterator[psycopg.AsyncConnection]:
        """A connection in a transaction, or DatabaseDown at once while the database is known to be down.

        Without the fast refusal every request of an outage would wait the pool's full timeout before
        its 503, piling up connections from senders; one probe at a time finds out when it is back.
        A `single_statement` block runs exactly one statement, which is then its own transaction: it is
        committed (durably) when the statement returns, without the round trips of BEGIN and COMMIT.
        """
        self._admit()
        try:
            async with self.pool.connection() as conn:
                if single_statement:
                    yield conn
                else:
                    async with conn.transaction():
                        yield conn
        except BaseException as exc:
            if database_down(exc):
                self._failed_at = time.monotonic()
            self._probing = False  # an outage refuses for a while; anything else proves nothing: the next probe decides
            raise
        else:
            self._failed_at, self._probing = None, False

    def _admit(self) -> None:
        if self._failed_at is None:
            return
        if self._probing or time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE:
            raise DatabaseDown("database unavailable")
        self._probing = True

    async def ping(self) -> bool:
        try:
            async with self.pool.connection(timeout=2.0) as conn:
                await conn.execute("SELECT 1")
            return True
        except UNAVAILABLE:
            return False
