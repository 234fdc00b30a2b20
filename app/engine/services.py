"""The engine's parts, built once per process and shared by routes, the CLI and workers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.actions.registry import ActionRegistry
from app.catalog.loader import LoadedRunbook
from app.catalog.service import CatalogHolder
from app.config import Settings
from app.engine.executor import Executor
from app.engine.runbooks import RunbookVersions
from app.engine.worker import Worker
from app.errors import NotFound
from app.outbound import OutboundHttp


@dataclass
class EngineRuntime:
    settings: Settings
    session_factory: async_sessionmaker[AsyncSession]
    registry: ActionRegistry
    catalog: CatalogHolder  # `.catalog` is the live Catalog
    runbooks: RunbookVersions
    http: OutboundHttp
    executor: Executor
    worker: Worker | None = None

    def wake(self) -> None:
        """Tell this process's worker that work was committed."""
        if self.worker is not None:
            self.worker.wake()

    def current(self, runbook_id: str) -> LoadedRunbook:
        """The live version of a runbook, or 404."""
        loaded = self.catalog.catalog.runbooks.get(runbook_id)
        if loaded is None:
            raise NotFound(f"no runbook {runbook_id!r} in the catalog")
        return loaded
