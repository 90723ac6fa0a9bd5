"""Secret values and where they come from.

The spec never holds a secret, only `{secretRef: {name, key}}`. In the cluster the operator mounts each
referenced Secret at `<secrets dir>/<name>/<key>`; on a laptop the same layout lives in a directory, or
the value comes from `BOUNCE_SECRET_<NAME>_<KEY>`. Values are wrapped so that they cannot end up in a
log line or an error body by accident.
"""

from __future__ import annotations

import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_SECRETS_DIR = Path("/etc/bounce-operator/secrets")


class Secret:
    """A secret value whose repr and str never show it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def equals(self, candidate: str | bytes) -> bool:
        """Constant-time comparison, so timing does not leak how much of a guess was right."""
        if isinstance(candidate, str):
            candidate = candidate.encode()
        return hmac.compare_digest(self._value.encode(), candidate)

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str

    @classmethod
    def from_spec(cls, node: Mapping) -> "SecretRef":
        ref = node["secretRef"]
        return cls(name=ref["name"], key=ref["key"])

    @property
    def env_var(self) -> str:
        return "BOUNCE_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", f"{self.name}_{self.key}").upper()

    def __str__(self) -> str:
        return f"{self.name}/{self.key}"


class SecretNotFound(LookupError):
    pass


@dataclass(frozen=True)
class SecretSource:
    """Resolves secret references from a mounted directory, then from the environment."""

    directory: Path | None
    environ: Mapping[str, str]

    @classmethod
    def default(cls, directory: str | Path | None = None) -> "SecretSource":
        if directory is None:
            directory = os.environ.get("BOUNCE_SECRETS_DIR") or DEFAULT_SECRETS_DIR
        return cls(directory=Path(directory), environ=dict(os.environ))

    def get(self, ref: SecretRef) -> Secret:
        if self.directory is not None:
            path = self.directory / ref.name / ref.key
            if path.is_file():
                # Files written by editors and `kubectl create secret --from-file` often end in a newline
                # that is not part of the value.
                return Secret(path.read_text(encoding="utf-8").rstrip("\r\n"))
        if ref.env_var in self.environ:
            return Secret(self.environ[ref.env_var])
        looked = f"{self.directory / ref.name / ref.key} or " if self.directory is not None else ""
        raise SecretNotFound(f"secret {ref} not found (looked in {looked}${ref.env_var})")
