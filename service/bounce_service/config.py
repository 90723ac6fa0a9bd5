"""The service's configuration, parsed and validated once, at start.

A config file is a BounceConfig manifest (what `kubectl apply` takes) or its bare `spec`. Everything the
rest of the code reads comes from `ServiceConfig`; nothing else looks at the raw document. `serve` hands
the spec it validated to its worker processes (`handover`), which only resolve its secrets.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

import psycopg
import psycopg.conninfo
import yaml

from .durations import parse_duration
from .secrets import Secret, SecretNotFound, SecretRef, SecretSource

API_VERSION = "bounce-operator.io/v1alpha1"
HANDOVER_ENV = "BOUNCE_VALIDATED_SPEC"
BOUNCE_TYPES = ("soft", "hard", "complaint")
PERMISSIONS = ("bounces:get", "bounces:manage", "webhooks:post_bounce", "subscribers:manage")


class ConfigError(Exception):
    """Invalid configuration: each line names the field and the rule it breaks."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ActionRule:
    count: int
    action: str  # none | unsubscribe | blocklist | delete
    window: timedelta | None


@dataclass(frozen=True, slots=True)
class ApiUser:
    name: str
    token: Secret
    permissions: frozenset[str]


@dataclass(frozen=True, slots=True)
class GroupCommit:
    enabled: bool
    max_events: int
    max_wait: float  # seconds
    flushers: int


@dataclass(frozen=True)
class ServiceConfig:
    spec: Mapping[str, Any]
    actions: Mapping[str, ActionRule]
    database_url: Secret
    pool_size: int
    users: Mapping[str, ApiUser]
    webhooks: Mapping[str, Mapping[str, Any]]  # enabled providers only, secrets resolved to `Secret`
    max_body_size: int
    keep_alive: float  # seconds an idle HTTP connection stays open
    group_commit: GroupCommit
    recent_campaigns: int
    min_sent: int
    secrets: SecretSource = field(repr=False)

    def mailbox(self, name: str) -> Mapping[str, Any]:
        for mailbox in self.spec["mailboxes"]:
            if mailbox["name"] == name:
                return mailbox
        names = ", ".join(m["name"] for m in self.spec["mailboxes"]) or "none configured"
        raise ConfigError([f"spec.mailboxes: no mailbox named {name!r} ({names})"])

    def secret(self, node: Mapping[str, Any], path: str) -> Secret:
        try:
            return self.secrets.get(SecretRef.from_spec(node))
        except SecretNotFound as exc:
            raise ConfigError([f"{path}: {exc}"]) from None


def read_document(path: str | Path) -> tuple[Any, str]:
    """Return (spec, base path for messages) from a manifest or a bare spec file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path}: not valid YAML: {exc}"]) from None
    if isinstance(document, dict) and "kind" in document:
        if document.get("kind") != "BounceConfig" or document.get("apiVersion") != API_VERSION:
            raise ConfigError(
                [f"{path}: expected kind BounceConfig, apiVersion {API_VERSION}; "
                 f"got kind {document.get('kind')}, apiVersion {document.get('apiVersion')}"]
            )
        return document.get("spec"), "spec"
    return ({} if document is None else document), "spec"


def load_config(
    path: str | Path,
    *,
    secrets: SecretSource | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceConfig:
    spec, base = read_document(path)
    return build_config(spec, base=base, secrets=secrets, environ=environ)


def build_config(
    spec: Any,
    *,
    base: str = "spec",
    secrets: SecretSource | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceConfig:
    """Validate `spec` against the CRD (defaults applied), then resolve it."""
    return _resolve(validated(spec, base), base=base, secrets=secrets, environ=environ)


def validated(spec: Any, base: str = "spec") -> dict:
    """`spec` with the CRD's defaults applied, or ConfigError naming every violation of its schema and rules."""
    # Imported here: the schema brings jsonschema and a CEL parser, which a worker that is handed an
    # already validated spec never needs (they are a third of its start-up).
    from .schema import validate_spec

    defaulted, violations = validate_spec(spec, base)
    if violations:
        raise ConfigError([str(v) for v in violations])
    return defaulted


