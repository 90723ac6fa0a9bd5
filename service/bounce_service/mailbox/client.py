"""What the scanner needs from a mailbox, whatever the protocol: list, fetch once, remove after commit."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Protocol, Sequence

from .settings import MailboxSettings


class MailboxError(Exception):
    """The session cannot go on (connect, TLS, login, timeout, protocol): the pass stops, exit status 2."""


class MessageError(Exception):
    """One message could not be read; the session goes on and the message stays where it is."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a listing. `handle` addresses it in this session (POP3 number, IMAP UID);
    `uid` names it stably across sessions (POP3 UIDL, IMAP UIDVALIDITY:UID), for logs."""

    handle: int
    uid: str
    size: int


class MailboxClient(Protocol):
    def messages(self) -> list[Message]:
        """Every message in the mailbox (or folder) when the session started, oldest first."""

    def fetch(self, message: Message) -> bytes:
        """The whole message, raw. Raises MessageError when this one message cannot be read."""

    def remove(self, messages: Sequence[Message]) -> None:
        """Delete (or move to the processed folder) messages whose bounces are committed."""

    def close(self) -> None:
        """End the session; POP3 deletions take effect only here."""


def describe(exc: BaseException) -> str:
    """A one-line reason: socket errors often carry no text of their own (a timeout's str is empty)."""
    return str(exc).strip() or type(exc).__name__


def tls_context(settings: MailboxSettings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.tls_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
