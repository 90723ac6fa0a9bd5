"""IMAP4rev1 on imaplib: messages addressed by UID, bodies fetched with BODY.PEEK (no \\Seen flag)."""

from __future__ import annotations

import base64
import imaplib
import re
from typing import Iterator, Sequence

from .client import MailboxError, Message, MessageError, describe, tls_context
from .settings import MailboxSettings

_UID = re.compile(rb"UID (\d+)")
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
_NOT_PRINTABLE = re.compile(r"&|[^ -~]+")  # what modified UTF-7 encodes: "&" itself, and runs of the rest


class ImapClient:
    def __init__(self, conn: imaplib.IMAP4, settings: MailboxSettings) -> None:
        self._conn = conn
        self._settings = settings
        self._where = f"{settings.host}:{settings.port}"
        self._capabilities: set[str] = set()
        self._uidvalidity = ""
        self._exists = 0
        self._broken = False

    @classmethod
    def connect(cls, settings: MailboxSettings) -> "ImapClient":
        where = f"{settings.host}:{settings.port}"
        try:
            if settings.tls == "implicit":
                conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(
                    settings.host, settings.port, ssl_context=tls_context(settings), timeout=settings.timeout
                )
            else:
                conn = imaplib.IMAP4(settings.host, settings.port, timeout=settings.timeout)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"cannot connect to {where}: {describe(exc)}") from exc
        client = cls(conn, settings)
        try:
            client._call(client._open)
        except BaseException:
            client._broken = True
            client.close()
            raise
        return client

    def _open(self) -> None:
        settings = self._settings
        if settings.tls == "starttls":
            self._conn.starttls(tls_context(settings))  # refuses when the server does not offer it
        if settings.username is not None:
            assert settings.password is not None
            user, password = settings.username, settings.password.reveal()
            try:
                if _atom(user) and password.isascii():
                    self._conn.login(user, password)
                else:
                    # LOGIN sends ASCII only, and the user name unquoted; SASL PLAIN (RFC 4616) carries UTF-8.
                    self._conn.authenticate("PLAIN", lambda _: f"\0{user}\0{password}".encode())
            except imaplib.IMAP4.error as exc:
                raise MailboxError(f"{self._where}: login as {settings.username} refused: {describe(exc)}") from None
        elif self._conn.state != "AUTH":
            raise MailboxError(f"{self._where}: auth is none but the server did not pre-authenticate the session")
        # Servers may announce more after login (RFC 3501 7.2.1); imaplib keeps the greeting's list.
        _, data = self._conn.capability()
        self._capabilities = set(data[-1].decode().upper().split())
        if settings.processed_folder:
            # NO when it exists already; a real problem (no permission) shows up at the first MOVE.
            self._conn.create(quote(settings.processed_folder))
        status, data = self._conn.select(quote(settings.folder))
        if status != "OK":
            raise MailboxError(f"{self._where}: cannot open folder {settings.folder!r}: {data[-1]!r}")
        _, [uidvalidity] = self._conn.response("UIDVALIDITY")
        self._uidvalidity = uidvalidity.decode() if uidvalidity else ""
        self._exists = int(data[0] or 0)

    def messages(self) -> list[Message]:
        if not self._exists:
            return []
        _, data = self._call(self._conn.uid, "FETCH", "1:*", "(RFC822.SIZE)")
        messages = []
        for item in data:
            uid, size = _UID.search(item or b""), _SIZE.search(item or b"")
            if uid and size:
                messages.append(Message(int(uid[1]), f"{self._uidvalidity}:{uid[1].decode()}", int(size[1])))
        return sorted(messages, key=lambda m: m.handle)

    def fetch(self, message: Message) -> bytes:
        status, data = self._call(self._conn.uid, "FETCH", str(message.handle), "(BODY.PEEK[])")
        bodies = [item[1] for item in data if isinstance(item, tuple)]
        if status != "OK" or not bodies:
            raise MessageError(f"UID {message.uid} could not be fetched: {status} {data!r:.200}")
        return bodies[0]

    def remove(self, messages: Sequence[Message]) -> None:
        for uids in uid_sets(sorted(m.handle for m in messages)):
            self._remove(uids)

    def _remove(self, uids: str) -> None:
        processed = self._settings.processed_folder
        if processed and "MOVE" in self._capabilities:
            self._uid("MOVE", uids, quote(processed))
            return
        if processed:
            self._uid("COPY", uids, quote(processed))
        self._uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)")
        if "UIDPLUS" in self._capabilities:
            # Expunges only these; a plain EXPUNGE would also take what another client flagged \Deleted.
            self._uid("EXPUNGE", uids)
        elif self._call(self._conn.expunge)[0] != "OK":
            raise MailboxError(f"{self._where}: EXPUNGE failed")

    def close(self) -> None:
        if self._broken:
            try:
                self._conn.shutdown()
            except OSError:  # a failed STARTTLS handshake has closed the socket already
                pass
            return
        try:
            self._call(self._conn.logout)
        except MailboxError:
            pass  # everything was committed command by command; a failed goodbye loses nothing

    def _uid(self, command: str, *args: str) -> None:
        status, data = self._call(self._conn.uid, command, *args)
        if status != "OK":
            raise MailboxError(f"{self._where}: UID {command} failed: {data!r:.200}")

    def _call(self, method, *args):  # noqa: ANN001, ANN202 - imaplib is untyped
        """Run one imaplib call, turning its exceptions into the scanner's."""
        try:
            return method(*args)
        except (imaplib.IMAP4.abort, OSError) as exc:  # the connection is gone
            self._broken = True
            raise MailboxError(f"{self._where}: {describe(exc)}") from exc
        except imaplib.IMAP4.error as exc:  # BAD or a NO imaplib raises on
            raise MailboxError(f"{self._where}: {describe(exc)}") from exc


def quote(name: str) -> str:
    """A mailbox name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3)."""
    encoded = _NOT_PRINTABLE.sub(_modified_base64, name)
    return '"' + encoded.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _modified_base64(run: re.Match) -> str:
    if run.group() == "&":
        return "&-"
    return "&" + base64.b64encode(run.group().encode("utf-16-be")).decode().rstrip("=").replace("/", ",") + "-"


def _atom(text: str) -> bool:
    """Whether imaplib's LOGIN can send `text` as it stands: ASCII, with nothing IMAP would read as syntax."""
    return text.isascii() and text.isprintable() and not any(c in text for c in ' (){%*"\\]')


UID_SET_LENGTH = 8000  # characters per command's UID set: servers cap a command line (Dovecot at 64 KiB)


def uid_sets(uids: Sequence[int]) -> Iterator[str]:
    """Sorted UIDs as IMAP sequence sets (RFC 3501: "3:7,9"), runs collapsed, each short enough to send."""
    parts: list[str] = []
    length = 0
    index = 0
    while index < len(uids):
        end = index
        while end + 1 < len(uids) and uids[end + 1] == uids[end] + 1:
            end += 1
        part = str(uids[index]) if end == index else f"{uids[index]}:{uids[end]}"
        if parts and length + len(part) + 1 > UID_SET_LENGTH:
            yield ",".join(parts)
            parts, length = [], 0
        parts.append(part)
        length += len(part) + 1
        index = end + 1
    if parts:
        yield ",".join(parts)
