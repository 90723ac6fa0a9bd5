"""Split a bounce into its report texts, DSN / feedback fields and the returned original.

Everything here is bounded (part count, depth, decoded size) because the input is hostile: a
bounce is mail anyone on the internet can send us.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from dataclasses import dataclass, field
from email.errors import MessageError
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser

MAX_PARTS = 64
MAX_BLOCKS = 500  # DSN field groups: one per recipient
MAX_DEPTH = 8
MAX_TEXT = 256 * 1024
# How much of a header is decoded: decode_header takes time quadratic in the number of adjacent
# encoded-words (a 2 MB Subject of them took 7 s); no use of a decoded header needs more than this.
MAX_HEADER_INPUT = 32 * 1024

_TAG = re.compile(r"<[^<>]{0,2000}>")
_ORIGINAL_HEADER_TYPES = frozenset({"text/rfc822-headers", "text/rfc822-header", "text/rfc822"})
_ORIGINAL_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/rfc822-headers"})
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_FEEDBACK_TYPES = frozenset({"message/feedback-report"})
_HEADER_PARSER = HeaderParser(policy=email.policy.compat32)


@dataclass(slots=True)
class Sections:
    """The parts of a bounce, by role."""

    report_texts: list[str] = field(default_factory=list)
    html_texts: list[str] = field(default_factory=list)
    dsn_texts: list[str] = field(default_factory=list)
    feedback_texts: list[str] = field(default_factory=list)
    originals: list[Message] = field(default_factory=list)

    @property
    def report_text(self) -> str:
        """Human-readable report; HTML only stands in when there is no plain text."""
        return "\n\n".join(self.report_texts or self.html_texts)


def header(msg: Message, name: str) -> str:
    """Header value as ``str``. compat32 hands back a ``Header`` for raw 8-bit values (SMTPUTF8 mail,
    careless MTAs) whose ``str()`` turns every such byte into U+FFFD; its bytes are read as UTF-8."""
    value = msg.get(name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        chunks = decode_header(value)
    except (MessageError, ValueError, LookupError):
        return str(value)
    return "".join(
        decode_bytes(text, None if charset in (None, "unknown-8bit") else charset) if isinstance(text, bytes) else text
        for text, charset in chunks
    )


def decoded(value: str) -> str:
    """An RFC 2047 header value as text; malformed encoded-words (bad base64, unknown charsets) are
    kept as they came rather than losing the message."""
    value = value[:MAX_HEADER_INPUT]
    try:
        return str(make_header(decode_header(value)))
    except (MessageError, ValueError, LookupError, UnicodeError, AttributeError):  # bad base64, charset
        return value


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode with the declared charset, falling back to UTF-8 for unknown or bogus declarations."""
    data = data[:MAX_TEXT]
    if charset:
        try:
            return data.decode(charset, "replace")
        except (LookupError, ValueError):  # unknown codec, or a non-text one such as "base64"
            pass
    return data.decode("utf-8", "replace")


def part_text(part: Message) -> str:
    """Decoded body of a leaf part (transfer encoding and charset undone); '' for a multipart.

    Only the ``decode=True`` path of compat32's get_payload is safe: without it, 8-bit text is decoded
    with the part's charset parameter, and a bogus one (a NUL in it) raises ValueError.
    """
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except (ValueError, LookupError):  # unparseable charset parameter
        charset = None
    return decode_bytes(payload, charset)


def html_to_text(text: str) -> str:
    """Good enough HTML stripping to find addresses and status phrases."""
    return html.unescape(_TAG.sub("\n", text))


def fields_text(part: Message) -> str:
    """compat32 parses message/delivery-status and feedback-report bodies into header blocks."""
    if not part.is_multipart():
        return part_text(part)
    blocks = []
    for block in part.get_payload()[:MAX_BLOCKS]:
        if not isinstance(block, Message):
            continue
        lines = [f"{k}: {v if isinstance(v, str) else str(v)}" for k, v in block.items()]
        body = part_text(block)
        if body.strip():
            lines.append(body)  # fields after a stray blank line end up in the body
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def parse_headers_text(text: str) -> Message:
    """A text/rfc822-headers body as a Message (headers only)."""
    return _HEADER_PARSER.parsestr(text.lstrip("\r\n")[:MAX_TEXT], headersonly=True)


def _original_of(part: Message) -> Message | None:
    if part.is_multipart():
        return next((p for p in part.get_payload() if isinstance(p, Message)), None)
    return parse_headers_text(part_text(part))


def split(msg: Message) -> Sections:
    """Walk the MIME tree (bounded) and sort each part into a :class:`Sections` role.

    Returned originals are not descended into: a bounce quoting an older bounce must not report
    the older one's recipients.
    """
    out = Sections()
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        ctype = part.get_content_type()
        if ctype in _DSN_TYPES:
            out.dsn_texts.append(fields_text(part))
        elif ctype in _FEEDBACK_TYPES:
            out.feedback_texts.append(fields_text(part))
        elif ctype in _ORIGINAL_MESSAGE_TYPES or ctype in _ORIGINAL_HEADER_TYPES:
            original = _original_of(part)
            if original is not None:
                out.originals.append(original)
        elif part.is_multipart():
            if depth < MAX_DEPTH:
                stack.extend((p, depth + 1) for p in reversed(part.get_payload()) if isinstance(p, Message))
        elif ctype == "text/html":
            out.html_texts.append(html_to_text(part_text(part)))
        elif depth and part.get("Message-ID") and (part.get("Received") or part.get("From")):
            out.originals.append(part)  # an original attached as a bare part: its MIME headers are its own
        elif part.get_content_maintype() in ("text", "multipart"):  # multipart here: a boundary-less body
            out.report_texts.append(part_text(part))
    return out


def parse_message(raw: bytes) -> Message:
    """compat32 is several times faster than policy.default and tolerant of broken input.

    The stdlib parser recurses once per MIME nesting level, so absurdly nested input raises
    RecursionError; the top-level headers with the body as plain text are still worth reading.
    """
    try:
        return email.message_from_bytes(raw, policy=email.policy.compat32)
    except RecursionError:
        return _flat(raw)


def _flat(raw: bytes) -> Message:
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    msg = _HEADER_PARSER.parsestr(head.decode("ascii", "surrogateescape"), headersonly=True)
    del msg["Content-Type"], msg["Content-Transfer-Encoding"]
    msg.set_payload(decode_bytes(body, "utf-8"))
    return msg
