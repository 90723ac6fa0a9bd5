"""Brevo (Sendinblue) transactional and marketing webhooks: HTTP Basic, one event or a batch.

Brevo signs nothing and sends no event id, so the key is built from what identifies one event of one
message (reference §2.5). `ts_epoch` is the only timestamp Brevo keeps in UTC whatever the account's
time zone, so it wins over `ts_event`.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..events import BounceEvent
from . import _fields as f
from ._base import BasicAuthProvider, Handled, Inbound

# Payload `event` -> type. `deferred` is left out: Brevo keeps retrying, the final verdict follows.
EVENTS = {
    "hard_bounce": "hard",
    "invalid_email": "hard",
    "soft_bounce": "soft",
    "blocked": "soft",  # Brevo refused to send (blocklisted contact, policy): not proof the address is dead
    "spam": "complaint",
    "complaint": "complaint",
}
META_FIELDS = ("event", "reason", "message-id", "camp_id", "campaign name", "tag", "tags", "subject", "sending_ip")


class Brevo(BasicAuthProvider):
    name = "brevo"

    async def receive(self, inbound: Inbound) -> Handled:
        self.authenticate(inbound)
        found = []
        for where, event in f.items(f.document(inbound.body)):
            kind = EVENTS.get(f.text(event.get("event"), f"{where}.event"))
            if kind is not None:
                found.append(self._event(event, kind, where))
        return Handled(found)

    def _event(self, event: Mapping[str, Any], kind: str, where: str) -> BounceEvent:
        email = f.recipient(event.get("email"), f"{where}.email")
        if event.get("ts_epoch") is not None:
            created_at = f.from_unix(event["ts_epoch"], f"{where}.ts_epoch", scale=1000)
        else:
            created_at = f.from_unix(event.get("ts_event"), f"{where}.ts_event")
        return self.event(
            kind,
            email,
            key=[event.get("message-id") or event.get("camp_id"), event.get("event"), email,
                 event.get("ts_epoch") or event.get("ts_event")],
            created_at=created_at,
            meta=f.pick(event, *META_FIELDS),
            tracking=[f.json_map(event.get("X-Mailin-custom"))],
        )
