"""Postmark's Bounce and Spam Complaint webhooks: HTTP Basic (Postmark signs nothing), one record per request.

Every documented bounce `Type` has a decision below. A `Type` Postmark adds later is recorded as soft:
listmonk answered it with a 400 that Postmark retries for hours and then drops (reference §4.3, §6.8).
"""

from __future__ import annotations

from . import _fields as f
from ._base import BasicAuthProvider, Handled, Inbound

# Postmark's Type -> our type; None means "not a delivery failure of the address": accepted, not recorded.
TYPES: dict[str, str | None] = {
    "HardBounce": "hard",
    "BadEmailAddress": "hard",
    "Transient": "soft",
    "DnsError": "soft",
    "SpamNotification": "soft",  # content or reputation filtering: the address works
    "Unknown": "soft",
    "SoftBounce": "soft",
    "VirusNotification": "soft",
    "Blocked": "soft",
    "DMARCPolicy": "soft",  # our sender authentication, not the recipient
    "SpamComplaint": "complaint",
    "Unsubscribe": None,
    "Subscribe": None,
    "AutoResponder": None,
    "AddressChange": None,
    "OpenRelayTest": None,
    "ChallengeVerification": None,
    "ManuallyDeactivated": None,
    "Unconfirmed": None,
    "SMTPApiError": None,
    "InboundError": None,
    "TemplateRenderingFailed": None,
}
RECORDS = ("Bounce", "SpamComplaint")
META_FIELDS = ("RecordType", "ID", "Type", "TypeCode", "Name", "Description", "Details", "MessageID",
               "MessageStream", "Tag", "Inactive", "CanActivate", "ServerID")


class Postmark(BasicAuthProvider):
    name = "postmark"

    async def receive(self, inbound: Inbound) -> Handled:
        self.authenticate(inbound)
        record = f.obj(f.document(inbound.body), "the body")
        if record.get("RecordType") not in RECORDS:
            return Handled()  # Delivery, Open, Click, SubscriptionChange
        kind = TYPES.get(f.text(record.get("Type"), "Type"), "soft")
        if kind is None:
            return Handled()
        record_id = record.get("ID")
        if isinstance(record_id, bool) or not isinstance(record_id, (int, str)) or record_id == "":
            raise f.malformed("ID must be Postmark's record id")
        return Handled([self.event(
            kind,
            f.recipient(record.get("Email"), "Email"),
            key=[str(record_id)],
            created_at=f.from_iso(record.get("BouncedAt"), "BouncedAt"),
            meta=f.pick(record, *META_FIELDS),
            tracking=[f.optional_obj(record.get("Metadata"), "Metadata")],
        )])
