"""One-time signature tokens (Mailgun), kept in the database that every replica shares.

Mailgun signs `timestamp + token`, not the event, so whoever captures one signed request could attach
any event to its signature while the timestamp is fresh. A token is therefore good for one event only.
It is claimed with a digest of that event before the events are recorded, and spent once they are
committed: the token with another event is refused at once; the same request again is refused once it
has been recorded; a retry after a failed commit (a 503) still goes through, so nothing is lost. The
table's primary key serialises racing claims, on any replica or worker.
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


async def claim(db: Database, use: TokenUse) -> None:
    """Refuse (401) a token that came with another event, or whose request has already been recorded."""
    async with db.transaction() as conn:
        if (await conn.execute(queries.CLAIM_TOKEN, use.params())).rowcount:
            return
        seen = await (await conn.execute(queries.FIND_TOKEN, use.params())).fetchone()
    if seen is None or bytes(seen["body_sha256"]) != use.digest or seen["spent"]:
        raise refuse(use.provider, "signature token already used (replay)")


async def spend(db: Database, use: TokenUse) -> None:
    async with db.transaction() as conn:
        await conn.execute(queries.SPEND_TOKEN, use.params())
