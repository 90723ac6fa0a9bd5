"""RFC 5965 ARF feedback reports (and Hotmail's JMRP variant): who complained."""

from __future__ import annotations

import re
from email.message import Message
from email.utils import getaddresses

from .dsn import clean_address
from .parse_mime import header

_FIELD = re.compile(r"^(original-rcpt-to|removal-recipient|feedback-type)[ \t]*:[ \t]*(.+)$", re.I | re.M)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def is_jmrp(originals: list[Message], subject: str) -> bool:
    """Hotmail/Outlook JMRP: no feedback part, but the attached original carries
    X-HmXmrOriginalRecipient and the report says it is a complaint."""
    return "complaint" in subject.lower() and any(o.get("X-HmXmrOriginalRecipient") for o in originals)


def complainants(feedback_texts: list[str], originals: list[Message]) -> list[str]:
    """Recipients of the reported message: the report's own fields first (the original's To: may
    be a list or alias address), else the returned original's recipient headers."""
    found: list[str] = []
    for text in feedback_texts:
        for m in _FIELD.finditer(text):
            if m.group(1).lower() != "feedback-type":
                found.append(clean_address(m.group(2)))
    if not found:
        for original in originals:
            values = [header(original, "X-HmXmrOriginalRecipient"), header(original, "To")]
            for value in values:
                if value:
                    found.extend(a.lower() for _, a in getaddresses([value]))
                    break
            if found:
                break
    return list(dict.fromkeys(a for a in found if _EMAIL.match(a)))
