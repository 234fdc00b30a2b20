"""Shared pieces of the end-to-end suites: reading runbookd's tables directly."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.db import make_engine, make_session_factory


async def select_all(db_url: str, model: type, *where: Any) -> list[Any]:
    """Every row of `model` (optionally filtered), read on a fresh connection."""
    engine = make_engine(db_url)
    try:
        async with make_session_factory(engine)() as session:
            return list((await session.execute(select(model).where(*where))).scalars())
    finally:
        await engine.dispose()
