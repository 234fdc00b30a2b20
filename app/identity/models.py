"""Sign-in sessions, stored so that signing out (or losing one's token) ends them everywhere.

The session cookie carries only a random id, signed; the row says whose token opened it and
whether it still stands. Every replica reads the same rows, so a logout is immediate.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class SignInSession(Base):
    __tablename__ = "sign_in_sessions"
    __table_args__ = (Index("ix_sign_in_sessions_expires", "expires_at"),)

    # sha256 of the random session id in the cookie: a database dump opens no session.
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The digest of the API token that signed in: a removed or rotated token ends the session.
    token_digest: Mapped[str] = mapped_column(String(64), index=True)
    identity: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), nullable=True)
