"""A runbook's concurrency limit per target (`concurrent_scope: target`, the default) is held
by the database itself: one active execution per runbook and target, whatever its state. The
executor counts nothing for it (app/engine/executor.py, `_at_concurrency_limit`), so this
index is what keeps the limit: if it stopped covering a state, two executions could run on
one target at once."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import IntegrityError

from app.db import make_engine, make_session_factory, session_scope, utcnow
from app.engine import states
from app.engine.models import Execution


def _execution(status: str) -> Execution:
    now = utcnow()
    return Execution(runbook_id="rb", runbook_version="v", target="model:a", status=status,
                     params={}, dry_run=False, trigger="alert", created_at=now,
                     updated_at=now, started_at=now)


@pytest.mark.parametrize("status", sorted(states.ACTIVE_EXECUTION))
async def test_a_second_active_execution_on_one_target_is_refused(db_url, status):
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    try:
        async with session_scope(factory) as session:
            session.add(_execution(status))
        with pytest.raises(IntegrityError):
            async with session_scope(factory) as session:
                session.add(_execution(states.PENDING))
        async with session_scope(factory) as session:  # once it has ended, another may start
            first = (await session.execute(
                Execution.__table__.update().values(status=states.SUCCEEDED)))
            assert first.rowcount == 1
            session.add(_execution(states.PENDING))
    finally:
        await engine.dispose()
