"""Recipients named by the human-readable text of a bounce (MTAs that send no DSN fields).

Each MTA family words its report differently (Exim "The following address(es) failed:", qmail
"<addr>:", Sendmail "554 <addr>... reason", Exchange "addr on <date>", Gmail "Delivery to the
following recipient failed permanently:", ...), but they share a few layouts: the recipient starts a
line, follows a "delivering to"/"recipient" phrase, or is the argument of RCPT TO. Matching those
layouts instead of each MTA's exact wording keeps this working for MTAs we have not seen.
"""

from __future__ import annotations

import functools
import re
from typing import Collection

# Bounded quantifiers keep the scan linear on hostile input (a long run of address characters).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
ADDR = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@" + _LABEL + r"(?:\." + _LABEL + "){1,8}"
_ADDR_START = r"(?<![A-Za-z0-9!#$%&'*+/=?^_`{|}~.-])"
ADDRESS = re.compile(_ADDR_START + "(" + ADDR + ")")

# Where a report's own text ends and the returned message (quoted as text) begins.
_ORIGINAL_MARKER = re.compile(
    r"""^[ \t>]*(?:[-=*_#]+[ \t]*)?(?:
        this\s+is\s+a\s+copy\s+of\s+the\s+message
      | below\s+this\s+line\s+is\s+a\s+copy\s+of\s+the\s+message
      | below\s+is\s+a\s+copy\s+of\s+the\s+original\s+message
      | (?:the\s+)?original\s+(?:message|mail|e-?mail)\s*(?:follows|as\s+follows|headers?\s+follows?|-{2,}|$)
      | unsent\s+message\s+follows
      | message\s+headers?\s+follows?
      | included\s+is\s+a\s+copy\s+of\s+the\s+message
      | the\s+header\s+of\s+the\s+original\s+message
      | returned\s+message\s*-{2,}
    )""",
    re.I | re.M | re.X,
)
_HEADER_LINE = re.compile(
    r"^(?:Return-Path|Received|Message-I[Dd]|DKIM-Signature|From|To|Cc|Subject|Date|MIME-Version|Content-Type"
    r"|Delivered-To|Authentication-Results|Reply-To|Sender|X-[A-Za-z0-9-]+)[ \t]*:",
    re.M,
)
_MESSAGE_HEADER = re.compile(r"(?:Return-Path|Received|Message-I[Dd]|DKIM-Signature|From|To|Subject|Date)[ \t]*:")
_HEADER_OR_CONT = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]{0,60}[ \t]*:|[ \t]+\S)")

# Layouts that name a failed recipient.
# A bare address used as the display name of an angle-addr ("a@x <b@y>") is skipped: per RFC 5322 the
# address in angle brackets is the mailbox.
_LINE_START = re.compile(
    r"^[ \t>*•\-\[\"']*(?:\d+\)\s*)?(?:" + ADDR + r"[ \t]+(?=<))?<?" + _ADDR_START + "(" + ADDR + ")>?", re.M
)
_RCPT_TO = re.compile(r"RCPT\s+TO\s*(?::\s*)?<?(" + ADDR + ")", re.I)
_REPLY_ADDR = re.compile(r"\b[45]\d\d[ -](?:[45]\.\d{1,3}\.\d{1,3}\s+)?<(" + ADDR + r")>\s*(?:\.\.\.|:)")
_PHRASE = re.compile(
    r"(?:(?:deliver(?:ed|ing|y)?|sent|sending|send)\b[^\n@<]{0,40}?\bto|recipients?(?:\s+address)?|addressee"
    r"|for\s+the\s+following\s+address(?:es)?|\baddress|generated\s+from|destinataire|empf(?:ä|ae)nger)"
    r"\s*(?::\s*)?<?(" + ADDR + ")",
    re.I,
)
# "<reason>: addr" at the end of a line, except header-like labels naming senders or ids.
_LABELLED = re.compile(
    r"^(?![ \t>]*x-[\w-]+[ \t]*:)(?![^\n@:]*\b(?:from|sender|reply-to|return-path|message-id|references|in-reply-to)\b)"
    r"[^\n@:]{3,80}:[ \t]*<?(" + ADDR + r")>?(?:[ \t]*\.)?[ \t]*$",
    re.M | re.I,
)
# "Kiji Tora (kijitora@example.jp)" or "Kiji Tora <kijitora@example.jp>" alone on a line (Exchange).
_DISPLAY_NAME = re.compile(r"^[ \t]*[^\n@<>():]{1,80}[(<](" + ADDR + r")[)>][ \t]*$", re.M)
_STRONG = (_LINE_START, _RCPT_TO, _REPLY_ADDR, _PHRASE, _LABELLED, _DISPLAY_NAME)

MAX_PARAGRAPH_LINES = 10
# What paragraph_for reads after a mention: its lines at RFC 5322's 998 characters at most.
PARAGRAPH_SPAN = MAX_PARAGRAPH_LINES * 2 * 1000


@functools.lru_cache(maxsize=4)
def _lowered(report: str) -> str:
    return report.lower()


def split_original(text: str) -> tuple[str, str]:
    """(report, quoted original) of one text part."""
    cut = len(text)
    m = _ORIGINAL_MARKER.search(text)
    if m:
        cut = m.start()
    block = _header_block_start(text, cut)
    if block is not None:
        cut = block
    return text[:cut], text[cut:]


def _header_block_start(text: str, limit: int) -> int | None:
    """Start of the first run of >= 3 header lines: an original pasted without a marker line."""
    for m in _HEADER_LINE.finditer(text, 0, limit):
        lines = text[m.start() : m.start() + 2000].splitlines()[:12]
        headers = 0
        message_headers = 0
        for line in lines:
            if not _HEADER_OR_CONT.match(line):
                break
            if line[:1] not in (" ", "\t"):
                headers += 1
                message_headers += _MESSAGE_HEADER.match(line) is not None
        # MIME part headers of a broken multipart (Content-*) are not a returned message.
        if headers >= 3 and message_headers:
            return m.start()
    return None


def strong_candidates(report: str) -> list[str]:
    """Addresses in a recipient-naming layout, in order of first appearance."""
    found: list[tuple[int, str]] = []
    for rx in _STRONG:
        found.extend((m.start(1), m.group(1).lower()) for m in rx.finditer(report))
    return _unique(a for _, a in sorted(found))


def all_addresses(report: str) -> list[str]:
    """Every address in the report, in order of first appearance."""
    return _unique(m.group(1).lower() for m in ADDRESS.finditer(report))


def paragraph_for(report: str, address: str, others: Collection[str]) -> str:
    """The lines describing ``address``: from its first mention up to the next recipient's.

    Called once per recipient of one report, so it reads only the stretch after the mention: a report
    of thousands of recipients must not be read (or lower-cased) whole each time.
    """
    lower = _lowered(report)
    pos = lower.find(address)
    if pos < 0:
        return ""
    start = lower.rfind("\n", 0, pos) + 1
    lines = report[start:start + PARAGRAPH_SPAN].splitlines()
    out = [lines[0]] if lines else []
    for line in lines[1 : MAX_PARAGRAPH_LINES * 2]:
        low = line.lower()
        if _LINE_START.match(line) and any(o in low for o in others if o != address):
            break
        if line.strip():
            out.append(line.strip())
        if len(out) >= MAX_PARAGRAPH_LINES:
            break
    return "\n".join(out)


def _unique(items) -> list[str]:
    seen: dict[str, None] = {}
    for a in items:
        a = a.strip(".").lower()
        if a not in seen:
            seen[a] = None
    return list(seen)
