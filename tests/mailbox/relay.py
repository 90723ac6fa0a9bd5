"""A TCP relay between the scanner and Dovecot that breaks one session at a chosen point (test_faults.py).

It sits on a plain port (tls: none), so it can see the scanner's commands. When the client has sent
`trigger` for the `nth` time (POP3 "RETR ", IMAP "BODY.PEEK[]"), the relay first calls `on_trigger` (the
test's chance to break something else at exactly that point: the command has not reached the server yet),
then passes `cut_after` bytes of the server's answer and breaks the session: "drop" closes both
connections, as a crashed server or a reset does; "stall" keeps them open and forwards nothing more, as a
hung server does. Without `cut_after` everything passes. `seen` counts every `trigger` the client sent.
"""

from __future__ import annotations

import socket
import threading
from typing import Callable, Literal

BUFFER = 65536
# What the scanner sends to download a message: a trigger that counts or breaks downloads.
DOWNLOAD = {"pop3": b"RETR ", "imap": b"BODY.PEEK[]"}


class Relay:
    def __init__(self, upstream_port: int, trigger: bytes, *, nth: int = 1, cut_after: int | None = None,
                 fault: Literal["drop", "stall"] = "drop", on_trigger: Callable[[], None] | None = None) -> None:
        self.upstream_port = upstream_port
        self.trigger = trigger
        self.nth = nth
        self.cut_after = cut_after
        self.fault = fault
        self.on_trigger = on_trigger
        self.triggered = threading.Event()
        self.seen = 0
        self._budget: int | None = None  # bytes of the server's answer still to pass, once triggered
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> "Relay":
        self._spawn(self._accept)
        return self

    def __exit__(self, *_: object) -> None:
        _close(self._listener)  # the shutdown wakes the accepting thread
        for sock in [*self._sockets]:
            _close(sock)
        for thread in self._threads:
            thread.join(10)

    def _spawn(self, target: Callable, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener is closed: the relay is over
                return
            server = socket.create_connection(("127.0.0.1", self.upstream_port))
            self._sockets += [client, server]
            self._spawn(self._upstream, client, server)
            self._spawn(self._downstream, server, client)

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        tail = b""  # a trigger split across two reads is still seen
        while data := _recv(client):
            window = tail + data
            self.seen += window.count(self.trigger)
            if not self.triggered.is_set() and self.trigger in window:
                if self.seen >= self.nth:
                    if self.on_trigger:
                        self.on_trigger()
                    self._budget = self.cut_after  # set before the command goes on: its answer is what follows
                    self.triggered.set()
            tail = window[-(len(self.trigger) - 1):]
            if not _send(server, data):
                break
        _close(client)
        _close(server)

    def _downstream(self, server: socket.socket, client: socket.socket) -> None:
        while data := _recv(server):
            if self._budget is not None:
                data, self._budget = data[:self._budget], max(0, self._budget - len(data))
            if data and not _send(client, data):
                break
            if self._budget == 0 and self.fault == "drop":
                break
            # stalled: what the server says next is read and dropped until the client gives up
        _close(server)
        _close(client)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(BUFFER)
    except OSError:  # closed by the other pump
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
        return True
    except OSError:
        return False


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # wakes a pump blocked in recv on it
    except OSError:
        pass
    sock.close()
