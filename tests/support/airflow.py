"""A real Apache Airflow 3 for tests: api-server, scheduler and dag-processor on 127.0.0.1,
with SQLite metadata, the LocalExecutor and the DAGs under tests/airflow_dags/.

Airflow lives in a virtualenv of its own (292 MB, 132 packages; never the project's), which
`.ci/run` creates once under a cache folder keyed by version. Tests find it through
RUNBOOKD_AIRFLOW_VENV. The recipe (settings, readiness, API quirks) is ../shared/PEERS.md,
"Apache Airflow 3". Startup takes 10-15 s and the three processes hold about 550 MB, so a
session starts it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.binaries import REQUIRE_E2E
from tests.support.net import free_port

AIRFLOW_VERSION = "3.3.2"
DAGS = Path(__file__).resolve().parent.parent / "airflow_dags"
DAG_IDS = ("runbookd_succeeds", "runbookd_fails", "runbookd_flaky", "runbookd_never_run")
USER, PASSWORD = "admin", "admin"
TERMINAL = frozenset({"success", "failed"})


def airflow_venv() -> Path:
    """Where the Airflow virtualenv is: RUNBOOKD_AIRFLOW_VENV, or the cache folder .ci/run
    fills (${RUNBOOKD_CACHE_DIR:-~/.cache/runbookd}/airflow-<version>)."""
    explicit = os.environ.get("RUNBOOKD_AIRFLOW_VENV")
    if explicit:
        return Path(explicit)
    cache = os.environ.get("RUNBOOKD_CACHE_DIR") or str(Path.home() / ".cache" / "runbookd")
    return Path(cache) / f"airflow-{AIRFLOW_VERSION}"


def need_airflow() -> Path:
    """The `airflow` executable; without it the test skips, or fails in CI."""
    binary = airflow_venv() / "bin" / "airflow"
    if not binary.is_file():
        message = (f"Airflow {AIRFLOW_VERSION} is not installed at {binary.parent.parent} "
                   "(.ci/run creates it: python3 -m venv DIR && DIR/bin/pip install "
                   f"apache-airflow=={AIRFLOW_VERSION}; or set RUNBOOKD_AIRFLOW_VENV)")
        if REQUIRE_E2E:
            pytest.fail(f"RUNBOOKD_REQUIRE_E2E=1 and {message}")
        pytest.skip(message)
    return binary


@dataclass(frozen=True)
class AirflowPeer:
    """A running Airflow: its URL and the one user of the simple auth manager."""

    url: str
    port: int
    username: str = USER
    password: str = PASSWORD

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @contextlib.asynccontextmanager
    async def api(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client of Airflow's own REST API v2, signed in: how tests check the effects."""
        async with httpx.AsyncClient(base_url=self.url, timeout=15) as http:
            token = await _token(http, self.username, self.password)
            http.headers["Authorization"] = f"Bearer {token}"
            yield http

    async def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any] | None:
        """A DAG run as Airflow reports it, or None when it does not exist."""
        async with self.api() as http:
            response = await http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    async def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        """Every run of a DAG."""
        async with self.api() as http:
            response = await http.get(f"/api/v2/dags/{dag_id}/dagRuns",
                                      params={"limit": 100})
        response.raise_for_status()
        return response.json()["dag_runs"]

    async def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """The task instances of a run, by task id."""
        async with self.api() as http:
            response = await http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances")
        response.raise_for_status()
        return {ti["task_id"]: ti for ti in response.json()["task_instances"]}

    async def xcom(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """The return value a task pushed."""
        async with self.api() as http:
            response = await http.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/"
                                      f"{task_id}/xcomEntries/return_value")
        response.raise_for_status()
        value = response.json()["value"]
        return json.loads(value) if isinstance(value, str) else value

    async def is_paused(self, dag_id: str) -> bool:
        async with self.api() as http:
            response = await http.get(f"/api/v2/dags/{dag_id}")
        response.raise_for_status()
        return bool(response.json()["is_paused"])

    async def set_paused(self, dag_id: str, paused: bool) -> None:
        async with self.api() as http:
            response = await http.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": paused})
        response.raise_for_status()

    async def trigger(self, dag_id: str, run_id: str, conf: dict[str, Any] | None = None,
                      ) -> None:
        """Start a run directly (not through runbookd), e.g. to set up a failed run."""
        async with self.api() as http:
            response = await http.post(f"/api/v2/dags/{dag_id}/dagRuns", json={
                "dag_run_id": run_id, "logical_date": None, "conf": conf or {}})
        response.raise_for_status()

    async def wait_for_state(self, dag_id: str, run_id: str, *, timeout: float = 60,
                             states: frozenset[str] = TERMINAL) -> str:
        """Poll a run until its state is one of `states`; returns the state."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            found = await self.dag_run(dag_id, run_id)
            state = found["state"] if found else None
            if state in states:
                return state
            await asyncio.sleep(0.5)
        raise AssertionError(f"run {run_id} of {dag_id} is still {state} after {timeout:g}s")


async def _token(http: httpx.AsyncClient, username: str, password: str) -> str:
    response = await http.post("/auth/token", json={"username": username, "password": password})
    response.raise_for_status()
    return response.json()["access_token"]


def _environment(venv: Path, home: Path, port: int) -> dict[str, str]:
    """Airflow's whole configuration, as environment variables (PEERS.md's table)."""
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    url = f"http://127.0.0.1:{port}"
    # Nothing of the parent's Airflow or Python setup leaks in (a developer's AIRFLOW_HOME).
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home.resolve() / 'airflow.db'}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": url,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(16),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
    })
    return env


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """TERM every process group, then KILL what is left (a graceful stop takes 4-7 s)."""
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def _logs(home: Path) -> str:
    return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                     for log in sorted(home.glob("*.log")))


async def _wait_ready(peer: AirflowPeer, procs: list[subprocess.Popen[bytes]], home: Path, *,
                      started: dt.datetime, timeout: float) -> None:
    """Ready: fresh scheduler and dag-processor heartbeats, every test DAG parsed, and the
    execution API's lazy route warmed (it saves about 5 s on the first task)."""
    deadline = time.monotonic() + timeout
    waiting_for = "the api-server"
    async with httpx.AsyncClient(base_url=peer.url, timeout=5) as http:
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{' '.join(map(str, proc.args[1:]))} exited with "
                                       f"{proc.returncode}; logs:\n{_logs(home)}")
            try:
                waiting_for = await _not_ready(http, peer, started)
            except httpx.HTTPError:
                waiting_for = "the api-server"
            if waiting_for is None:
                # The first call builds the lazy route: slow, on a busy machine many seconds.
                await http.get("/execution/health", timeout=60)
                return
            await asyncio.sleep(0.5)
    raise RuntimeError(f"Airflow was not ready within {timeout:g}s (waiting for "
                       f"{waiting_for}); logs:\n{_logs(home)}")


