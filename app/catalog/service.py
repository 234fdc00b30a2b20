"""The live catalog: loaded at startup, swapped whole on reload, every version stored.

A reload loads and checks the files off the event loop, stores the runbook versions it has
not stored yet, records a `config.reload` event, and only then swaps the catalog, so an
execution can always find the exact version it ran. An invalid catalog changes nothing but
the reload gauges and the history.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics
from app.catalog.loader import Catalog, load_catalog
from app.catalog.models import RunbookVersion
from app.catalog.parser import ActionSpecs
from app.catalog.signoffs import classify_new_versions
from app.db import dialect_insert, session_scope
from app.errors import CatalogInvalid
from app.events import record_event

log = logging.getLogger(__name__)
MAX_ERRORS_IN_EVENT = 100


def empty_catalog() -> Catalog:
    """The catalog before the first load: nothing matches, nothing runs."""
    return Catalog(runbooks={}, mappings=(), loaded_at=dt.datetime.now(dt.UTC))


class CatalogHolder:
    """Holds the current Catalog; `catalog` is always a complete, validated one."""

    def __init__(self, *, mappings_path: Path | str, remediations_dir: Path | str,
                 actions: Iterable[str] | ActionSpecs | None = None):
        self.mappings_path = Path(mappings_path)
        self.remediations_dir = Path(remediations_dir)
        self.actions = actions
        self._catalog = empty_catalog()
        self.loaded = False
        # What the last successful reload stored: [{runbook_id, version}].
        self.last_new_versions: list[dict[str, str]] = []
        self._lock = asyncio.Lock()

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def load(self) -> Catalog:
        """Load and check the files (no database, no swap); raises CatalogInvalid."""
        return load_catalog(self.mappings_path, self.remediations_dir,
                            action_names=self.actions)

    async def initial_load(self, session_factory: async_sessionmaker[AsyncSession], *,
                           actor: str = "system:startup") -> Catalog:
        """The load at startup: an invalid catalog raises, and the app must not start."""
        return await self.reload(session_factory, actor=actor, reason="startup")

    async def reload(self, session_factory: async_sessionmaker[AsyncSession], *, actor: str,
                     source_addr: str | None = None, reason: str = "reload") -> Catalog:
        """Load from disk and swap atomically; on failure keep the old catalog and raise."""
        async with self._lock:  # two reloads at once would race on the swap
            try:
                new = await asyncio.to_thread(self.load)
            except CatalogInvalid as exc:
                metrics.config_last_reload_successful.set(0)
                await self._record_failure(session_factory, exc, actor=actor,
                                           source_addr=source_addr, reason=reason)
                raise
            async with session_scope(session_factory) as session:
                stored = await store_versions(session, new, loaded_by=actor)
                await classify_new_versions(
                    session, stored=stored, actor=actor,
                    current=[(lr.runbook.id, lr.version, lr.content)
                             for lr in new.runbooks.values()])
                record_event(
                    session, kind="config.reload", entity="catalog", actor=actor,
                    source_addr=source_addr, reason=f"{reason}: loaded",
                    data={"ok": True, "runbooks": len(new.runbooks),
                          "mappings": len(new.mappings), "new_versions": stored,
                          "warnings": [str(w) for w in new.warnings][:MAX_ERRORS_IN_EVENT]},
                )
            self._catalog = new
            self.loaded = True
            self.last_new_versions = stored
            metrics.config_last_reload_successful.set(1)
            metrics.config_last_reload_success_timestamp.set(time.time())
            log.info("catalog loaded: %d runbooks, %d mappings, %d new versions, %d warnings",
                     len(new.runbooks), len(new.mappings), len(stored), len(new.warnings))
            return new

    async def _record_failure(self, session_factory: async_sessionmaker[AsyncSession],
                              exc: CatalogInvalid, *, actor: str, source_addr: str | None,
                              reason: str) -> None:
        errors = list(exc.details or [exc.message])
        try:
            async with session_scope(session_factory) as session:
                record_event(
                    session, kind="config.reload", entity="catalog", actor=actor,
                    source_addr=source_addr, reason=f"{reason}: rejected, {len(errors)} error(s)",
                    data={"ok": False, "errors": errors[:MAX_ERRORS_IN_EVENT]},
                )
        except Exception:
            # The rejection itself must reach the caller; a lost history row is only logged.
            log.exception("could not record the rejected reload")


async def store_versions(session: AsyncSession, catalog: Catalog, *,
                         loaded_by: str | None = None) -> list[dict[str, str]]:
    """Insert the runbook versions not stored yet; a replica racing us is not an error."""
    wanted = {(lr.runbook.id, lr.version): lr for lr in catalog.runbooks.values()}
    if not wanted:
        return []
    rows = await session.execute(
        select(RunbookVersion.runbook_id, RunbookVersion.version)
        .where(RunbookVersion.runbook_id.in_({rid for rid, _ in wanted})))
    # Built once: a Result is an iterator, and a set built inside the comprehension below
    # was empty after its first key, so every reload called 9 of 10 runbooks new.
    stored = {(rid, version) for rid, version in rows}
    missing = [key for key in wanted if key not in stored]
    if not missing:
        return []
    values = [{"runbook_id": rid, "version": version, "loaded_at": catalog.loaded_at,
               "content": wanted[(rid, version)].content,
               "source_path": wanted[(rid, version)].path, "loaded_by": loaded_by}
              for rid, version in missing]
    insert = dialect_insert(session)
    # RETURNING names only the rows this insert wrote: a version a racing replica stored
    # first is not new.
    inserted = await session.execute(
        insert(RunbookVersion).values(values).on_conflict_do_nothing()
        .returning(RunbookVersion.runbook_id, RunbookVersion.version))
    written = {(rid, version) for rid, version in inserted}
    return [{"runbook_id": rid, "version": version} for rid, version in missing
            if (rid, version) in written]


async def list_versions(session: AsyncSession, runbook_id: str) -> list[RunbookVersion]:
    """Every stored version of a runbook, newest first."""
    rows = await session.execute(
        select(RunbookVersion).where(RunbookVersion.runbook_id == runbook_id)
        .order_by(RunbookVersion.loaded_at.desc(), RunbookVersion.version))
    return list(rows.scalars())
