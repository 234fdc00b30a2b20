"""The recalibration DAG of model-drift-recalibrate (`recalibrate_model`), doing to the embedded
registry what the real one does: it registers the champion's files plus a calibrator as a new
version (with its manifest) and points the conf's `promote_alias` at it, as a DAG would that
serves from a shared volume. It returns what it did (an XCom the drills read back).

Two Airflow Variables steer it (a drill sets them; a conf is the runbook's, not the test's):
`runbookd_registry_dir`, the runbookd registry_dir to promote in (unset: it promotes nothing),
and `runbookd_recalibration_fails`, a model whose run fails (the calibrator did not converge).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from airflow.sdk import Variable, dag, get_current_context, task


def _write(path: Path, data: bytes) -> None:
    """Replace `path` atomically, as the registry's own writer does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _promote(root: Path, model: str, base: str, alias: str, reason: str) -> str:
    """A new version = the base version's files + calibrator.json; `alias` points at it."""
    folder = root / "models" / model
    versions = [int(p.name) for p in folder.iterdir() if p.name.isdigit()]
    new = str(max(versions) + 1)
    files = {p.name: p.read_bytes() for p in (folder / base).iterdir()
             if p.is_file() and p.name != "manifest.json"}
    files["calibrator.json"] = json.dumps({"kind": "isotonic", "base_version": base}).encode()
    for name, data in files.items():
        _write(folder / new / name, data)
    manifest = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    _write(folder / new / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True).encode())
    current = json.loads((folder / "aliases" / f"{alias}.json").read_text())["version"]
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    with (folder / "aliases" / f"{alias}.history.jsonl").open("a") as history:
        history.write(json.dumps({"time": now, "from": current, "to": new, "reason": reason,
                                  "execution_id": None, "step_id": None, "kind": "set"}) + "\n")
    _write(folder / "aliases" / f"{alias}.json", json.dumps(
        {"version": new, "set_at": now, "reason": reason, "execution_id": None}).encode())
    return new


@dag(dag_id="recalibrate_model", schedule=None, start_date=datetime(2024, 1, 1),
     catchup=False, tags=["runbookd-tests"])
def recalibrate_model() -> None:
    @task(retries=0)
    def recalibrate() -> dict:
        conf = dict(get_current_context()["dag_run"].conf or {})
        if Variable.get("runbookd_recalibration_fails", default=None) == conf.get("model"):
            raise RuntimeError("the calibrator did not converge (a runbookd test DAG)")
        root = Variable.get("runbookd_registry_dir", default=None)
        promoted = None
        if root:
            promoted = _promote(Path(root), conf["model"], str(conf["base_version"]),
                                conf["promote_alias"], f"recalibrated: {conf.get('reason')}")
        return {"conf": conf, "promoted": promoted}

    recalibrate()


recalibrate_model()
