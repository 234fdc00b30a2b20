"""artifact.verify on local files and directories: digests, manifests, failures, cancellation."""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.actions.artifact import ArtifactVerify
from app.actions.base import ActionFailed
from app.actions.checksums import ManifestError, in_thread, parse_manifest
from app.actions.embedded_registry import create_demo_registry
from tests.support.action_ctx import make_ctx, run_action

ACTION = ArtifactVerify()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def artifact_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read files under tmp_path: make it the artifact root (see
    test_artifact_roots.py for the confinement itself)."""
    monkeypatch.setenv("RUNBOOKD_ARTIFACT_ROOTS", str(tmp_path))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "weights").mkdir(parents=True)
    files = {"weights/layer0.bin": b"\x00" * 3000, "config.json": b'{"a": 1}'}
    for name, data in files.items():
        (root / name).write_bytes(data)
    (root / "manifest.json").write_text(json.dumps({n: sha(d) for n, d in files.items()}))
    return root


async def test_file_matches_sha256_and_size(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"weights" * 1000)
    result = await run_action(ACTION, make_ctx(), uri=str(path), sha256=sha(path.read_bytes()),
                              size=7000)
    assert result.output["ok"] is True
    assert result.output["size"] == 7000
    assert "matches the expected sha256 and size" in result.summary


async def test_file_url_is_a_local_path(tmp_path: Path) -> None:
    path = tmp_path / "with space.bin"
    path.write_bytes(b"abc")
    result = await run_action(ACTION, make_ctx(), uri=path.as_uri(), sha256=sha(b"abc"))
    assert result.output["sha256"] == sha(b"abc")


async def test_wrong_sha256_names_the_file_and_both_digests(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"tampered")
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, make_ctx(), uri=str(path), sha256="0" * 64)
    assert "model.bin: sha256 is " + sha(b"tampered") in failed.value.message
    assert "expected " + "0" * 64 in failed.value.message
    assert failed.value.output["ok"] is False


async def test_wrong_size_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"12345")
    with pytest.raises(ActionFailed, match=r"model\.bin: size is 5, expected 6"):
        await run_action(ACTION, make_ctx(), uri=str(path), size=6)


async def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ActionFailed, match=r"artifact file .*nothing\.bin does not exist"):
        await run_action(ACTION, make_ctx(), uri=str(tmp_path / "nothing.bin"), size=1)


async def test_directory_with_manifest_beside_it(model_dir: Path) -> None:
    result = await run_action(ACTION, make_ctx(), uri=str(model_dir), manifest=True)
    assert result.output == {"uri": str(model_dir), "files_checked": 2, "failed": [],
                             "ok": True}


async def test_directory_reports_every_bad_file(model_dir: Path) -> None:
    (model_dir / "weights" / "layer0.bin").write_bytes(b"\x01" * 3000)
    (model_dir / "config.json").unlink()
    (model_dir / "extra.pkl").write_bytes(b"?")
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, make_ctx(), uri=str(model_dir), manifest=True)
    message = failed.value.message
    assert "2 of 2 file(s) bad" in message
    assert "config.json: missing" in message
    assert "weights/layer0.bin: sha256 is" in message
    assert [f["file"] for f in failed.value.output["failed"]] == ["config.json",
                                                                   "weights/layer0.bin"]
    assert failed.value.output["unlisted"] == ["extra.pkl"]


async def test_single_file_against_the_manifest_beside_it(model_dir: Path) -> None:
    result = await run_action(ACTION, make_ctx(), uri=str(model_dir / "config.json"),
                              manifest=True)
    assert result.output["files_checked"] == 1


async def test_explicit_manifest_path(model_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "expected.json"
    (model_dir / "manifest.json").rename(elsewhere)
    result = await run_action(ACTION, make_ctx(), uri=str(model_dir), manifest=str(elsewhere))
    assert result.output["ok"]
    elsewhere.rename(model_dir / "checksums.json")
    beside = await run_action(ACTION, make_ctx(), uri=str(model_dir), manifest="checksums.json")
    assert beside.output["files_checked"] == 2
    assert "unlisted" not in beside.output


async def test_manifest_from_the_registry(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    create_demo_registry(registry)
    deployed = registry / "models" / "demo-model" / "2"
    ctx = make_ctx(registry_dir=registry)
    assert (await run_action(ACTION, ctx, uri=str(deployed),
                             manifest="registry:demo-model@champion")).output["ok"]
    with pytest.raises(ActionFailed, match=r"model\.txt: sha256"):
        await run_action(ACTION, ctx, uri=str(deployed), manifest="registry:demo-model/1")


async def test_missing_or_bad_manifest_is_named(model_dir: Path) -> None:
    (model_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ActionFailed, match=r"manifest .*manifest\.json is not valid JSON"):
        await run_action(ACTION, make_ctx(), uri=str(model_dir), manifest=True)
    (model_dir / "manifest.json").unlink()
    with pytest.raises(ActionFailed, match=r"manifest .*manifest\.json does not exist"):
        await run_action(ACTION, make_ctx(), uri=str(model_dir), manifest=True)


def test_manifest_paths_cannot_escape() -> None:
    for bad in ("../etc/passwd", "/etc/passwd", "a/../../b", "a\\b"):
        with pytest.raises(ManifestError, match="not a safe relative path"):
            parse_manifest(json.dumps({bad: "0" * 64}).encode(), source="m")
    with pytest.raises(ManifestError, match="no valid sha256"):
        parse_manifest(b'{"a": "xyz"}', source="m")


def test_params_need_something_to_check() -> None:
    with pytest.raises(ValidationError, match="needs `sha256`, `size` or `manifest`"):
        ArtifactVerify.Params.model_validate({"uri": "/x"})
    with pytest.raises(ValidationError):
        ArtifactVerify.Params.model_validate({"uri": "/x", "sha256": "nothex"})


async def test_dry_run_still_reads_and_says_so(model_dir: Path) -> None:
    result = await run_action(ACTION, make_ctx(dry_run=True), uri=str(model_dir), manifest=True)
    assert result.summary.startswith("dry run (read-only, ran for real)")


async def test_cancellation_stops_hashing(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as fh:
        fh.truncate(512 * 1024 * 1024)  # sparse: instant to create, slow to hash
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_action(ACTION, make_ctx(), uri=str(big), size=1), 0.05)


async def test_in_thread_tells_the_thread_to_stop_when_cancelled() -> None:
    stopped = threading.Event()

    def work(stop: threading.Event) -> None:
        while not stop.wait(0.01):
            pass
        stopped.set()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(in_thread(work), 0.05)
    assert await asyncio.to_thread(stopped.wait, 2)
