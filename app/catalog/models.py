"""Every runbook version ever loaded, so an execution can show the exact runbook it ran."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, Json, UTCDateTime


class RunbookVersion(Base):
    __tablename__ = "runbook_versions"

    runbook_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # sha256 of the runbook's normalised content.
    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    loaded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    content: Mapped[dict[str, Any]] = mapped_column(Json)
    source_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Who loaded it: the caller of an API reload, or `system:startup` / `signal:SIGHUP`.
    # Change sign-off needs it: nobody signs off a change they loaded themselves.
    loaded_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
