"""Shared fixtures: a migrated database per test on SQLite (always) and PostgreSQL (when
TEST_DATABASE_URL is set), identities with tokens, and a real runbookd on 127.0.0.1 (plain,
or as a rig serving a test catalog)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from app import config
from app.config import Settings
from app.identity import create_token
from app.main import create_app
from app.migrate import upgrade
from tests.support.auth import WEBHOOK_TOKEN
from tests.support.engine_catalog import runbook, step, write_catalog
from tests.support.engine_helpers import Rig, rig
from tests.support.net import RunningServer, serve_app

PG_URL = os.environ.get("TEST_DATABASE_URL")
DATABASES = ["sqlite"] + (["postgresql"] if PG_URL else [])

# A hung test reports its tasks before its timeout ends it; worker groups and `alone` tests
# under pytest-xdist (`make test`).
pytest_plugins = ["tests.support.hangs", "tests.support.workers"]


def _asyncpg_url(url: str) -> str:
    parsed = make_url(url)
    return str(parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False))


def _plain_pg(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """Run `fn` on a thread of its own and wait: lets sync fixtures run event loops (Alembic's
    env, asyncpg admin calls) even when pytest resolves them inside the test loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


@pytest.fixture(autouse=True, scope="session")
def _dev_state_outside_the_checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Settings in dev read var/ (the dev token, link secret and tokens file `make run`
    keeps): the suite's must not be a developer's var/, nor leave one in the checkout."""
    saved = config.DEV_DIR
    config.DEV_DIR = tmp_path_factory.mktemp("dev-var")
    yield
    config.DEV_DIR = saved


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; each test copies it rather than migrating again."""
    path = tmp_path_factory.mktemp("template") / "runbookd.db"
    in_thread(upgrade, f"sqlite+aiosqlite:///{path}")
    return path


async def pg_admin(sql: str) -> None:
    """Run one statement on the PostgreSQL server's maintenance database."""
    assert PG_URL
    conn = await asyncpg.connect(_plain_pg(PG_URL))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def new_pg_database(*, migrate: bool = True) -> str:
    """Create an empty database on the test server; returns its asyncpg URL."""
    assert PG_URL
    name = f"runbookd_test_{uuid.uuid4().hex[:10]}"
    await pg_admin(f'CREATE DATABASE "{name}"')
    url = _asyncpg_url(_plain_pg(PG_URL, name))
    if migrate:
        await asyncio.to_thread(upgrade, url)
    return url


async def drop_pg_database(url: str) -> None:
    await pg_admin(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test run's own on the local PostgreSQL, migrated once."""
    if not PG_URL:
        pytest.skip("TEST_DATABASE_URL is not set")
    url = in_thread(asyncio.run, new_pg_database())
    yield url
    in_thread(asyncio.run, drop_pg_database(url))


async def _truncate_pg(url: str) -> None:
    conn = await asyncpg.connect(_plain_pg(url))
    try:
        tables = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"
        )
        if not tables:
            return
        names = ", ".join(f'"{t["tablename"]}"' for t in tables)
        truncate = f"TRUNCATE {names} RESTART IDENTITY CASCADE"
        # The tests of a worker run one after another on its own database, so a transaction
        # still open here is a task an earlier test left behind on the shared event loop. That
        # loop is stopped while this sync fixture runs, so the transaction cannot end, and
        # TRUNCATE would wait for it for ever (and every worker behind the `alone` turnstile
        # with it): end it instead, and say so.
        await conn.execute("SET lock_timeout = '5s'")
        try:
            await conn.execute(truncate)
        except asyncpg.exceptions.LockNotAvailableError:
            left = await conn.fetch(
                "SELECT pg_terminate_backend(pid) AS ended, state, query "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state <> 'idle'")
            warnings.warn(f"an earlier test left {len(left)} transactions open on its "
                          f"database; ended them: {[dict(row) for row in left]}", stacklevel=1)
            await conn.execute(truncate)
    finally:
        await conn.close()


@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database: a fresh SQLite file, or the run's PostgreSQL truncated."""
    if request.param == "sqlite":
        path = tmp_path / "runbookd.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("pg_database")
    in_thread(asyncio.run, _truncate_pg(url))
    return url


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    return tmp_path / "tokens.yaml"


@pytest.fixture
def tokens(tokens_file: Path) -> dict[str, str]:
    """Identity name to API token: viewer, responder, two approvers and an admin."""
    roles = {"victor": "viewer", "rita": "responder", "alice": "approver", "bob": "approver",
             "carol": "approver", "root": "admin"}
    return {name: create_token(tokens_file, name, [role]) for name, role in roles.items()}


@pytest.fixture
def make_settings(db_url: str, tokens_file: Path, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: development mode, the test's database and token file."""

    # A one-runbook catalog, so that tests do not depend on the shipped library.
    mappings, remediations = write_catalog(tmp_path / "default-catalog",
                                           [runbook("test-noop", [step("noop")])])

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "env": "dev",
            "mappings": mappings,
            "remediations_dir": remediations,
            "database_url": db_url,
            "webhook_tokens": [WEBHOOK_TOKEN],
            "api_tokens_file": tokens_file,
            "registry_dir": tmp_path / "registry",
            "poll_seconds": 0.2,
            # No scheduled drills unless a test asks (tests/integration/test_drills.py).
            "drill_check_seconds": 0,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
async def server(
    make_settings: Callable[..., Settings], tokens: dict[str, str],
) -> AsyncIterator[RunningServer]:
    """A real runbookd on 127.0.0.1 with the default test settings."""
    async with serve_app(create_app(make_settings())) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture
def rig_settings() -> dict[str, Any]:
    """Settings every `make_rig` of a module starts from; a module overrides this fixture."""
    return {}


@pytest.fixture
def make_rig(
    tmp_path: Path, make_settings: Callable[..., Settings], tokens: dict[str, str], db_url: str,
    rig_settings: dict[str, Any],
) -> Callable[..., AbstractAsyncContextManager[Rig]]:
    """`async with make_rig(runbooks, **settings) as r`: a real runbookd serving `runbooks`,
    with `rig_settings` and then `settings` over the test's settings (see engine_helpers.rig).
    Call it again, after the first has ended, for a restart on the same database."""

    def build(runbooks: list[dict[str, Any]] | None = None,
              **overrides: Any) -> AbstractAsyncContextManager[Rig]:
        return rig(tmp_path, make_settings, tokens, db_url, runbooks,
                   **{**rig_settings, **overrides})

    return build


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """The run's PostgreSQL database, emptied: for tests of the multi-replica engine."""
    if not PG_URL:
        if os.environ.get("RUNBOOKD_REQUIRE_E2E") == "1":
            pytest.fail("RUNBOOKD_REQUIRE_E2E=1 needs TEST_DATABASE_URL for PostgreSQL tests")
        pytest.skip("TEST_DATABASE_URL is not set")
    url = request.getfixturevalue("pg_database")
    in_thread(asyncio.run, _truncate_pg(url))
    return url
