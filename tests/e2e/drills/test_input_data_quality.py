"""Drill of input-data-quality: real Prometheus, real Airflow 3, and a fake `dataset-quarantine`.

No lake runs here, so the data platform's CLI is a stand-in the test writes: found on PATH and
allow-listed by name, as the runbook's header says, it does to a folder what the real one does
to the lake (it moves the partition under _quarantine/, and back on `release`), refusing what
the real one refuses (an unknown command or flag, a missing partition). A watcher plays the
lake's exporter: ml_dataset_partition_quarantined follows the folder.

The drill approves the quarantine and the pause after reading their plans, finds the partition
moved and the retraining DAG paused in Airflow, then starts both rollbacks by hand (each a new
execution, approved as STEP.rollback) and finds the DAG unpaused and the partition back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.drills.harness import Platform, Shipped, declare_series, labels_text, step_of
from tests.support.auth import auth

pytestmark = pytest.mark.e2e

RUNBOOK = "input-data-quality"
COMMAND = "dataset-quarantine"
DATASET, PARTITION, RETRAIN = "drill_quality_events", "2026-11-26", "retrain_drill_quality"
OF_PARTITION = labels_text({"dataset": DATASET, "partition": PARTITION})
QUARANTINED = f"ml_dataset_partition_quarantined{OF_PARTITION}"

declare_series(gauges={
    # 9% of the partition's rows fail a check (the precondition's subquery sees it from the
    # platform's start).
    "ml_dataset_validation_failures_total" + labels_text(
        {"dataset": DATASET, "partition": PARTITION, "check": "user_id_not_null"}): 900,
    f"ml_dataset_rows_total{OF_PARTITION}": 10_000,
})

# The stand-in CLI. It logs each call as one line of shell words, for the drill to read back.
FAKE_QUARANTINE = '''#!{python}
"""dataset-quarantine add|release --dataset=D --partition=P [--reason=R] (a test stand-in)."""
import os, re, shlex, sys
LAKE = {lake!r}
command, *flags = sys.argv[1:] or ["(none)"]
allowed = {{"add": {{"dataset", "partition", "reason"}}, "release": {{"dataset", "partition"}}}}
if command not in allowed:
    sys.exit(f"dataset-quarantine: unknown command {{command!r}}")
values = {{}}
for flag in flags:
    match = re.fullmatch(r"--([a-z]+)=(.+)", flag)
    if not match or match[1] not in allowed[command]:
        sys.exit(f"dataset-quarantine: bad flag {{flag!r}}")
    values[match[1]] = match[2]
if not {{"dataset", "partition"}} <= values.keys() or (command == "add" and "reason" not in values):
    sys.exit("dataset-quarantine: missing flag")
live = os.path.join(LAKE, values["dataset"], values["partition"])
held = os.path.join(LAKE, "_quarantine", values["dataset"], values["partition"])
source, target = (live, held) if command == "add" else (held, live)
with open(os.path.join(LAKE, "calls.log"), "a") as log:
    log.write(shlex.join(sys.argv[1:]) + "\\n")
if os.path.isdir(target) and not os.path.exists(source):
    print(f"{{values['dataset']}}/{{values['partition']}}: already done, nothing to move")
    sys.exit(0)
if not os.path.isdir(source):
    sys.exit(f"dataset-quarantine: no partition at {{source}}")
os.makedirs(os.path.dirname(target), exist_ok=True)
os.rename(source, target)
print(f"moved {{source}} -> {{target}}")
'''


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A lake folder holding the bad partition, and the stand-in CLI first on PATH."""
    root = tmp_path / "lake"
    (root / DATASET / PARTITION).mkdir(parents=True)
    (root / DATASET / PARTITION / "part-0000.parquet").write_bytes(b"PAR1 bad rows PAR1")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    command = bindir / COMMAND
    command.write_text(FAKE_QUARANTINE.format(python=sys.executable, lake=str(root)))
    command.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    return root


def held(lake: Path) -> bool:
    return (lake / "_quarantine" / DATASET / PARTITION / "part-0000.parquet").is_file()


