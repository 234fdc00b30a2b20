"""Real peers for tests: Prometheus (with an exporter the test controls) and an MLflow server.

Each peer runs on 127.0.0.1 and a free port, in a process group of its own that is killed as a
whole at the end, so nothing (uvicorn workers, huey consumers) outlives the test session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.support.net import free_port


@dataclass
class Exporter:
    """A /metrics page on a thread of its own: gauges the test sets, scraped by Prometheus."""

    port: int
    # Series text (`name{labels}`) to value; a series removed here goes stale in Prometheus.
    series: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, series: str, value: float) -> None:
        with self.lock:
            self.series[series] = value

    def remove(self, series: str) -> None:
        with self.lock:
            self.series.pop(series, None)

    def render(self) -> bytes:
        with self.lock:
            lines = [f"{name} {value!r}" for name, value in self.series.items()]
        return ("\n".join(lines) + "\n").encode()


@contextlib.contextmanager
def run_exporter() -> Iterator[Exporter]:
    """Serve an `Exporter` on 127.0.0.1 from a daemon thread (independent of any event loop)."""
    port = free_port()
    exporter = Exporter(port=port)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exporter.render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield exporter
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Peer:
    url: str
    port: int
    pid: int


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a peer's whole process group: TERM, then KILL what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


async def _wait_until_up(url: str, proc: subprocess.Popen[bytes], *, timeout: float,
                         log: Path) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}; "
                                   f"its log:\n{_tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.25)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s; log:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _spawn(argv: list[str], *, log: Path, workdir: Path, env: dict[str, str] | None,
           ) -> subprocess.Popen[bytes]:
    # A session of its own: the whole group (workers, job runners) is stopped together.
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
                                start_new_session=True, env=env)


@contextlib.asynccontextmanager
async def run_process_peer(argv: list[str], *, ready_url: str, port: int, workdir: Path,
                           timeout: float, env: dict[str, str] | None = None,
                           ) -> AsyncIterator[Peer]:
    """Start `argv` in a new session, wait until `ready_url` answers 200, stop its group."""
    log = workdir / "peer.log"
    proc = _spawn(argv, log=log, workdir=workdir, env=env)
    try:
        await _wait_until_up(ready_url, proc, timeout=timeout, log=log)
        yield Peer(url=f"http://127.0.0.1:{port}", port=port, pid=proc.pid)
    finally:
        await asyncio.to_thread(_stop_group, proc)


@contextlib.asynccontextmanager
async def run_prometheus(binary: str, workdir: Path, *, targets: list[str],
                         ) -> AsyncIterator[Peer]:
    """A real Prometheus scraping `targets` every second."""
    port = free_port()
    config = workdir / "prometheus.yml"
    target_list = ", ".join(f"'{t}'" for t in targets)
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: test\n"
        f"    static_configs:\n      - targets: [{target_list}]\n"
    )
    argv = [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    async with run_process_peer(argv, ready_url=f"http://127.0.0.1:{port}/-/ready", port=port,
                                workdir=workdir, timeout=30) as peer:
        yield peer


@contextlib.asynccontextmanager
async def run_mlflow(workdir: Path) -> AsyncIterator[Peer]:
    """A real MLflow tracking server with a SQLite store, serving artifacts from `workdir`."""
    port = free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    argv = [str(mlflow), "server",
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--artifacts-destination", str(workdir / "artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # Without its job runner: MLflow would start eight more processes (huey consumers for
    # GenAI jobs no test uses), which slows its start and every test beside it.
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    async with run_process_peer(argv, ready_url=f"http://127.0.0.1:{port}/health", port=port,
                                workdir=workdir, timeout=120, env=env) as peer:
        yield peer


async def wait_for_prometheus_value(url: str, query: str, expected: float, *,
                                    timeout: float = 15) -> None:
    """Poll Prometheus until `query` returns exactly one sample equal to `expected`."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            answer = (await http.get(f"{url}/api/v1/query", params={"query": query})).json()
            result = answer.get("data", {}).get("result", [])
            if len(result) == 1 and float(result[0]["value"][1]) == expected:
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"Prometheus never returned {expected} for {query!r}")


async def wait_for_prometheus_empty(url: str, query: str, *, timeout: float = 15) -> None:
    """Poll Prometheus until `query` returns no sample (the series went stale)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            answer = (await http.get(f"{url}/api/v1/query", params={"query": query})).json()
            if not answer.get("data", {}).get("result"):
                return
            await asyncio.sleep(0.2)
    raise AssertionError(f"Prometheus still returns samples for {query!r}")


def create_mlflow_version(tracking_url: str, model: str, files: dict[str, bytes], *,
                          workdir: Path, with_manifest: bool = True) -> tuple[str, str]:
    """Register a new version of `model` holding `files` (plus a manifest.json of their sha256
    and size); returns (version, run id). Blocking: call it with asyncio.to_thread."""
    import hashlib

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_url, registry_uri=tracking_url)
    local = Path(workdir) / f"upload-{time.monotonic_ns()}"
    for name, data in files.items():
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    if with_manifest:
        manifest = {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                    for name, data in files.items()}
        (local / "manifest.json").write_text(json.dumps(manifest))
    with contextlib.suppress(Exception):  # already registered by an earlier call
        client.create_registered_model(model)
    run = client.create_run("0")
    client.log_artifacts(run.info.run_id, str(local), "model")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(model, source=f"{run.info.artifact_uri}/model",
                                          run_id=run.info.run_id)
    return str(version.version), run.info.run_id


def overwrite_mlflow_artifact(tracking_url: str, run_id: str, name: str, data: bytes, *,
                              workdir: Path) -> None:
    """Replace one file among a run's `model/` artifacts (to simulate corruption). Blocking."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_url)
    local = Path(workdir) / f"overwrite-{time.monotonic_ns()}" / Path(name).name
    local.parent.mkdir(parents=True)
    local.write_bytes(data)
    client.log_artifact(run_id, str(local), "/".join(["model", *Path(name).parent.parts]))
