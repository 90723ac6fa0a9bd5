"""SparkPost event webhooks: HTTP Basic (SparkPost signs nothing), arrays of `{"msys": {...}}`.

The `bounce_class` table is SparkPost's own (reference §5.4): only classes 10 and 30 say the address
is invalid; blocks, DNS trouble and full mailboxes are soft. The empty `[{"msys": {}}]` batch SparkPost
posts when a webhook is saved must answer 200 or SparkPost refuses to save it.
"""

from __future__ import annotations

from typing import Any, Mapping

from . import _fields as f
from ._base import BasicAuthProvider, Handled, Inbound

HARD_CLASSES = frozenset({"10", "30"})
# Auto-replies, subscribe/unsubscribe requests and challenge-response mail are not delivery failures.
IGNORED_CLASSES = frozenset({"60", "80", "90", "100"})
META_FIELDS = ("type", "bounce_class", "error_code", "reason", "raw_reason", "fbtype", "report_by", "event_id",
               "message_id", "transmission_id", "campaign_id", "rcpt_type")


def classify(event: Mapping[str, Any]) -> str | None:
    kind = event.get("type")
    if kind == "spam_complaint":
        return "complaint"
    if kind not in ("bounce", "out_of_band"):
        return None  # delivery, delay (SparkPost retries), policy_rejection (its own refusal), tracking
    bounce_class = str(event.get("bounce_class", ""))
    if bounce_class in IGNORED_CLASSES:
        return None
    return "hard" if bounce_class in HARD_CLASSES else "soft"


class SparkPost(BasicAuthProvider):
    name = "sparkpost"

    async def receive(self, inbound: Inbound) -> Handled:
        self.authenticate(inbound)
        found = []
        for position, item in f.items(f.document(inbound.body), array=True):
            for group, value in f.obj(item.get("msys"), f"{position}.msys").items():
                where = f"{position}.msys.{group}"
                event = f.obj(value, where)
                kind = classify(event)
                if kind is not None:
                    found.append(self.event(
                        kind,
                        f.recipient(event.get("rcpt_to"), f"{where}.rcpt_to"),
                        key=[f.text(event.get("event_id"), f"{where}.event_id")],
                        created_at=f.from_unix(event.get("timestamp"), f"{where}.timestamp"),
                        meta=f.pick(event, *META_FIELDS),
                        tracking=[f.optional_obj(event.get("rcpt_meta"), f"{where}.rcpt_meta")],
                    ))
        return Handled(found)
