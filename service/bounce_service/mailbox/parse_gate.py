"""Is this message a bounce at all? Guards the free-text heuristics against ordinary mail.

Only messages without DSN fields reach this check; a false "yes" costs precision (addresses from
ordinary mail reported as bounced), so it needs a header only mail systems write, or a bounce-like
subject together with a failure sentence in the body.
"""

from __future__ import annotations

import re
from email.message import Message

from .parse_mime import header

_FROM = re.compile(
    r"mailer[-_ ]?daemon|postmaster|post_master|mail\s*delivery|delivery\s*(?:subsystem|system|status)"
    r"|mail\s*(?:administrator|system)|system\s*administrator",
    re.I,
)
_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery\s+(?:status|fail|problem|notification|report|has\s+failed|error)"
    r"|returned\s+(?:mail|to\s+sender)|failure\s+notice|mail\s+(?:delivery\s+)?fail|could\s+not\s+be\s+delivered"
    r"|not\s+(?:be\s+)?delivered|non\s+remis|unzustellbar|mail\s+system\s+error|permanent\s+(?:delivery\s+)?(?:failure|error)"
    r"|delivery\s+failed|message\s+delivery|non-?delivery|nondeliverable|\bbounce|unable\s+to\s+deliver"
    r"|error\s+sending|returned\s+mail|mail\s+failure|warning:\s+could\s+not\s+send",
    re.I,
)
_BODY = re.compile(
    r"could\s+not\s+be\s+delivered\s+to\s+(?:one\s+or\s+more|the\s+following)|following\s+address(?:es|\(es\))?\s+(?:failed|had)"
    r"|delivery\s+to\s+the\s+following\s+recipients?\s+(?:failed|was\s+aborted)|permanent\s+fatal\s+errors"
    r"|unable\s+to\s+deliver\s+(?:your\s+)?message\s+to|did\s+not\s+reach\s+the\s+following\s+recipient"
    r"|recipients?(?:\(s\))?\s+could\s+not\s+be\s+reached|wasn't\s+able\s+to\s+deliver\s+your\s+message"
    r"|error\s+delivering\s+your\s+mail|rejected\s+by\s+a\s+remote\s+mail\s+server",
    re.I,
)
_REPLY = re.compile(r"^\s*(?:re|aw|sv|antw)\s*:", re.I)


def from_mail_system(msg: Message) -> bool:
    """Headers only an MTA writes: enough to overrule auto-reply markers Exim also sets."""
    if header(msg, "X-Failed-Recipients") or msg.get_content_type() == "multipart/report":
        return True
    return _FROM.search(header(msg, "From")) is not None


def looks_like_bounce(msg: Message, subject: str, report: str) -> bool:
    """A bounce-only header (mail-system sender, null Return-Path, report type), or else both a
    bounce-like subject and a failure sentence: a subject alone also fits shipping notices and
    people writing about undelivered mail."""
    if from_mail_system(msg):
        return True
    if msg.get("Return-Path") is not None and header(msg, "Return-Path").strip() in ("<>", ""):
        return True
    # An MTA never replies; a person replying about delivery trouble quotes these phrases too.
    if _REPLY.match(subject) or msg.get("In-Reply-To") is not None or msg.get("References") is not None:
        return False
    return _SUBJECT.search(subject) is not None and _BODY.search(report) is not None
