"""Sign-in sessions as rows: opened at sign-in, checked on every request, revoked at logout.

The cookie carries a random session id; the row's key is its sha256, so the table alone opens
nothing. A session stands while its row is not revoked, not expired, and the token that opened
it still names the same identity in the tokens file (removing or rotating a token ends it).
Each check is one primary-key read.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.identity import Identity, IdentityStore
from app.identity.models import SignInSession


def session_key(session_id: str) -> str:
    """The row key of a session id (what the cookie carries)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


async def open_session(session: AsyncSession, *, identity: Identity, token_digest: str,
                       now: dt.datetime, lifetime: dt.timedelta) -> str:
    """Store a new session and return its id, for the cookie only."""
    session_id = secrets.token_urlsafe(32)
    # Rows past their expiry open nothing; dropping them here keeps the table small.
    await session.execute(delete(SignInSession).where(SignInSession.expires_at < now))
    session.add(SignInSession(id=session_key(session_id), token_digest=token_digest,
                              identity=identity.name, created_at=now,
                              expires_at=now + lifetime))
    await session.flush()
    return session_id


async def find_session(session: AsyncSession, session_id: str, *, identities: IdentityStore,
                       now: dt.datetime) -> tuple[SignInSession, Identity] | None:
    """The standing session with this id and its identity (current roles), or None."""
    row = await session.get(SignInSession, session_key(session_id))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    identity = identities.by_digest(row.token_digest)
    if identity is None or identity.name != row.identity:
        return None
    return row, identity


async def revoke_session(session: AsyncSession, key: str, *, now: dt.datetime) -> bool:
    """Revoke the session whose row key is `key`; False if it was not standing."""
    result = await session.execute(
        update(SignInSession).where(SignInSession.id == key,
                                    SignInSession.revoked_at.is_(None))
        .values(revoked_at=now))
    return bool(result.rowcount)  # type: ignore[attr-defined]
