"""Forward Email bounce webhooks: HMAC-SHA256 (hex) of the raw body in `X-Webhook-Signature`.

Forward Email signs no timestamp, so nothing bounds a replay in time; the event key (message,
recipient, bounce time) makes a replayed bounce a duplicate instead. Unlike listmonk (reference §4.4),
`block`, `spam` and `virus` categories are soft: they say the message was refused, not that the
address is dead (DESIGN.md's hard/soft rule).
"""

from __future__ import annotations

from . import _fields as f
from ._base import Handled, Inbound, Provider
from ._verify import check_hex_hmac

SIGNATURE = "X-Webhook-Signature"
META_FIELDS = ("email_id", "list_id", "feedback_id", "message", "response", "response_code", "truth_source")


class ForwardEmail(Provider):
    name = "forwardemail"

    def configure(self) -> None:
        self.key = self.secret("secret").reveal().encode()

    async def receive(self, inbound: Inbound) -> Handled:
        check_hex_hmac(self.name, self.key, inbound.body, inbound.headers.get(SIGNATURE))
        payload = f.obj(f.document(inbound.body), "the body")
        bounce = f.optional_obj(payload.get("bounce"), "bounce")
        headers = f.optional_obj(payload.get("headers"), "headers")
        email = f.recipient(payload.get("recipient"), "recipient")
        dead = bounce.get("category") == "recipient" or f.dead_address(str(bounce.get("status", "")), bounce.get("message"))
        return Handled([self.event(
            "hard" if dead else "soft",
            email,
            key=[payload.get("email_id"), email, payload.get("bounced_at")],
            created_at=f.from_iso(payload.get("bounced_at"), "bounced_at"),
            meta={**f.pick(payload, *META_FIELDS), "bounce": bounce},
            tracking=[headers],
        )])
