"""Amazon SES notifications mailed as JSON (SNS e-mail subscriptions), not as DSNs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .parse_reason import classify

# SNS wraps long lines as "!" + CRLF + space; undo it before decoding.
_SNS_WRAP = re.compile(r"!\r?\n ")
_MARKER = re.compile(r'"(?:notificationType|eventType)"\s*:')
MAX_JSON = 512 * 1024
_SOFT_SUBTYPES = frozenset({"mailboxfull", "messagetoolarge", "contentrejected", "attachmentrejected"})
_HARD_SUBTYPES = frozenset({"noemail", "suppressed", "onaccountsuppressionlist"})


@dataclass(slots=True)
class SesResult:
    """What one SES notification says; ``recipients`` is (address, type, status, diagnostic)."""

    kind: str  # "bounce", "complaint" or "other" (deliveries, opens, ...)
    recipients: list[tuple[str, str, str, str]]
    headers: list[tuple[str, str]]


def parse_ses(text: str) -> SesResult | None:
    """The SES notification in ``text``, or None when the text is not one."""
    if not _MARKER.search(text, 0, MAX_JSON):
        return None
    start = text.find("{")
    if start < 0:
        return None
    try:
        doc, _ = json.JSONDecoder().raw_decode(_SNS_WRAP.sub("", text[start : start + MAX_JSON]))
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        return None
    if isinstance(doc, dict) and isinstance(doc.get("Message"), str):  # raw SNS envelope
        try:
            doc = json.loads(doc["Message"])
        except (ValueError, RecursionError):
            return None
    if not isinstance(doc, dict):
        return None
    kind = str(doc.get("notificationType") or doc.get("eventType") or "").lower()
    mail = doc.get("mail") if isinstance(doc.get("mail"), dict) else {}
    headers = [
        (str(h.get("name", "")), str(h.get("value", "")))
        for h in mail.get("headers") or []
        if isinstance(h, dict)
    ]
    if kind == "bounce":
        return SesResult("bounce", _bounced(doc.get("bounce")), headers)
    if kind == "complaint":
        complaint = doc.get("complaint") if isinstance(doc.get("complaint"), dict) else {}
        rcpts = [
            (str(r.get("emailAddress", "")), "complaint", "", str(complaint.get("complaintFeedbackType", "")))
            for r in complaint.get("complainedRecipients") or []
            if isinstance(r, dict)
        ]
        return SesResult("complaint", rcpts, headers)
    return SesResult("other", [], headers)


def _bounced(bounce: object) -> list[tuple[str, str, str, str]]:
    if not isinstance(bounce, dict):
        return []
    permanent = str(bounce.get("bounceType", "")).lower() == "permanent"
    subtype = str(bounce.get("bounceSubType", "")).lower()
    out = []
    for r in bounce.get("bouncedRecipients") or []:
        if not isinstance(r, dict):
            continue
        status = str(r.get("status") or "")
        diagnostic = str(r.get("diagnosticCode") or "")
        if not permanent or subtype in _SOFT_SUBTYPES:
            kind = "soft"
        elif subtype in _HARD_SUBTYPES:
            kind = "hard"
        else:
            kind = classify(status, [diagnostic])
        out.append((str(r.get("emailAddress", "")), kind, status, diagnostic))
    return out
