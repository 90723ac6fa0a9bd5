"""RFC 3464 delivery-status fields: per-recipient blocks from a DSN part or from plain text.

MTAs do not always put the fields in a ``message/delivery-status`` part: some paste them into a
text/plain body, others forward a whole bounce as text. Reading the fields from text covers all of
these with one code path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]{1,40})[ \t]*:[ \t]*(.*)$")
# Free text also carries 2.x.x codes from successful SMTP steps; only failures are interesting.
_STATUS = re.compile(r"(?<![\d.])([45])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_STATUS_ANY = re.compile(r"(?<![\d.])[245]\.\d{1,3}\.\d{1,3}(?![\d.]*\d)")
_PER_RECIPIENT = frozenset({"final-recipient", "original-recipient", "action", "status", "diagnostic-code"})
_ADDRESS_TYPE = re.compile(r"^\s*(?:rfc822|rfc-822|smtp|x-[\w-]*|utf-8|unknown)\s*;\s*", re.I)
_DIAGNOSTIC_TYPE = re.compile(r"^\s*(?:smtp|x-[\w-]+|unix|local|x400)\s*;\s*", re.I)
_MAILBOX = re.compile(r"^[^\s@<>|/\\]+@[^\s@<>]+$")
# Texts worth running the line parser on: they really carry DSN fields.
_DSN_MARKER = re.compile(r"^[ \t>]*(?:final|original)-recipient[ \t]*:", re.I | re.M)

SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded", "deliverable"})
MAX_FIELD = 2000


@dataclass(slots=True)
class DsnRecipient:
    """One per-recipient block; ``address`` is the Final-Recipient (else Original-Recipient)."""

    address: str = ""
    original: str = ""
    action: str = ""
    status: str = ""
    diagnostic: str = ""

    @property
    def succeeded(self) -> bool:
        """Success notices carry a success action, or no action and a 2.x.x status."""
        if self.action:
            return self.action in SUCCESS_ACTIONS
        return self.status.startswith("2.")


def find_status(text: str) -> str:
    """First failure status code (``5.1.1``, ``4.4.7``) in ``text``, or ''."""
    m = _STATUS.search(text)
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m else ""


def clean_address(value: str) -> str:
    """``rfc822; <Kijitora@Example.JP>`` -> ``kijitora@example.jp``."""
    value = _ADDRESS_TYPE.sub("", value).strip().strip('"').strip()
    if value.startswith("<") and ">" in value:
        value = value[1 : value.index(">")]
    return value.strip().strip("<>").strip().lower()


def has_dsn_fields(text: str) -> bool:
    """Cheap pre-check so plain texts without DSN fields skip the line parser."""
    return _DSN_MARKER.search(text) is not None


def _unfold(text: str) -> list[str]:
    """Join RFC 5322 continuation lines; a ``> `` quote prefix is dropped (forwarded bounces)."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw[2:] if raw.startswith("> ") else raw.lstrip(">") if raw.startswith(">") else raw
        if line[:1] in (" ", "\t") and lines and lines[-1]:
            if len(lines[-1]) < MAX_FIELD:
                lines[-1] += " " + line.strip()
        else:
            lines.append(line.rstrip())
    return lines


def parse_fields(text: str) -> list[DsnRecipient]:
    """Per-recipient blocks of every DSN field group found in ``text``.

    Blocks are separated by blank lines, but some MTAs put Status/Diagnostic-Code before
    Final-Recipient and others omit the blank line between recipients; a repeated recipient or
    Action field therefore also starts a new block.
    """
    out: list[DsnRecipient] = []
    cur = DsnRecipient()
    for line in [*_unfold(text), ""]:  # the final "" flushes the last block
        m = _FIELD.match(line)
        if not m:
            if not line.strip():
                _flush(cur, out)
                cur = DsnRecipient()
            continue
        name, value = m.group(1).lower(), m.group(2).strip()
        if name not in _PER_RECIPIENT:
            continue
        repeated = {
            "final-recipient": cur.address,
            "original-recipient": cur.original,
            "action": cur.action and (cur.address or cur.original),
        }.get(name)
        if repeated:
            _flush(cur, out)
            cur = DsnRecipient()
        if name == "final-recipient":
            cur.address = clean_address(value)
        elif name == "original-recipient":
            cur.original = clean_address(value)
        elif name == "action":
            cur.action = value.split()[0].lower() if value else ""
        elif name == "status":
            m2 = _STATUS_ANY.search(value)
            cur.status = m2.group(0) if m2 else ""
        else:
            cur.diagnostic = _DIAGNOSTIC_TYPE.sub("", value, count=1)  # "smtp; 550 ..." -> "550 ..."
    return out


def _flush(block: DsnRecipient, out: list[DsnRecipient]) -> None:
    if not _MAILBOX.match(block.address):
        # Exim names pipes and files here ("|/usr/bin/prog"); the original address is the mailbox.
        block.address = block.original if _MAILBOX.match(block.original) else ""
    if block.address:
        out.append(block)
