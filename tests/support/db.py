"""Reading runbookd's tables directly from a test."""

from __future__ import annotations

from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.db import make_engine, make_session_factory

DbSource = str | AsyncEngine | async_sessionmaker[AsyncSession]


async def all_rows(source: DbSource, model: type, *where: Any,
                   order_by: Any = None) -> list[Any]:
    """Every row of `model` that matches `where`, ordered by `order_by` (a column or a tuple of
    columns; the primary key when not given).

    `source` is a database URL (read on a fresh engine, disposed afterwards), an engine, or a
    session factory such as a running app's `app.state.session_factory`."""
    if isinstance(source, str):
        engine = make_engine(source)
        try:
            return await all_rows(engine, model, *where, order_by=order_by)
        finally:
            await engine.dispose()
    if order_by is None:
        order = tuple(inspect(model).primary_key)
    else:
        order = tuple(order_by) if isinstance(order_by, tuple | list) else (order_by,)
    statement = select(model).where(*where).order_by(*order)
    factory = make_session_factory(source) if isinstance(source, AsyncEngine) else source
    async with factory() as session:
        return list((await session.execute(statement)).scalars())
