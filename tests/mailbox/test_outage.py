"""The database going away in the middle of a pass (its absence from the start: test_cli.py)."""

from __future__ import annotations

import psycopg
import pytest

from bounce_service.db import UNAVAILABLE, Database
from bounce_service.mailbox.progress import Progress
from bounce_service.mailbox.scanner import Scanner
from bounce_service.mailbox.settings import MailboxSettings
from bounce_service.migrate import migrate
from bounce_service.recorder import Recorder
from tests.conftest import embedded_server
from tests.mailbox.conftest import dsn


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
async def test_an_outage_mid_pass_removes_what_was_committed_and_nothing_more(protocol, mailbox_config, mail_user):
    messages = [dsn(f"{name}@example.org") for name in ("alice", "bob", "carol")]
    for raw in messages:
        mail_user.deliver(raw)
    config = mailbox_config(protocol=protocol, batchSize=1)

    with embedded_server() as server:
        await migrate(server.url)

        class OutageAfterFirstBatch(Progress):
            def batch(self, summary: str) -> None:
                super().batch(summary)
                if server.running():
                    server.stop(mode="immediate")

        db = Database(server.url, max_size=2, timeout=0.5)
        await db.open()
        scanner = Scanner(MailboxSettings.from_config(config, "bounces"), db, Recorder(db, config.actions),
                          OutageAfterFirstBatch("bounces"))
        with pytest.raises(UNAVAILABLE):
            await scanner.scan()
        await db.close()

        assert mail_user.messages() == messages[1:]
        server.start()
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT email FROM bounces").fetchall() == [("alice@example.org",)]
