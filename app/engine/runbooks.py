"""Find the exact runbook version an execution runs, even after the catalog moved on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.loader import Catalog, LoadedRunbook
from app.catalog.models import RunbookVersion
from app.catalog.schema import Runbook, StormBrake
from app.errors import NotFound


class RunbookSource(Protocol):
    """Where the exact runbook version of an execution comes from (RunbookVersions)."""

    def current(self, runbook_id: str) -> LoadedRunbook | None:
        """The live catalog's version of a runbook (a hand-off starts what is loaded now)."""
        catalog = self._current()
        return catalog.runbooks.get(runbook_id) if catalog else None

    async def get(self, session: AsyncSession, runbook_id: str, version: str) -> Runbook: ...


class RunbookVersions:
    """Runbook id and version to the parsed runbook: the live catalog first, then the
    stored versions (an execution keeps the version it started with across reloads)."""

    def __init__(self, current: Callable[[], Catalog | None]) -> None:
        self._current = current  # the live catalog; None in the CLI, which has none loaded
        self._parsed: dict[tuple[str, str], Runbook] = {}

    def current(self, runbook_id: str) -> LoadedRunbook | None:
        """The live catalog's version of a runbook (a hand-off starts what is loaded now)."""
        catalog = self._current()
        return catalog.runbooks.get(runbook_id) if catalog else None

    def global_brake(self) -> StormBrake | None:
        """The live catalog's global storm brake (the mappings file's `brake:`)."""
        catalog = self._current()
        return catalog.brake if catalog else None

    async def get(self, session: AsyncSession, runbook_id: str, version: str) -> Runbook:
        catalog = self._current()
        loaded = catalog.runbooks.get(runbook_id) if catalog else None
        if loaded is not None and loaded.version == version:
            return loaded.runbook
        key = (runbook_id, version)
        if key not in self._parsed:
            content = (await session.execute(
                select(RunbookVersion.content).where(
                    RunbookVersion.runbook_id == runbook_id, RunbookVersion.version == version)
            )).scalar_one_or_none()
            if content is None:
                raise NotFound(f"runbook {runbook_id} version {version[:12]} is not stored")
            self._parsed[key] = Runbook.model_validate(content)
        return self._parsed[key]
