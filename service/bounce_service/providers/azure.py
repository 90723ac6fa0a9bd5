"""Azure Communication Services e-mail delivery reports through Event Grid (Event Grid schema).

Event Grid cannot sign requests, so a shared secret travels in the webhook URL (`?code=`) or in a
header (`secretHeader`). Unlike listmonk (reference §4.6), every request needs it, the subscription
handshake included: otherwise anyone could subscribe their own Event Grid topic to this endpoint.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from . import _fields as f
from ._base import Handled, Inbound, Provider
from ._verify import check_shared_secret

DELIVERY_REPORT = "Microsoft.Communication.EmailDeliveryReportReceived"
VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_DEAD_WORDS = ("does not exist", "unknown user", "user unknown", "no such user", "invalid recipient")
_COMPLAINT_WORDS = ("complaint", "abuse")


def classify(data: Mapping[str, Any]) -> str | None:
    status = str(data.get("status", "")).lower()
    details = f.optional_obj(data.get("deliveryStatusDetails"), "data.deliveryStatusDetails")
    detail = str(details.get("statusMessage") or "").lower()
    if status in ("bounced", "suppressed"):
        return "hard"  # suppressed: the address is on ACS's list after an earlier hard bounce
    if status in ("filteredspam", "quarantined"):
        return "complaint" if any(word in detail for word in _COMPLAINT_WORDS) else "soft"
    if status != "failed":
        return None  # delivered, expanded
    # An enhanced status code decides; only without one do the words.
    if _STATUS.search(detail):
        return "hard" if f.dead_address(detail) else "soft"
    return "hard" if any(word in detail for word in _DEAD_WORDS) else "soft"


class Azure(Provider):
    name = "azure"

    def configure(self) -> None:
        self.shared_secret = self.secret("secret")
        self.secret_header: str | None = self.section.get("secretHeader")

    async def receive(self, inbound: Inbound) -> Handled:
        presented = [inbound.query.get("code")]
        if self.secret_header:
            presented.append(inbound.headers.get(self.secret_header))
        check_shared_secret(self.name, presented, self.shared_secret)
        events = f.document(inbound.body)
        if not isinstance(events, list):
            raise f.malformed("Event Grid posts a JSON array of events (CloudEvents schema is not supported)")
        if inbound.headers.get("aeg-event-type") in ("SubscriptionValidation", "SubscriptionValidationEvent"):
            first = f.obj(events[0] if events else None, "[0]")
            if first.get("eventType") != VALIDATION:
                raise f.malformed(f"a validation request carries a {VALIDATION}")
            code = f.text(f.obj(first.get("data"), "[0].data").get("validationCode"), "[0].data.validationCode")
            return Handled(reply={"validationResponse": code})
        found = []
        for where, event in f.items(events, array=True):
            if event.get("eventType") != DELIVERY_REPORT:
                continue
            data = f.obj(event.get("data"), f"{where}.data")
            kind = classify(data)
            if kind is not None:
                found.append(self.event(
                    kind,
                    f.recipient(data.get("recipient"), f"{where}.data.recipient"),
                    key=[f.text(event.get("id"), f"{where}.id")],
                    # ACS has spelt this field both ways.
                    created_at=f.from_iso(data.get("deliveryAttemptTimeStamp") or data.get("deliveryAttemptTimestamp")
                                          or event.get("eventTime"), f"{where}.data.deliveryAttemptTimeStamp"),
                    meta={"id": event["id"], **f.pick(data, "status", "messageId", "deliveryStatusDetails")},
                ))
        return Handled(found)
