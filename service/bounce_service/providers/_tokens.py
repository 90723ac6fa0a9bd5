"""One-time signature tokens (Mailgun), kept in the database that every replica shares.

Mailgun signs `timestamp + token`, not the event, so whoever captures one signed request could attach
any event to its signature while the timestamp is fresh. A token is therefore good for one event only.
It is claimed with a digest of that event before the events are recorded, and spent once they are
committed: the token with another event is refused at once; the same request again, once it has been
recorded, is answered as done and records nothing (Mailgun retries anything but a 200 or a 406 for
hours: a retry after an answer that was lost must not look like an attack); a retry after a failed
commit (a 503) still goes through, so nothing is lost. The table's primary key serialises racing
claims, on any replica or worker.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .. import queries
from ..db import Database
from ._verify import refuse


@dataclass(frozen=True, slots=True)
class TokenUse:
    provider: str
    token: str
    digest: bytes  # SHA-256 of what the token vouches for
    signed_at: datetime
    horizon: datetime  # tokens signed before this are outside every replica's window: pruned

    @classmethod
    def of(cls, provider: str, token: str, content: bytes, signed_at: float, window: float, now: float) -> "TokenUse":
        # Two windows back, so a replica whose clock runs ahead never prunes a token another still accepts.
        return cls(provider, token, hashlib.sha256(content).digest(), _utc(signed_at), _utc(now - 2 * window))

    def params(self) -> dict:
        return {"provider": self.provider, "token": self.token, "digest": self.digest,
                "signed_at": self.signed_at, "horizon": self.horizon}


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


async def claim(db: Database, use: TokenUse) -> bool:
    """Whether the request still has to be recorded: False when this very request has been already.
    Refuses (401) a token that came with another event."""
    async with db.transaction() as conn:
        if (await conn.execute(queries.CLAIM_TOKEN, use.params())).rowcount:
            return True
        seen = await (await conn.execute(queries.FIND_TOKEN, use.params())).fetchone()
    if seen is None or bytes(seen["body_sha256"]) != use.digest:
        raise refuse(use.provider, "signature token already used with another event")
    return not seen["spent"]


async def spend(db: Database, use: TokenUse) -> None:
    async with db.transaction() as conn:
        await conn.execute(queries.SPEND_TOKEN, use.params())
