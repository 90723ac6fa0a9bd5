"""Vacation / out-of-office detection: auto-replies are not bounces and must yield nothing."""

from __future__ import annotations

import re
from email.message import Message

from .parse_mime import header

_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[\s_-]*(?:reply|response|antwort|risposta|respuesta)|auto:|autoreply|"
    r"out\s+of\s+(?:the\s+)?office|ooo\b|on\s+vacation|vacation\s+(?:reply|notice|message)|"
    r"abwesenheitsnotiz|r[ée]ponse\s+automatique|respuesta\s+autom[áa]tica|risposta\s+automatica|"
    r"absence\s+du\s+bureau|automatisch\s+antwoord|autosvar|automatyczna\s+odpowied|автоматический\s+ответ|"
    r"otomatik\s+yan[ıi]t|自動応答|自动回复)",
    re.I,
)


def is_auto_reply(msg: Message, subject: str) -> bool:
    """RFC 3834 headers, the de-facto X-Autoreply family, or an unmistakable subject."""
    if header(msg, "Auto-Submitted").strip().lower().startswith("auto-replied"):
        return True
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Vacation"):
        value = header(msg, name).strip().lower()
        if value and value not in ("no", "false", "0"):
            return True
    if header(msg, "Precedence").strip().lower() == "auto_reply":
        return True
    return bool(_SUBJECT.match(subject))
