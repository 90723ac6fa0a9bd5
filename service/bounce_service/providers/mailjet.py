"""Mailjet's Event API: HTTP Basic in the callback URL, grouped arrays or single events.

Mailjet warns not to act on `hard_bounce` alone (reference §3.4): the address is only dead when the
`error` says so too. Mailjet sends no event id, so the key is composite (§3.5).
"""

from __future__ import annotations

from typing import Any, Mapping

from . import _fields as f
from ._base import BasicAuthProvider, Handled, Inbound

DEAD = frozenset({"user unknown", "mailbox inactive", "invalid domain", "no mail host", "typofix"})
META_FIELDS = ("event", "error_related_to", "error", "comment", "hard_bounce", "blocked", "source",
               "MessageID", "Message_GUID", "mj_campaign_id", "customcampaign", "CustomID")


def classify(event: Mapping[str, Any]) -> str | None:
    kind = event.get("event")
    if kind == "spam":
        return "complaint"
    if kind not in ("bounce", "blocked"):
        return None  # sent, open, click, unsub
    error = str(event.get("error") or "").strip().lower()
    if error == "spam reporter":
        return "complaint"
    if event.get("error_related_to") == "content" or error == "duplicate in campaign":
        return None  # our template, or Mailjet de-duplicating our own campaign
    if kind == "blocked":
        # preblocked: the address already failed hard and Mailjet will not try it again.
        return "hard" if error in DEAD or error == "preblocked" else "soft"
    return "hard" if error in DEAD and (event.get("hard_bounce") is True or error == "typofix") else "soft"


class Mailjet(BasicAuthProvider):
    name = "mailjet"

    async def receive(self, inbound: Inbound) -> Handled:
        self.authenticate(inbound)
        found = []
        for where, event in f.items(f.document(inbound.body)):
            kind = classify(event)
            if kind is None:
                continue
            email = f.recipient(event.get("email"), f"{where}.email")
            found.append(self.event(
                kind,
                email,
                # MessageID exceeds 2**53; as a string it survives any JSON tooling unchanged.
                key=[event.get("Message_GUID") or str(event.get("MessageID")), event.get("event"), email,
                     event.get("time"), event.get("error")],
                created_at=f.from_unix(event.get("time"), f"{where}.time"),
                meta=f.pick(event, *META_FIELDS),
                # The campaign UUID as CustomID, or JSON in EventPayload (which comes back as Payload).
                tracking=[f.json_map(event.get("Payload")), {"campaign_uuid": event.get("CustomID")}],
            ))
        return Handled(found)
