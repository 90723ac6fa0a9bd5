"""VERP: the sender put the subscriber's UUID in the return path (`bounces+<uuid>@example.com`).

The bounce comes back to that address, so the envelope recipient names the subscriber even when the
bounce quotes nothing of the original message.
"""

from __future__ import annotations

from email.message import Message
from email.utils import getaddresses

from ..events import UUID_RE

# Where MTAs and delivery agents leave the envelope recipient; `To` is the DSN's own addressee.
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "To")


def subscriber_uuid(headers: Message, prefix: str) -> str | None:
    """The UUID after `prefix` in the first recipient address that carries one."""
    values = [str(v) for name in RECIPIENT_HEADERS for v in headers.get_all(name, [])]
    for _, address in getaddresses(values):
        local = address.rpartition("@")[0]
        if local[: len(prefix)].lower() == prefix.lower():
            token = local[len(prefix):]
            if UUID_RE.match(token):
                return token.lower()
    return None
