"""One mailbox's scanner settings, read once from the validated spec (CRD defaults already applied)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import ServiceConfig
from ..durations import parse_duration
from ..secrets import Secret

# The well-known ports, by protocol and by whether TLS starts before the first byte.
DEFAULT_PORTS = {("pop3", True): 995, ("pop3", False): 110, ("imap", True): 993, ("imap", False): 143}


@dataclass(frozen=True, slots=True)
class MailboxSettings:
    name: str
    protocol: str  # pop3 | imap
    host: str
    port: int
    tls: str  # implicit | starttls | none
    tls_skip_verify: bool
    username: str | None  # None: auth none, the server hands out an authenticated session
    password: Secret | None = field(repr=False)
    folder: str
    processed_folder: str | None
    scan_interval: float  # seconds
    batch_size: int
    max_message_size: int
    timeout: float  # seconds, for the connect and for every read
    delete_unrecognized: bool
    verp_prefix: str | None

    @classmethod
    def from_config(cls, config: ServiceConfig, name: str) -> "MailboxSettings":
        spec = config.mailbox(name)
        userpass = spec["auth"] == "userpass"
        password = None
        if userpass:
            index = list(config.spec["mailboxes"]).index(spec)
            password = config.secret(spec["password"], f"spec.mailboxes[{index}].password")
        return cls(
            name=spec["name"],
            protocol=spec["protocol"],
            host=spec["host"],
            port=spec.get("port") or DEFAULT_PORTS[(spec["protocol"], spec["tls"] == "implicit")],
            tls=spec["tls"],
            tls_skip_verify=spec["tlsSkipVerify"],
            username=spec["username"] if userpass else None,
            password=password,
            folder=spec["folder"],
            processed_folder=spec.get("processedFolder"),
            scan_interval=parse_duration(spec["scanInterval"]).total_seconds(),
            batch_size=spec["batchSize"],
            max_message_size=spec["maxMessageSize"],
            timeout=parse_duration(spec["timeout"]).total_seconds(),
            delete_unrecognized=spec["deleteUnrecognized"],
            verp_prefix=spec.get("verpPrefix"),
        )
