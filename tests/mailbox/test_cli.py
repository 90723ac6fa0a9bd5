"""`bounce-service scan` as the CronJob runs it: exit statuses, crashes, outages, --watch, the terminal."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bounce_service.config import ServiceConfig
from bounce_service.devdb import free_port
from tests.mailbox.conftest import bounce_rows, corpus_email, dsn, scan_rows
from tests.mailbox.dovecot import MailUser
from tests.service.test_cli import service_env

HERE = Path(__file__).parent
MESSAGES = [dsn("alice@example.org"), corpus_email("lhost-exim-02.eml"), corpus_email("rfc3834-02.eml")]
RECORDED = [("alice@example.org", "hard"), ("kijitora@example.jp", "hard"), ("sabatora@example.jp", "hard")]


@pytest.fixture
def cli(tmp_path: Path, secrets, database_url: str):
    """Run `bounce-service scan` (or a script taking its arguments) on a config in a file."""

    def run(config: ServiceConfig, *extra: str, script: list[str] | None = None, database: str = database_url,
            **popen) -> subprocess.Popen:
        path = tmp_path / "bounceconfig.yaml"
        path.write_text(yaml.safe_dump(json.loads(json.dumps(config.spec))))  # plain types for YAML
        command = script or [sys.executable, "-m", "bounce_service"]
        popen.setdefault("stderr", subprocess.PIPE)
        # A shell starts a background job (`make test &`, nohup) with SIGINT ignored, and every child
        # inherits that: Python then leaves Ctrl-C ignored and --watch never stops. These tests play a
        # person at a terminal, so the scan starts with Ctrl-C working, whoever started the suite.
        popen.setdefault("preexec_fn", _ctrl_c_works)
        return subprocess.Popen(
            [*command, "scan", "--config", str(path), "--secrets-dir", str(secrets.directory), "--mailbox", "bounces",
             *extra], env=service_env(DATABASE_URL=database, PYTHONFAULTHANDLER="1"), text=True, **popen)

    return run


def _ctrl_c_works() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(process: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # A scan that hangs says where: SIGABRT makes faulthandler (PYTHONFAULTHANDLER) print every thread.
        process.send_signal(signal.SIGABRT)
        _, stderr = process.communicate(timeout=30)
        pytest.fail(f"`bounce-service scan` did not end within {timeout} s; its threads when stopped:\n{(stderr or '')[-6000:]}")
    return process.returncode, stderr


@pytest.mark.parametrize("protocol", ["pop3", "imap"])
def test_a_crash_between_commit_and_removal_records_nothing_twice(protocol, cli, mailbox_config, mail_user, db):
    for raw in MESSAGES:
        mail_user.deliver(raw)
    config = mailbox_config(protocol=protocol)

    status, _ = finish(cli(config, script=[sys.executable, str(HERE / "crash_scan.py")]))
    assert status == -signal.SIGKILL
    assert bounce_rows(db) == RECORDED and len(mail_user.messages()) == 3  # committed, nothing removed

    status, stderr = finish(cli(config))
    assert status == 0, stderr
    assert bounce_rows(db) == RECORDED
    assert mail_user.messages() == [MESSAGES[2]]  # the auto-reply stays
    assert scan_rows(db)[-1] == {"fetched": 3, "recorded": 0, "skipped": 1, "failed": 0, "error": None,
                                 "finished": True}


def test_with_the_database_down_nothing_is_touched(cli, mailbox_config, mail_user):
    for raw in MESSAGES:
        mail_user.deliver(raw)
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"  # nothing listens there

    status, stderr = finish(cli(mailbox_config(), "--database-timeout", "0", database=down))

    assert status == 2 and "database unavailable, mailbox not touched" in stderr
    assert mail_user.messages() == MESSAGES


def unreadable(user: MailUser, raw: bytes) -> None:
    """Deliver a message the server lists but cannot read (as after a disk or permission fault)."""
    user.deliver(raw)
    [path] = [p for p in (user.folder() / "new").iterdir() if p.read_bytes() == raw]
    # The sizes in the name spare Dovecot from reading the file to list it.
    virtual_size = len(raw.replace(b"\n", b"\r\n"))
    named = path.rename(path.with_name(f"{path.name},S={len(raw)},W={virtual_size}"))
    os.chown(named, 0, 0)
    named.chmod(0o600)


def test_a_message_that_cannot_be_read_stays_and_makes_the_exit_status_1(cli, mailbox_config, mail_user, db):
    unreadable(mail_user, dsn("broken@example.org"))
    mail_user.deliver(dsn("alice@example.org"))

    status, stderr = finish(cli(mailbox_config(protocol="pop3")))

    assert status == 1 and "left in place" in stderr
    assert bounce_rows(db) == [("alice@example.org", "hard")]
    assert len(mail_user.messages()) == 1
    assert scan_rows(db)[0]["failed"] == 1


def test_an_unknown_mailbox_is_a_configuration_error(cli, mailbox_config, make_config):
    status, stderr = finish(cli(make_config()))
    assert status == 2 and "no mailbox named 'bounces' (none configured)" in stderr


def test_watch_scans_at_once_then_waits_for_the_interval(cli, mailbox_config, mail_user, db):
    mail_user.deliver(MESSAGES[0])
    process = cli(mailbox_config(scanInterval="1h"), "--watch")
    for line in process.stderr:  # the log says when the first pass is over
        if "pass finished" in line:
            break
    assert process.poll() is None  # waiting for the next interval, not gone and not scanning again
    process.send_signal(signal.SIGINT)
    status, _ = finish(process)
    assert status == 130
    assert len(scan_rows(db)) == 1 and bounce_rows(db) == [("alice@example.org", "hard")]


def test_on_a_terminal_progress_is_a_bar_redrawn_in_place(cli, mailbox_config, mail_user, db):
    for raw in MESSAGES:
        mail_user.deliver(raw)
    controller, terminal = pty.openpty()
    process = cli(mailbox_config(), stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process has closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=60) == 0
    assert b"\rbounces [##############################] 3/3 3 fetched, 3 recorded, 1 skipped, 0 failed" in output
