"""Mail provider webhooks (`POST /webhooks/service/{provider}`): one module per provider.

Each provider verifies a request the way its provider signs or authenticates it and turns it into
BounceEvents for the one recorder. `build_providers` constructs the enabled ones at start, so a bad
key or secret is a configuration error before the first request, not a 500 during one.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..config import ConfigError
from ._base import Handled, Inbound, Provider
from .azure import Azure
from .brevo import Brevo
from .forwardemail import ForwardEmail
from .lettermint import Lettermint
from .mailgun import Mailgun
from .mailjet import Mailjet
from .postmark import Postmark
from .resend import Resend
from .sendgrid import SendGrid
from .ses import Ses
from .sparkpost import SparkPost

REGISTRY: dict[str, type[Provider]] = {
    cls.name: cls
    for cls in (Ses, SendGrid, Postmark, ForwardEmail, Lettermint, Azure, Mailgun, Brevo, Mailjet, SparkPost, Resend)
}


def build_providers(webhooks: Mapping[str, Mapping[str, Any]]) -> dict[str, Provider]:
    """The enabled providers (`config.webhooks` holds only those), every problem reported at once."""
    providers: dict[str, Provider] = {}
    problems: list[str] = []
    for name, section in webhooks.items():
        try:
            providers[name] = REGISTRY[name](section)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    return providers


__all__ = ["REGISTRY", "Handled", "Inbound", "Provider", "build_providers"]
