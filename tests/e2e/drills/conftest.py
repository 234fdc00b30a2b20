"""Fixtures of the drills: the session's platform (Prometheus and the exporter serving every
declared series), its optional peers (one session fixture each), and `shipped`, a real runbookd
serving the shipped catalog against them. Drills run on SQLite only: the database is not what
they prove, and every other suite runs on both.

A drill uses them like this (see test_registry_quick_rollback_mlflow.py):

    declare_series(gauges={...}, counters={...})        # module level: served from the start

    async def test_...(platform, mlflow, shipped):
        async with shipped(platform, mlflow) as runbookd:
            await runbookd.fire({"alertname": ..., ...})
"""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from tests.e2e.drills.harness import (
    DECLARED,
    Counters,
    DrillPeer,
    MlflowPeer,
    Platform,
    Shipped,
    serve_shipped,
    shipped_settings,
)
from tests.support import wait
from tests.support.airflow import AirflowPeer, run_airflow
from tests.support.binaries import need_binary, need_module
from tests.support.peers import run_exporter, run_mlflow, run_prometheus

DRILLS = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before tests/conftest.py and xdist read the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, every drill runs on one worker: they share the session's peers."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        if item.path.is_relative_to(DRILLS) and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group("drills"))


@pytest.fixture
def db_url(tmp_path: Path, sqlite_template: Path) -> str:
    """SQLite only (this overrides the suite's fixture, which also runs PostgreSQL)."""
    path = tmp_path / "runbookd.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="session")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """Prometheus scraping the drills' exporter every second, serving every series the drill
    modules declared from its first scrape (see harness.py on why that matters)."""
    binary = need_binary("prometheus")
    with run_exporter() as exporter:
        for name, value in DECLARED.gauges.items():
            exporter.set(name, value)
        with Counters(exporter, DECLARED.counters).running() as counters:
            since = time.time()
            async with run_prometheus(binary, tmp_path_factory.mktemp("drill-prometheus"),
                                      targets=[exporter.target]) as peer:
                yield Platform(prometheus=peer, exporter=exporter, counters=counters,
                               series_since=since)


# --- Optional peers: one session fixture each, started only by the drills that use it --------
# Each yields an object with `settings()` (the runbookd settings that point at it), which a
# drill passes to `shipped(...)`. They ask for `platform` first, so the declared series start
# before a slow peer does. Airflow (tests/support/airflow.py) and the fake Kubernetes API
# (tests/support/fake_kube.py) belong here, next to MLflow.

@pytest.fixture(scope="session")
async def mlflow(platform: Platform, tmp_path_factory: pytest.TempPathFactory,
                 ) -> AsyncIterator[MlflowPeer]:
    """A real MLflow tracking server (SQLite store, proxied artifacts); each drill registers
    models of its own."""
    need_module("mlflow")
    async with run_mlflow(tmp_path_factory.mktemp("drill-mlflow")) as peer:
        yield MlflowPeer(peer=peer, workdir=tmp_path_factory.mktemp("drill-mlflow-uploads"))


AIRFLOW_SECRET = "airflow"


@dataclass(frozen=True)
class AirflowDrillPeer:
    """A real Airflow 3 running tests/airflow_dags/, and the settings that point runbookd's
    airflow.* actions at it (its one user's `user:password` as a secret)."""

    peer: AirflowPeer

    def settings(self) -> dict[str, Any]:
        return {"airflow_url": self.peer.url, "airflow_auth_secret": AIRFLOW_SECRET,
                "secrets": {AIRFLOW_SECRET: f"{self.peer.username}:{self.peer.password}"}}

    async def parsed(self, *dag_ids: str, timeout: float = 30) -> None:
        """Until Airflow knows these DAGs (its readiness waits only for its own test DAGs)."""
        async def known() -> bool:
            async with self.peer.api() as http:
                return all([(await http.get(f"/api/v2/dags/{d}")).status_code == 200
                            for d in dag_ids])

        await wait.eventually(known, timeout=timeout, what=f"Airflow to parse {dag_ids}",
                              interval=0.5)

    async def set_variable(self, key: str, value: str | None) -> None:
        """Set an Airflow Variable (None deletes it): how a drill steers a test DAG."""
        async with self.peer.api() as http:
            await http.delete(f"/api/v2/variables/{key}")
            if value is not None:
                answer = await http.post("/api/v2/variables", json={"key": key,
                                                                     "value": value})
                answer.raise_for_status()


@pytest.fixture(scope="session")
async def airflow(platform: Platform, tmp_path_factory: pytest.TempPathFactory,
                  ) -> AsyncIterator[AirflowDrillPeer]:
    """A real Airflow 3 (api-server, scheduler, dag-processor) running tests/airflow_dags/."""
    async with run_airflow(tmp_path_factory.mktemp("drill-airflow")) as peer:
        yield AirflowDrillPeer(peer=peer)


# --- runbookd ---------------------------------------------------------------------------------

@pytest.fixture
def registry_dir(tmp_path: Path) -> Path:
    """The embedded registry's root for this drill (runbookd's `registry_dir`)."""
    return tmp_path / "registry"


@pytest.fixture
def shipped(make_settings: Callable[..., Settings], tokens: dict[str, str], registry_dir: Path,
            ) -> Callable[..., AbstractAsyncContextManager[Shipped]]:
    """`async with shipped(platform, mlflow, **settings) as runbookd`: a real runbookd serving
    the shipped alert_mappings.yaml and remediations/, pointed at these peers, the embedded
    registry at `registry_dir`, and the test's identities (alice, bob, carol approve; rita
    responds; victor views)."""

    def start(*peers: DrillPeer, **overrides: Any) -> AbstractAsyncContextManager[Shipped]:
        values = shipped_settings(*peers, registry_dir=registry_dir, **overrides)
        return serve_shipped(make_settings(**values), tokens)

    return start