@contextlib.asynccontextmanager
async def lake_exporter(platform: Platform, lake: Path) -> AsyncIterator[None]:
    """ml_dataset_partition_quarantined as the lake's exporter reports it: 1 while held."""
    async def follow() -> None:
        while True:
            platform.set(QUARANTINED, 1.0 if held(lake) else 0.0)
            await asyncio.sleep(0.1)

    task = asyncio.create_task(follow())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def roll_back_by_hand(runbookd: Shipped, execution_id: int, step: str) -> int:
    """A responder starts the declared rollback of `step`: a new execution's id."""
    answer = await runbookd.http.post(
        f"/api/v1/executions/{execution_id}/steps/{step}/rollback",
        headers=auth(runbookd.tokens["rita"]), json={"reason": "producer re-delivered"})
    assert answer.status_code == 201, answer.text
    started: dict[str, Any] = answer.json()
    assert (started["parent_id"], started["trigger"]) == (execution_id, "rollback")
    return int(started["id"])


async def test_quarantine_and_pause_then_both_rolled_back_by_hand(platform, airflow, shipped,
                                                                  lake: Path) -> None:
    await airflow.parsed(RETRAIN)
    await airflow.peer.set_paused(RETRAIN, False)
    await platform.subqueries_see_series()
    host, executable = airflow.peer.host, str(lake.parent / "bin" / COMMAND)

    async with lake_exporter(platform, lake), shipped(
            platform, airflow, command_allowlist=[COMMAND]) as runbookd:
        await runbookd.fire({"alertname": "DatasetValidationFailed", "team": "data-platform",
                             "dataset": DATASET, "partition": PARTITION,
                             "retrain_dag": RETRAIN})
        execution = await runbookd.execution_of(RUNBOOK)
        ex = execution["id"]
        add = [COMMAND, "add", f"--dataset={DATASET}", f"--partition={PARTITION}",
               f"--reason=runbookd execution {ex}"]

        quarantine = await runbookd.awaiting(ex, "quarantine-partition")
        assert quarantine["plan"]["summary"] == (
            f"argv: {shlex.join(add)} ({COMMAND} is {executable})")
        assert not held(lake), "quarantined before approval"
        await runbookd.approve(ex, "quarantine-partition")

        pause = await runbookd.awaiting(ex, "block-retraining")
        assert held(lake) and not (lake / DATASET / PARTITION).exists()
        assert pause["plan"]["summary"] == f"pause DAG {RETRAIN} on {host}: unpaused → paused"
        assert not await airflow.peer.is_paused(RETRAIN)
        await runbookd.approve(ex, "block-retraining")
        detail = await runbookd.finished(ex)

        assert detail["status"] == "succeeded", detail["status_reason"]
        assert [s["ref"] for s in detail["steps"]] == [
            "read-failed-checks", "check-schema", "check-ingest", "quarantine-partition",
            "block-retraining"]
        assert all(s["status"] == "succeeded" for s in detail["steps"]), detail["steps"]
        moved = step_of(detail, "quarantine-partition")["output"]
        assert (moved["exit_code"], moved["verify"]["holds"]) == (0, True)
        assert step_of(detail, "block-retraining")["output"]["changed"] is True
        # The effects: the partition is out of every reader's path, retraining is paused.
        assert held(lake)
        assert await airflow.peer.is_paused(RETRAIN)

        # The producer re-delivered: undo the pause, then the quarantine, each by hand.
        resume = await roll_back_by_hand(runbookd, ex, "block-retraining")
        unpause = await runbookd.awaiting(resume, "block-retraining.rollback")
        assert unpause["plan"]["summary"] == (
            f"unpause DAG {RETRAIN} on {host}: paused → unpaused")
        assert await airflow.peer.is_paused(RETRAIN), "unpaused before approval"
        await runbookd.approve(resume, "block-retraining.rollback")
        resumed = await runbookd.finished(resume)
        assert resumed["status"] == "succeeded", resumed["status_reason"]
        assert not await airflow.peer.is_paused(RETRAIN)

        release = await roll_back_by_hand(runbookd, ex, "quarantine-partition")
        released_plan = await runbookd.awaiting(release, "quarantine-partition.rollback")
        argv = [COMMAND, "release", f"--dataset={DATASET}", f"--partition={PARTITION}"]
        assert released_plan["plan"]["summary"] == (
            f"argv: {shlex.join(argv)} ({COMMAND} is {executable})")
        assert held(lake), "released before approval"
        await runbookd.approve(release, "quarantine-partition.rollback")
        released = await runbookd.finished(release)
        assert released["status"] == "succeeded", released["status_reason"]

    assert not held(lake)
    assert (lake / DATASET / PARTITION / "part-0000.parquet").is_file()
    # Exactly the calls approved, each once, with the arguments the plans showed.
    assert (lake / "calls.log").read_text().splitlines() == [
        shlex.join(add[1:]), shlex.join(argv[1:])]