async def _not_ready(http: httpx.AsyncClient, peer: AirflowPeer, started: dt.datetime,
                     ) -> str | None:
    """What Airflow is still missing, or None when it is ready."""
    health = (await http.get("/api/v2/monitor/health")).json()
    # An old database reports stale heartbeats as healthy: only newer than the start counts.
    for part, key in (("scheduler", "latest_scheduler_heartbeat"),
                      ("dag_processor", "latest_dag_processor_heartbeat")):
        beat = (health.get(part) or {}).get(key)
        if not beat or dt.datetime.fromisoformat(beat) < started:
            return f"a fresh {part} heartbeat"
    if "Authorization" not in http.headers:
        http.headers["Authorization"] = f"Bearer {await _token(http, USER, PASSWORD)}"
    for dag_id in DAG_IDS:
        if (await http.get(f"/api/v2/dags/{dag_id}")).status_code != 200:
            return f"DAG {dag_id} to be parsed"
    return None


@contextlib.asynccontextmanager
async def run_airflow(home: Path, *, timeout: float = 90) -> AsyncIterator[AirflowPeer]:
    """Migrate a fresh metadata database in `home`, start the three processes, wait until
    ready; stop every process group on the way out."""
    airflow = need_airflow()
    port = free_port()
    env = _environment(airflow.parent.parent, home, port)
    migrate = await asyncio.create_subprocess_exec(
        str(airflow), "db", "migrate", env=env, cwd=home,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await migrate.communicate()
    if migrate.returncode != 0:
        raise RuntimeError(f"airflow db migrate exited with {migrate.returncode}:\n"
                           f"{out.decode(errors='replace')[-3000:]}")
    started = dt.datetime.now(dt.UTC)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for command in (["api-server"], ["scheduler", "--skip-serve-logs"], ["dag-processor"]):
            with (home / f"{command[0]}.log").open("wb") as log:
                # A session of its own: each component's workers are stopped with it.
                procs.append(subprocess.Popen(  # noqa: ASYNC220 (forks and returns)
                    [str(airflow), *command], env=env, cwd=home, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=True))
        peer = AirflowPeer(url=f"http://127.0.0.1:{port}", port=port)
        await _wait_ready(peer, procs, home, started=started, timeout=timeout)
        yield peer
    finally:
        await asyncio.to_thread(_stop, procs)
