"""POP3 (RFC 1939, STLS from RFC 2595): the few commands a scanner needs.

Written here rather than on poplib, which aborts on any line over 2048 bytes; real bounces carry longer
lines. Every read is bounded by the mailbox's maxMessageSize instead, and every socket operation by its
timeout.
"""

from __future__ import annotations

import socket
from typing import Sequence

from .client import MailboxError, Message, MessageError, describe, tls_context
from .settings import MailboxSettings

_TERMINATOR = (b".\r\n", b".\n")


DRAIN_FACTOR = 4  # how much more than maxMessageSize is read and dropped to keep a session whose LIST lied


class Refused(MailboxError):
    """The server answered -ERR."""

    def __init__(self, where: str, command: str, reply: str) -> None:
        super().__init__(f"{where}: {command} refused: {reply}")
        self.reply = reply


class Pop3Client:
    def __init__(self, sock: socket.socket, settings: MailboxSettings) -> None:
        self._settings = settings
        self._where = f"{settings.host}:{settings.port}"
        self._sock = sock
        self._file = sock.makefile("rb")
        self._broken = False

    @classmethod
    def connect(cls, settings: MailboxSettings) -> "Pop3Client":
        where = f"{settings.host}:{settings.port}"
        try:
            sock = socket.create_connection((settings.host, settings.port), timeout=settings.timeout)
        except OSError as exc:
            raise MailboxError(f"cannot connect to {where}: {describe(exc)}") from exc
        client = cls(sock, settings)
        try:
            client._open()
        except BaseException:
            client._drop()
            raise
        return client

    def _open(self) -> None:
        settings = self._settings
        if settings.tls == "implicit":
            self._start_tls()
        self._status("connection")  # the greeting
        if settings.tls == "starttls":
            self._command("STLS")
            self._start_tls()
        if settings.username is not None:
            assert settings.password is not None
            try:
                self._command(f"USER {settings.username}")
                self._command(f"PASS {settings.password.reveal()}")
            except Refused as exc:
                raise MailboxError(f"{self._where}: login as {settings.username} refused: {exc.reply}") from None

    def _start_tls(self) -> None:
        try:
            self._sock = tls_context(self._settings).wrap_socket(self._sock, server_hostname=self._settings.host)
        except OSError as exc:
            self._broken = True
            raise MailboxError(f"{self._where}: TLS failed: {describe(exc)}") from exc
        self._file = self._sock.makefile("rb")

    def messages(self) -> list[Message]:
        listing = self._listing("LIST")
        if not all(size.isdigit() for _, size in listing):
            raise MailboxError(f"{self._where}: a LIST line without a size in octets")
        sizes = {number: int(size) for number, size in listing}
        try:
            uids = dict(self._listing("UIDL"))
        except Refused:  # UIDL is optional in RFC 1939; the session's numbers still address messages
            uids = {}
        return [Message(number, uids.get(number, str(number)), size) for number, size in sorted(sizes.items())]

    def fetch(self, message: Message) -> bytes:
        try:
            self._command(f"RETR {message.handle}")
        except Refused as exc:
            raise MessageError(f"RETR {message.uid} refused: {exc.reply}") from None
        return b"".join(self._lines(self._settings.max_message_size))

    def remove(self, messages: Sequence[Message]) -> None:
        for message in messages:
            self._command(f"DELE {message.handle}")

    def close(self) -> None:
        if self._broken:
            self._drop()
            return
        try:
            self._command("QUIT")  # the server deletes the DELE'd messages only now
        finally:
            self._drop()

    def _drop(self) -> None:
        self._file.close()
        self._sock.close()

    def _listing(self, command: str) -> list[tuple[int, str]]:
        """(message number, first value) of each line; RFC 1939 lets a server add text after the value."""
        self._command(command)
        pairs = []
        for line in self._lines(None):
            fields = line.decode("ascii", "replace").split()
            if not fields:
                continue
            if len(fields) < 2 or not fields[0].isdigit():
                raise MailboxError(f"{self._where}: unreadable {command} line from the server: {line[:80]!r}")
            pairs.append((int(fields[0]), fields[1]))
        return pairs

    def _command(self, line: str) -> str:
        if "\r" in line or "\n" in line:
            raise MailboxError(f"{self._where}: refusing to send a line break inside a command")
        try:
            self._sock.sendall(line.encode() + b"\r\n")
        except OSError as exc:
            self._broken = True
            raise MailboxError(f"{self._where}: {describe(exc)}") from exc
        return self._status(line.partition(" ")[0])  # the verb only: PASS carries the password

    def _status(self, command: str) -> str:
        line = self._readline()
        text = line.decode("utf-8", "replace").strip()
        if text.startswith("+OK"):
            return text[3:].strip()
        if text.startswith("-ERR"):
            raise Refused(self._where, command, text[4:].strip() or "-ERR")
        self._broken = True
        raise MailboxError(f"{self._where}: unexpected reply {text[:200]!r}")

    def _lines(self, budget: int | None) -> list[bytes]:
        """A multi-line response, dot-unstuffed, line endings kept; at most `budget` bytes of it."""
        lines = []
        total = 0
        while True:
            line = self._readline()
            if line in _TERMINATOR:
                return lines
            if line.startswith(b"."):
                line = line[1:]
            total += len(line)
            if budget is not None and total > budget:
                self._drain(DRAIN_FACTOR * budget - total)
                # Its LIST size said less: this one message is left in place, the session goes on.
                raise MessageError(f"larger than maxMessageSize ({budget} bytes) though LIST said less")
            lines.append(line)

    def _drain(self, budget: int) -> None:
        """Read the rest of a multi-line response and drop it; past `budget` bytes, give the session up."""
        while budget > 0:
            line = self._readline()
            if line in _TERMINATOR:
                return
            budget -= len(line)
        self._broken = True  # the rest of the response is still on the wire
        raise MailboxError(f"{self._where}: a response far larger than maxMessageSize; session abandoned")

    def _readline(self) -> bytes:
        limit = self._settings.max_message_size + 2
        try:
            line = self._file.readline(limit)
        except OSError as exc:
            self._broken = True
            raise MailboxError(f"{self._where}: {describe(exc)}") from exc
        if not line.endswith(b"\n"):
            self._broken = True
            raise MailboxError(f"{self._where}: " + ("connection closed by the server" if len(line) < limit
                                                     else f"line longer than {limit} bytes"))
        return line
