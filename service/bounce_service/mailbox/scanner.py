"""One scanner pass over one mailbox: fetch a batch, parse it, record it, then remove what was recorded.

Removal always follows the commit of the batch's bounces, so a crash or a database outage can at worst
leave a recorded message in place; the next pass fetches it again and its event key makes the second
recording a no-op. Unrecognised mail stays unless the mailbox says otherwise.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import AsyncIterator

import psycopg

from .. import queries
from ..config import ServiceConfig
from ..db import UNAVAILABLE, Database, database_down
from ..events import BounceEvent
from ..recorder import Outcome, Recorder
from .bounces import bounce_events
from .client import MailboxClient, MailboxError, Message, MessageError
from .imap import ImapClient
from .parser import read_bounce
from .pop3 import Pop3Client
from .progress import Progress
from .settings import MailboxSettings

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2


@dataclass(slots=True)
class ScanCounts:
    fetched: int = 0  # messages downloaded
    recorded: int = 0  # bounces newly stored (a re-fetched message's are duplicates, not counted)
    skipped: int = 0  # not a bounce, or over maxMessageSize: left in place unless deleteUnrecognized
    failed: int = 0  # could not be read or turned into bounces: left in place
    error: str | None = None  # why the pass stopped early (mailbox unreachable, login refused, ...)

    @property
    def status(self) -> int:
        return EXIT_ERROR if self.error else EXIT_FAILED if self.failed else EXIT_OK

    def summary(self) -> str:
        return f"{self.fetched} fetched, {self.recorded} recorded, {self.skipped} skipped, {self.failed} failed"


@dataclass(frozen=True, slots=True)
class _Read:
    message: Message
    events: list[BounceEvent]  # empty: not a bounce


def connect(settings: MailboxSettings) -> MailboxClient:
    """An open, authenticated session on the configured folder."""
    return (Pop3Client if settings.protocol == "pop3" else ImapClient).connect(settings)


class RecordRefused(Exception):
    """The database is up but would not store these bounces (a value it cannot keep, a trigger)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Scanner:
    def __init__(self, settings: MailboxSettings, db: Database, recorder: Recorder, progress: Progress) -> None:
        self.settings = settings
        self.db = db
        self.recorder = recorder
        self.progress = progress

    async def scan(self) -> ScanCounts:
        """One pass. Database errors propagate (nothing is removed then); mailbox errors end up in the
        returned counts and in the pass's mailbox_scans row."""
        # The row comes first: with the database down, the pass stops before it touches the mailbox.
        async with self.db.transaction() as conn:
            row = await (await conn.execute(queries.START_MAILBOX_SCAN, {"mailbox": self.settings.name})).fetchone()
        scan_id = row["id"]
        counts = ScanCounts()
        try:
            await self._pass(scan_id, counts)
        except MailboxError as exc:
            counts.error = str(exc)
            log.error("%s: %s", self.settings.name, exc)
        await self._save(scan_id, counts, finished=True)
        self.progress.finish(counts.summary())
        return counts

    async def _pass(self, scan_id: int, counts: ScanCounts) -> None:
        client = await asyncio.to_thread(connect, self.settings)
        interrupted = False
        try:
            messages = await asyncio.to_thread(client.messages)
            self.progress.start(len(messages))
            size = self.settings.batch_size
            for start in range(0, len(messages), size):
                await self._batch(client, messages[start:start + size], counts)
                await self._save(scan_id, counts, finished=False)
                self.progress.batch(counts.summary())
        except asyncio.CancelledError:
            # Ctrl-C: a worker thread may still be reading from the session, so no goodbye that could
            # cross it. The connection ends with the process; POP3 then keeps this session's deletions
            # undone, and the next pass finds those messages recorded already.
            interrupted = True
            raise
        finally:
            if not interrupted:
                await asyncio.to_thread(client.close)

    async def _batch(self, client: MailboxClient, batch: list[Message], counts: ScanCounts) -> None:
        read = await asyncio.to_thread(self._read, client, batch, counts)
        try:
            counts.recorded += await self._record([event for item in read for event in item.events])
        except RecordRefused:
            # The database refused one message's bounces (a value it cannot store, a trigger): that one
            # must not hold back the batch on every pass from now on. One transaction per message.
            read = await self._one_by_one(read, counts)
        # Committed: only now may the recorded messages go.
        done = [item.message for item in read if item.events or self.settings.delete_unrecognized]
        await asyncio.to_thread(client.remove, done)

    async def _one_by_one(self, read: list[_Read], counts: ScanCounts) -> list[_Read]:
        """Record each message's bounces alone; a refused message is counted failed and left in place."""
        kept = []
        for item in read:
            if item.events:
                try:
                    counts.recorded += await self._record(item.events)
                except RecordRefused as refused:
                    counts.failed += 1
                    log.warning("%s: message %s left in place: its bounces were refused (%s)",
                                self.settings.name, item.message.uid, refused.reason)
                    continue
            kept.append(item)
        return kept

    async def _record(self, events: list[BounceEvent]) -> int:
        """How many of `events` were newly recorded; RecordRefused when the database, up, would not take them."""
        try:
            result = await self.recorder.record(events)
        except psycopg.Error as exc:
            if database_down(exc):
                raise
            raise RecordRefused(type(exc).__name__) from exc
        return result.outcomes.count(Outcome.RECORDED)

    def _read(self, client: MailboxClient, batch: list[Message], counts: ScanCounts) -> list[_Read]:
        """Fetch and parse a batch (in a worker thread: both block)."""
        read = []
        for message in batch:
            self.progress.step()
            if message.size > self.settings.max_message_size:
                counts.skipped += 1
                log.info("%s: message %s left in place: %d bytes is over maxMessageSize",
                         self.settings.name, message.uid, message.size)
                continue
            try:
                raw = client.fetch(message)
            except MessageError as exc:
                counts.failed += 1
                log.warning("%s: message %s left in place: %s", self.settings.name, message.uid, exc)
                continue
            counts.fetched += 1
            try:
                events = bounce_events(raw, read_bounce(raw), self.settings)
            except Exception:  # noqa: BLE001 - one message nobody foresaw must not block every later pass
                counts.failed += 1
                log.warning("%s: message %s left in place: it could not be turned into bounces",
                            self.settings.name, message.uid, exc_info=True)
                continue
            if not events:
                counts.skipped += 1
            read.append(_Read(message, events))
        return read

    async def _save(self, scan_id: int, counts: ScanCounts, *, finished: bool) -> None:
        async with self.db.transaction() as conn:
            await conn.execute(queries.UPDATE_MAILBOX_SCAN, {"id": scan_id, "finished": finished, **asdict(counts)})


@asynccontextmanager
async def open_scanner(config: ServiceConfig, settings: MailboxSettings) -> AsyncIterator[Scanner]:
    db = Database(config.database_url.reveal(), max_size=2)
    await db.open()
    try:
        yield Scanner(settings, db, Recorder(db, config.actions), Progress(settings.name))
    finally:
        await db.close()


async def run(config: ServiceConfig, settings: MailboxSettings, *, watch: bool = False) -> int:
    """`bounce-service scan`: one pass (what the CronJob runs), or a pass every scanInterval with watch."""
    async with open_scanner(config, settings) as scanner:
        while True:
            try:
                status = (await scanner.scan()).status
            except UNAVAILABLE as exc:
                log.error("%s: database unavailable, nothing more removed: %s", settings.name, exc)
                status = EXIT_ERROR
            if not watch:
                return status
            await asyncio.sleep(settings.scan_interval)
