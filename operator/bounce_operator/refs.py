"""Which Secret keys a pod needs, found in a (defaulted) BounceConfig spec.

A pod gets exactly the keys its command resolves: `serve` and `scan` both load the whole config
(database URL, API tokens, enabled providers' secrets); a scanner also needs its own mailbox's password.
The web service never sees a mailbox password.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, NamedTuple


class SecretKey(NamedTuple):
    name: str
    key: str

    def __str__(self) -> str:
        return f"{self.name}/{self.key}"


Refs = dict[SecretKey, str]  # each referenced key → the first spec path naming it (for messages)


def _ref(node: Any, path: str) -> Iterator[tuple[SecretKey, str]]:
    if isinstance(node, Mapping) and "secretRef" in node:
        yield SecretKey(node["secretRef"]["name"], node["secretRef"]["key"]), path


def _collect(pairs: Iterator[tuple[SecretKey, str]]) -> Refs:
    refs: Refs = {}
    for key, path in pairs:
        refs.setdefault(key, path)
    return refs


def service_refs(spec: Mapping[str, Any]) -> Refs:
    def walk() -> Iterator[tuple[SecretKey, str]]:
        yield from _ref(spec.get("database", {}).get("url"), "spec.database.url")
        for index, user in enumerate(spec["api"]["users"]):
            yield from _ref(user["token"], f"spec.api.users[{index}].token")
        for provider, section in spec["webhooks"].items():
            if section.get("enabled"):  # disabled providers' secrets are never read, so never required
                for field, value in section.items():
                    yield from _ref(value, f"spec.webhooks.{provider}.{field}")

    return _collect(walk())


def scanner_refs(spec: Mapping[str, Any], index: int) -> Refs:
    mailbox = spec["mailboxes"][index]
    # With auth none the scanner never reads a password: a leftover reference must not block the mailbox.
    password = mailbox.get("password") if mailbox["auth"] == "userpass" else None
    own = _ref(password, f"spec.mailboxes[{index}].password")
    return _collect(iter([*service_refs(spec).items(), *own]))


def all_refs(spec: Mapping[str, Any]) -> Refs:
    refs = service_refs(spec)
    for index in range(len(spec["mailboxes"])):
        for key, path in scanner_refs(spec, index).items():
            refs.setdefault(key, path)
    return refs


def secret_names(node: Any) -> set[str]:
    """Every Secret named anywhere in a spec, raw or defaulted: what a change of which may matter."""
    if isinstance(node, Mapping):
        if "secretRef" in node and isinstance(node["secretRef"], Mapping):
            return {str(node["secretRef"].get("name"))}
        return set().union(*(secret_names(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(secret_names(value) for value in node))
    return set()
