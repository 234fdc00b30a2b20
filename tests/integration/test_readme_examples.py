"""The README's first hour, run as written (issue 15): `make run` in a copy of the checkout,
the Quick start's sh blocks typed into one terminal against it, then a TERM that stops it
quietly; and each body of examples/ posted to the webhook of its sender."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.actions.embedded_registry import ModelRegistry, create_demo_registry
from app.config import Settings
from app.main import create_app
from tests.support.auth import WEBHOOK_HEADERS, auth
from tests.support.binaries import need_binary
from tests.support.net import free_port, serve_app
from tests.support.payloads import pd_signature
from tests.support.wait import eventually

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# What `make run` needs from the checkout; the venv is the suite's own, linked.
CHECKOUT = ["Makefile", "pyproject.toml", "alembic.ini", "alert_mappings.yaml",
            "remediations", "migrations", "examples"]
README_URL = "127.0.0.1:8080"


def quick_start_blocks() -> list[str]:
    """The ```sh blocks of the README's Quick start, in order."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Quick start\n")
    section = readme[start:readme.index("\n## ", start + 1)]
    return re.findall(r"^```sh\n(.*?)^```", section, re.S | re.M)


class Terminal:
    """One shell session: each block runs in bash with the variables the blocks before it
    set (the README's blocks are typed one after another into one terminal)."""

    def __init__(self, cwd: Path, env: dict[str, str], port: int):
        self.cwd, self.env, self.port = cwd, env, port

    def run(self, block: str) -> str:
        state = self.cwd / ".terminal-env"
        block = block.replace(README_URL, f"127.0.0.1:{self.port}")
        # set -a: what a block sets (NOW) stays for the next one, as in a terminal.
        script = f"set -a -e -o pipefail\n{block}\nenv -0 > '{state}'\n"
        done = subprocess.run(["bash", "--noprofile", "--norc", "-c", script], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"{block}\nexit {done.returncode}\n{done.stdout}\n" \
                                     f"{done.stderr}"
        self.env = dict(item.split("=", 1) for item in state.read_text().split("\0") if item)
        return done.stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of what `make run` reads, so its var/ and runbookd.db land in a temp dir."""
    copy = tmp_path / "checkout"
    copy.mkdir()
    for name in CHECKOUT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


@pytest.fixture
def make_run(checkout: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int,
                                                               Path]]:
    """`make run PORT=<free>` in the copy, answering; stopped (the whole group) afterwards."""
    make = need_binary("make")
    need_binary("curl")  # the Quick start's blocks use it, as a new user would
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOKD_")}
    env["RUNBOOKD_POLL_SECONDS"] = "0.2"  # quicker steps; everything else is `make run`'s
    log = tmp_path / "make-run.log"
    with log.open("wb") as out:
        # -o: the venv is the suite's, already installed; make would reinstall it otherwise.
        proc = subprocess.Popen([make, "-o", ".venv/bin/runbookd", "run", f"PORT={port}"],
                                cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not _answers(port):
            assert proc.poll() is None, f"make run exited {proc.returncode}:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"make run never answered:\n{log.read_text()}"
            time.sleep(0.3)
        yield proc, port, log
    finally:
        # The whole group, even after make has ended: a runbookd it left behind dies too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/healthy", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _execution(port: int, token: str, execution_id: int) -> dict[str, Any]:
    answer = httpx.get(f"http://127.0.0.1:{port}/api/v1/executions/{execution_id}",
                       headers=auth(token), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _wait_status(port: int, token: str, execution_id: int, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 90
    while (found := _execution(port, token, execution_id))["status"] != status:
        assert time.monotonic() < deadline, f"execution {execution_id} never {status}: " \
            f"{found['status']} {[(s['step_id'], s['status']) for s in found['steps']]}"
        time.sleep(0.3)
    return found


def test_the_quick_start_runs_as_written_and_make_run_stops_quietly(make_run, checkout):
    proc, port, log = make_run
    blocks = quick_start_blocks()
    assert len(blocks) == 4, "the Quick start's sh blocks changed: update this test"
    post, approve, resolve, others = blocks
    token = (checkout / "var" / "dev-token").read_text().strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNBOOKD_")}
    terminal = Terminal(checkout, env, port)

    # Simulate, the registry before, the alert posted with a startsAt of now, the list.
    before = time.time()
    out = terminal.run(post)
    assert "runbook registry-quick-rollback" in out and "an execution would start" in out
    assert "  champion -> 2  " in out
    assert '"new":1' in out.replace(" ", ""), out
    execution = _wait_status(port, token, 1, "awaiting_approval")
    assert execution["runbook_id"] == "registry-quick-rollback"
    fired = dt.datetime.fromisoformat(execution["alert_fired_at"]).timestamp()
    assert before - 2 <= fired <= time.time(), "the alert starts when it was posted"

    # The approval; the champion moves, and the time to restore is minutes, not days.
    terminal.run(approve)
    done = _wait_status(port, token, 1, "succeeded")
    restore = (dt.datetime.fromisoformat(done["finished_at"])
               - dt.datetime.fromisoformat(done["alert_fired_at"]))
    assert dt.timedelta(0) < restore < dt.timedelta(minutes=3)
    (show,) = [line for line in approve.splitlines() if line.startswith("runbookd registry show")]
    shown = terminal.run(show)
    assert "  champion -> 1  " in shown
    assert re.search(r"  2 -> 1  rollback by execution 1, step run \d+; ", shown), shown

    # The resolved example with the firing one's startsAt is a change of that same alert.
    out = terminal.run(resolve)
    assert '"changed":1' in out.replace(" ", ""), out
    (alert,) = _execution(port, token, 1)["alerts"]
    assert (alert["status"], alert["fingerprint"]) == ("resolved", "dfe449c72a111fbc")

    out = terminal.run(others)
    assert "runbook model-drift" in out and "no mapping matches" in out
    # What a second `make run` prints: the champion as the rollback left it.
    again = terminal.run("runbookd demo-registry")
    assert "champion -> 1 (kept from an earlier run" in again

    # A TERM to make (a supervisor, `timeout`, `kill %1`) stops runbookd, and nobody shouts.
    logged = log.stat().st_size
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM  # make ends by the signal it got
    tail = log.read_bytes()[logged:].decode()
    assert "make: ***" not in tail and "Error" not in tail and "Terminated" not in tail, tail
    assert not _answers(port), "runbookd outlived make"


# Each example posted to its sender's webhook on a runbookd serving the shipped catalog.

PD_SECRET = "pagerduty-secret-for-examples-0123"


@pytest.fixture
def shipped(make_settings: Callable[..., Settings], tmp_path: Path) -> Callable[..., Settings]:
    def build(**overrides: Any) -> Settings:
        create_demo_registry(tmp_path / "registry")
        return make_settings(mappings=ROOT / "alert_mappings.yaml",
                             remediations_dir=ROOT / "remediations",
                             pagerduty_secrets=[PD_SECRET], **overrides)
    return build


def _posted(name: str) -> tuple[str, bytes, dict[str, str]]:
    """The webhook path, body and headers each sender posts an example with."""
    body = (EXAMPLES / name).read_bytes()
    if name.startswith("pagerduty"):
        return ("/webhooks/pagerduty", body,
                {"Content-Type": "application/json",
                 "X-PagerDuty-Signature": pd_signature(body, PD_SECRET),
                 "X-Webhook-Id": "c9d8b0a2-5f4e-4d3c-9b1a-0e2f3d4c5b6a"})
    return f"/webhooks/{name.split('-')[0]}", body, WEBHOOK_HEADERS


async def test_each_example_is_stored_by_its_webhook_and_starts_its_runbook(shipped, tokens):
    expected = {"alertmanager-firing.json": "registry-quick-rollback",
                "grafana-firing.json": "model-drift",
                "pagerduty-incident-triggered.json": None}
    async with serve_app(create_app(shipped(worker_enabled=False))) as server, \
            httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        for name in expected:
            path, body, headers = _posted(name)
            answer = await http.post(path, content=body, headers=headers)
            assert answer.status_code == 200, (name, answer.text)
            assert answer.json()["alerts"]["new"] == 1, (name, answer.text)
        listed = await http.get("/api/v1/executions", headers=auth(tokens["root"]))
        started = sorted(e["runbook_id"] for e in listed.json()["items"])
        assert started == sorted(r for r in expected.values() if r)
        alerts = await http.get("/api/v1/alerts", headers=auth(tokens["root"]))
        sources = sorted(a["source"] for a in alerts.json()["items"])
        assert sources == ["alertmanager", "grafana", "pagerduty"]


async def test_the_resolved_example_cancels_the_waiting_rollback(shipped, tokens, tmp_path):
    async with serve_app(create_app(shipped())) as server, \
            httpx.AsyncClient(base_url=server.url, timeout=30) as http:

        async def status_is(want: str) -> bool:
            answer = await http.get("/api/v1/executions/1", headers=auth(tokens["root"]))
            return answer.status_code == 200 and answer.json()["status"] == want

        for name, want in (("alertmanager-firing.json", "awaiting_approval"),
                           ("alertmanager-resolved.json", "cancelled")):
            path, body, headers = _posted(name)
            assert (await http.post(path, content=body, headers=headers)).status_code == 200
            await eventually(lambda want=want: status_is(want), timeout=60,
                             what=f"execution 1 {want} after {name}")
        detail = (await http.get("/api/v1/executions/1", headers=auth(tokens["root"]))).json()
        rollback = next(s for s in detail["steps"] if s["step_id"] == "rollback")
        assert rollback["status"] != "succeeded"
    champion = ModelRegistry(tmp_path / "registry").get_alias("demo-model", "champion")
    assert champion is not None and champion.version == "2"