def handover(config: ServiceConfig) -> str:
    """The validated, defaulted spec for worker processes: it holds secret references, never a value."""
    return json.dumps(config.spec)


def from_handover(
    text: str, *, secrets: SecretSource | None = None, environ: Mapping[str, str] | None = None
) -> ServiceConfig:
    """A worker's config: the spec its supervisor validated, secrets resolved from the same files and environment."""
    return _resolve(json.loads(text), secrets=secrets, environ=environ)


def _conninfo_problem(url: Secret) -> str | None:
    """Why libpq cannot read `url`, in words that quote none of it: its own messages quote the URL, and
    with it the password (a `%` not followed by two hex digits is enough to get one)."""
    text = url.reveal()
    scheme, sep, rest = text.partition("://")
    # A second '@' before the path: libpq would take the rest of the password for the host, and name it
    # in its "could not resolve" error.
    ambiguous = bool(sep) and scheme in ("postgres", "postgresql") and rest.split("/", 1)[0].count("@") > 1
    try:
        psycopg.conninfo.conninfo_to_dict(text)
    except psycopg.ProgrammingError:
        ambiguous = True
    if ambiguous:
        return ("not a connection string libpq can read (a URI such as postgresql://user:password@host/db, "
                "with any '@', ':', '/' or '%' in the user or password percent-encoded)")
    return None


def _resolve(
    spec: Mapping[str, Any],
    *,
    base: str = "spec",
    secrets: SecretSource | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceConfig:
    """The config of a spec `validate_spec` accepted and defaulted: secrets resolved, durations parsed."""
    environ = os.environ if environ is None else environ
    secrets = secrets or SecretSource.default()
    problems: list[str] = []

    def resolve(node: Mapping[str, Any], path: str) -> Secret | None:
        try:
            return secrets.get(SecretRef.from_spec(node))
        except SecretNotFound as exc:
            problems.append(f"{path}: {exc}")
            return None

    if environ.get("DATABASE_URL"):
        database_url: Secret | None = Secret(environ["DATABASE_URL"])
        where = "DATABASE_URL"
    elif "url" in spec.get("database", {}):
        database_url = resolve(spec["database"]["url"], f"{base}.database.url")
        where = f"{base}.database.url"
    else:
        database_url = None
        problems.append(f"{base}.database.url: is required unless DATABASE_URL is set")
    if database_url is not None and (problem := _conninfo_problem(database_url)):
        problems.append(f"{where}: {problem}")

    users: dict[str, ApiUser] = {}
    for index, user in enumerate(spec["api"]["users"]):
        token = resolve(user["token"], f"{base}.api.users[{index}].token")
        if token is not None:
            users[user["name"]] = ApiUser(user["name"], token, frozenset(user["permissions"]))

    webhooks: dict[str, dict[str, Any]] = {}
    for provider, section in spec["webhooks"].items():
        if not section.get("enabled"):
            continue
        resolved: dict[str, Any] = {}
        for key, value in section.items():
            if isinstance(value, dict) and "secretRef" in value:
                value = resolve(value, f"{base}.webhooks.{provider}.{key}")
            resolved[key] = value
        webhooks[provider] = resolved

    if problems:
        raise ConfigError(problems)
    assert database_url is not None
    service = spec["service"]
    return ServiceConfig(
        spec=spec,
        actions={
            kind: ActionRule(
                count=rule["count"],
                action=rule["action"],
                window=parse_duration(rule["window"]) if rule.get("window") else None,
            )
            for kind, rule in spec["actions"].items()
        },
        database_url=database_url,
        pool_size=spec.get("database", {}).get("poolSize", 10),
        users=users,
        webhooks=webhooks,
        max_body_size=service["maxBodySize"],
        keep_alive=parse_duration(service["keepAliveTimeout"]).total_seconds(),
        group_commit=GroupCommit(
            enabled=service["groupCommit"]["enabled"],
            max_events=service["groupCommit"]["maxEvents"],
            max_wait=parse_duration(service["groupCommit"]["maxWait"]).total_seconds(),
            flushers=service["groupCommit"]["flushers"],
        ),
        recent_campaigns=service["metrics"]["recentCampaigns"],
        min_sent=service["metrics"]["minSent"],
        secrets=secrets,
    )
