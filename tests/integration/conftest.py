"""Real peers for the action tests, reusable by later suites: Prometheus with an exporter the
test controls, an MLflow tracking server (each started once per session), and per-test fake
Slack, PagerDuty, webhook and HTTP API servers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db import make_engine
from tests.support.airflow import AirflowPeer, run_airflow
from tests.support.binaries import need_binary, need_module
from tests.support.fake_receivers import FakeApi, Receiver, run_fake_api, run_receiver
from tests.support.peers import Exporter, Peer, run_exporter, run_mlflow, run_prometheus


@dataclass(frozen=True)
class PrometheusPeer:
    peer: Peer
    exporter: Exporter

    @property
    def url(self) -> str:
        return self.peer.url


@pytest.fixture(scope="session")
async def prometheus(tmp_path_factory: pytest.TempPathFactory,
                     ) -> AsyncIterator[PrometheusPeer]:
    """A real Prometheus scraping a test exporter every second."""
    binary = need_binary("prometheus")
    with run_exporter() as exporter:
        async with run_prometheus(binary, tmp_path_factory.mktemp("prometheus"),
                                  targets=[exporter.target]) as peer:
            yield PrometheusPeer(peer, exporter)


@pytest.fixture(scope="session")
async def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Peer]:
    """A real MLflow tracking server with a SQLite store and proxied artifacts."""
    need_module("mlflow")
    async with run_mlflow(tmp_path_factory.mktemp("mlflow")) as peer:
        yield peer


@pytest.fixture(scope="session")
async def airflow(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AirflowPeer]:
    """A real Airflow 3 (api-server, scheduler, dag-processor) running tests/airflow_dags/."""
    async with run_airflow(tmp_path_factory.mktemp("airflow")) as peer:
        yield peer


@pytest.fixture
async def slack() -> AsyncIterator[Receiver]:
    async with run_receiver("slack") as receiver:
        yield receiver


@pytest.fixture
async def pagerduty() -> AsyncIterator[Receiver]:
    async with run_receiver("pagerduty") as receiver:
        yield receiver


@pytest.fixture
async def webhook() -> AsyncIterator[Receiver]:
    async with run_receiver("webhook") as receiver:
        yield receiver


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeApi]:
    async with run_fake_api() as api:
        yield api


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """An async engine on the test's database (db_url), disposed after the test."""
    engine = make_engine(db_url)
    yield engine
    await engine.dispose()
