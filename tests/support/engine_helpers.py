"""The rig every HTTP-level test of the engine, the pages, Slack and the links uses: a real
runbookd on 127.0.0.1 serving a test catalog, an HTTP client, alerts to fire, and reads of its
tables while waiting on state. Tests get it through the `make_rig` fixture (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from app.config import Settings
from app.engine.models import Approval, Execution, StepRun
from app.events import Event
from app.main import create_app
from app.notify.models import Notification
from tests.support.auth import WEBHOOK_HEADERS, auth
from tests.support.db import all_rows
from tests.support.engine_catalog import write_catalog
from tests.support.net import RunningServer, serve_app
from tests.support.payloads import am_alert, am_body, go_json


@dataclass
class Rig:
    server: RunningServer
    http: httpx.AsyncClient
    tokens: dict[str, str]
    db_url: str

    async def fire(self, alertname: str, *, model: str = "fraud-v3",
                   fingerprint: str | None = None, status: str = "firing",
                   starts_at: str = "2026-11-26T06:00:00Z",
                   ends_at: str = "0001-01-01T00:00:00Z") -> dict[str, Any]:
        alert = am_alert(fingerprint or f"{abs(hash((alertname, model))) % 16**16:016x}",
                         status=status, starts_at=starts_at, ends_at=ends_at,
                         labels={"alertname": alertname, "model": model})
        response = await self.http.post(
            "/webhooks/alertmanager", content=go_json(am_body(alert)),
            headers=WEBHOOK_HEADERS)
        assert response.status_code == 200, response.text
        return response.json()

    async def resolve(self, alertname: str, **kw: Any) -> dict[str, Any]:
        return await self.fire(alertname, status="resolved", ends_at="2026-11-26T06:30:00Z",
                               **kw)

    async def post(self, path: str, who: str, body: Any = None) -> httpx.Response:
        return await self.http.post(path, headers={**auth(self.tokens[who]),
                                                   "Content-Type": "application/json"},
                                    content=json.dumps(body) if body is not None else None)

    async def approve(self, execution_id: int, step: str, who: str,
                      comment: str = "ok") -> httpx.Response:
        return await self.post(f"/api/v1/executions/{execution_id}/steps/{step}/approve", who,
                               {"comment": comment})

    async def rows(self, model: type, *where: Any, order_by: Any = None) -> list[Any]:
        """Every row of `model` in this runbookd's database: see `all_rows`."""
        return await all_rows(self.db_url, model, *where, order_by=order_by)

    async def executions(self) -> list[Execution]:
        return await self.rows(Execution)

    async def steps(self, execution_id: int | None = None) -> list[StepRun]:
        return await self.rows(StepRun, *_of(StepRun, execution_id))

    async def events(self, execution_id: int | None = None) -> list[Event]:
        return await self.rows(Event, *_of(Event, execution_id))

    async def approvals(self) -> list[Approval]:
        return await self.rows(Approval)

    async def notifications(self) -> list[Notification]:
        return await self.rows(Notification)

    async def wait_for(self, predicate: Callable[[list[Execution]], bool], *,
                       timeout: float = 15.0) -> list[Execution]:
        """Poll the database until `predicate(executions)` holds."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            rows = await self.executions()
            if predicate(rows):
                return rows
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; executions: "
                                     f"{[(e.id, e.status, e.status_reason) for e in rows]}")
            await asyncio.sleep(0.05)

    async def awaiting(self, alertname: str) -> Execution:
        """Fire `alertname`, then wait until its execution (the only one) awaits approval."""
        await self.fire(alertname)
        [ex] = await self.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        return ex

    async def wait_status(self, execution_id: int, status: str, **kw: Any) -> Execution:
        rows = await self.wait_for(
            lambda rows: any(e.id == execution_id and e.status == status for e in rows), **kw)
        return next(e for e in rows if e.id == execution_id)


def _of(model: type, execution_id: int | None) -> tuple[Any, ...]:
    """The filter to one execution's rows, or none."""
    return () if execution_id is None else (model.execution_id == execution_id,)


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path, make_settings: Callable[..., Settings], tokens: dict[str, str],
    db_url: str, runbooks: list[dict[str, Any]] | None = None, **overrides: Any,
) -> AsyncIterator[Rig]:
    """A real runbookd serving `runbooks` (one mapping each: alertname == runbook id), with
    `make_settings(**overrides)`. Without runbooks it serves the catalog the settings name
    (the overrides' `mappings` and `remediations_dir`, or the default test catalog)."""
    if runbooks is not None:
        mappings, remediations = write_catalog(tmp_path / "catalog", runbooks)
        overrides = {"mappings": mappings, "remediations_dir": remediations, **overrides}
    settings = make_settings(**overrides)
    async with serve_app(create_app(settings)) as server, httpx.AsyncClient(
            base_url=server.url, timeout=30) as http:
        yield Rig(server=server, http=http, tokens=tokens, db_url=db_url)
