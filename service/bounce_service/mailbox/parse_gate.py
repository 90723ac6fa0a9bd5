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
# That something failed: a 4.x.x/5.x.x status or a 4xx/5xx SMTP reply, or non-delivery wording. Mail
# systems also send success notices ("delivered", "relayed"), read receipts and acknowledgements.
_FAILURE = re.compile(
    r"(?<![\d.])[45]\.\d{1,3}\.\d{1,3}(?![\d.]*\d)|(?:^|[\s(\[<:;\"'-])[45]\d\d(?:[ -]|$)"
    r"|undeliver|not\s+(?:be\s+)?delivered|(?:could|can)\s*(?:no|n.)t\s+(?:be\s+)?deliver|unable\s+to\s+deliver"
    r"|delivery\s+(?:has\s+)?failed|fail(?:ed|ure|s)?\b|fatal|permanent|rejected|refused|denied|aborted|expired"
    r"|timed?\s*out|delay|does\s+not\s+exist|unknown|not\s+found|returned|bounce|giving\s+up|given\s+up|error"
    r"|unzustellbar|nicht\s+zugestellt|non\s+remis|pas\s+pu\s+(?:être|etre)\s+(?:remis|distribu)|échec"
    r"|no\s+se\s+pudo\s+entregar|no\s+entregado|mancata\s+consegna|não\s+p[ôo]de\s+ser\s+entregue"
    r"|não\s+foi\s+possível\s+entregar|onbestelbaar|niet\s+(?:worden\s+)?afgeleverd|niedostarczon|nie\s+może\s+zostać"
    r"|не\s+(?:может\s+быть\s+)?доставлено|не\s+удалось\s+доставить"
    r"|できませんでした|できません|存在しません|見つかりません|届きません|宛先不明|エラー|无法投递|退信|发送失败|未能送达",
    re.I | re.M,
)
_DISPOSITION = re.compile(r"report-type\s*=\s*\"?disposition-notification", re.I)


def from_mail_system(msg: Message) -> bool:
    """Headers only an MTA writes: enough to overrule auto-reply markers Exim also sets."""
    if header(msg, "X-Failed-Recipients") or msg.get_content_type() == "multipart/report":
        return True
    return _FROM.search(header(msg, "From")) is not None


def looks_like_bounce(msg: Message, subject: str, report: str) -> bool:
    """A bounce-only header (mail-system sender, null Return-Path, report type) with any sign of a
    failure, or else both a bounce-like subject and a failure sentence: a subject alone also fits
    shipping notices and people writing about undelivered mail. Read receipts (RFC 8098) never are."""
    if _DISPOSITION.search(header(msg, "Content-Type")):
        return False
    if header(msg, "X-Failed-Recipients"):
        return True
    null_sender = msg.get("Return-Path") is not None and header(msg, "Return-Path").strip() in ("<>", "")
    if from_mail_system(msg) or null_sender:
        return _FAILURE.search(subject) is not None or _FAILURE.search(report) is not None
    # An MTA never replies; a person replying about delivery trouble quotes these phrases too.
    if _REPLY.match(subject) or msg.get("In-Reply-To") is not None or msg.get("References") is not None:
        return False
    return _SUBJECT.search(subject) is not None and _BODY.search(report) is not None
