"""Correlation data from the returned original message: listmonk UUIDs and Message-ID.

The original comes back as a message/rfc822 part, as text/rfc822-headers, or pasted into the
report text (often indented or ``>``-quoted), so the text search tolerates leading quote marks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.errors import MissingHeaderBodySeparatorDefect
from email.message import Message

from .parse_mime import header, part_text

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)
_TEXT_HEADER = re.compile(
    r"^[ \t>]*(x-listmonk-campaign|x-listmonk-subscriber|message-id)[ \t]*:[ \t]*(?:\r?\n[ \t]+)?([^\r\n]{0,1000})",
    re.I | re.M,
)
_NAMES = {"x-listmonk-campaign": "campaign", "x-listmonk-subscriber": "subscriber", "message-id": "message_id"}
# Where an original pasted into a text begins: after its own Content-Type line (a part whose boundary did
# not match, left inside the text of the part before it), or after the DSN's last field (RFC 3464 puts the
# returned message after the status fields).
_EMBEDDED = re.compile(r"^[ \t>]*content-type:[ \t]*(?:message/rfc822|text/rfc822-headers?)\b.*$", re.I | re.M)
_DSN_FIELD = re.compile(
    r"^[ \t>]*(?:final-recipient|original-recipient|action|status|diagnostic-code|remote-mta|last-attempt-date)"
    r"[ \t]*:.*$", re.I | re.M)
HEAD_OF_BODY = 64 * 1024


@dataclass(slots=True)
class Correlation:
    """Identifiers of the original message; a field stays None until some source supplies it."""

    campaign: str | None = None
    subscriber: str | None = None
    message_id: str | None = None

    def complete(self) -> bool:
        return None not in (self.campaign, self.subscriber, self.message_id)

    def offer(self, name: str, value: str) -> None:
        """Take ``value`` for ``name`` unless already known or malformed."""
        field = _NAMES.get(name.lower())
        if field is None or getattr(self, field) is not None:
            return
        parsed = _uuid(value) if field != "message_id" else _message_id(value)
        if parsed:
            setattr(self, field, parsed)


def _uuid(value: str) -> str | None:
    """Only an exact UUID (optionally in <>) is accepted: a truncated or padded one is not ours."""
    value = value.strip().strip("<>").strip()
    return value.lower() if len(value) == 36 and _UUID.fullmatch(value) else None


def _message_id(value: str) -> str | None:
    value = value.strip()
    if value.startswith("<"):
        if ">" not in value:
            return None  # cut short (a fold the original lost): the rest of the id is elsewhere
        value = value[1 : value.index(">")]
    value = value.strip("<> \t")
    return value if value and " " not in value and len(value) <= 500 else None


def from_message(corr: Correlation, msg: Message) -> None:
    """Fill ``corr`` from a parsed original's headers."""
    for name in _NAMES:
        corr.offer(name, header(msg, name))


def from_headers(corr: Correlation, headers: list[tuple[str, str]]) -> None:
    """Fill ``corr`` from (name, value) pairs, e.g. the header list of an SES notification."""
    for name, value in headers:
        corr.offer(name, value)


def from_text(corr: Correlation, text: str, message_id: bool = True) -> None:
    """Fill ``corr`` from headers quoted in text; ``message_id=False`` where the text may be the
    report itself (a forwarded bounce quotes the bounce's own Message-Id)."""
    for m in _TEXT_HEADER.finditer(text):
        if message_id or m.group(1).lower() != "message-id":
            corr.offer(m.group(1), m.group(2))


def headers_in_body(original: Message) -> str:
    """The start of an original's body where its header block broke early (a continuation line not
    indented, a blank line after the part's own headers): the rest of its headers are there."""
    broken = not original.keys() or any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in original.defects)
    if not broken or original.is_multipart():
        return ""
    return part_text(original)[:HEAD_OF_BODY]


def pasted_original(text: str) -> str:
    """What follows the last marker of a returned message pasted into ``text`` ("" if it has none)."""
    for pattern in (_EMBEDDED, _DSN_FIELD):
        last = None
        for last in pattern.finditer(text):
            pass
        if last is not None:
            return text[last.end():]
    return ""
