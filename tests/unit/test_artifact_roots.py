"""Local files only under configured roots (invariant 6): artifact.verify reads a local path or
a `file://` URL only when it lies, symlinks resolved, under RUNBOOKD_ARTIFACT_ROOTS (by default
the registry directory), and never through a `..` component. The embedded registry reads only
its own files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from app.actions.artifact import ArtifactVerify
from app.actions.base import ActionFailed
from app.actions.embedded_registry import (
    ModelRegistry,
    RegistryError,
    check_alias,
    check_name,
    create_demo_registry,
)
from app.actions.embedded_registry_actions import RegistryVerify
from app.config import Settings
from tests.support.action_ctx import make_ctx, run_action

ACTION = ArtifactVerify()
SECRET = b"root:x:0:0:secret-looking line\n"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """A root holding a model, and a secret file beside the root (outside it)."""
    root = tmp_path / "root"
    model = root / "model"
    model.mkdir(parents=True)
    (model / "weights.bin").write_bytes(b"w" * 100)
    (model / "manifest.json").write_text(json.dumps({"weights.bin": sha(b"w" * 100)}))
    secret = tmp_path / "outside" / "secret.txt"
    secret.parent.mkdir()
    secret.write_bytes(SECRET)
    return {"root": root, "model": model, "secret": secret, "tmp": tmp_path}


def ctx_for(root: Path, **settings):
    return make_ctx(artifact_roots=str(root), **settings)


def assert_refused(failed: pytest.ExceptionInfo[ActionFailed]) -> None:
    message = failed.value.message
    assert "RUNBOOKD_ARTIFACT_ROOTS" in message, message
    # Nothing read from the file may come back: neither its digest nor its size.
    assert sha(SECRET) not in message and sha(SECRET) not in json.dumps(failed.value.output)
    assert failed.value.output is None or "sha256" not in failed.value.output


async def test_a_file_under_a_root_is_read(layout):
    path = layout["model"] / "weights.bin"
    result = await run_action(ACTION, ctx_for(layout["root"]), uri=str(path),
                              sha256=sha(b"w" * 100))
    assert result.output["ok"]
    assert (await run_action(ACTION, ctx_for(layout["root"]), uri=path.as_uri(),
                             size=100)).output["ok"]
    assert (await run_action(ACTION, ctx_for(layout["root"]), uri=str(layout["model"]),
                             manifest=True)).output["ok"]


@pytest.mark.parametrize("how", ["dotdot", "dotdot-deep", "absolute", "file-url",
                                 "file-url-dotdot", "file-url-encoded-dotdot",
                                 "file-url-localhost", "prefix-sibling"])
async def test_paths_outside_every_root_are_refused(layout, how):
    root, secret = layout["root"], layout["secret"]
    uri = {
        "dotdot": f"{root}/model/../../outside/secret.txt",
        "dotdot-deep": f"{root}/../../../../../../../..{secret}",
        "absolute": str(secret),
        "file-url": secret.as_uri(),
        "file-url-dotdot": f"file://{root}/../outside/secret.txt",
        "file-url-encoded-dotdot": f"file://{root}/%2e%2e/outside/secret.txt",
        "file-url-localhost": f"file://localhost{secret}",
        "prefix-sibling": str(secret),
    }[how]
    roots = root if how != "prefix-sibling" else layout["tmp"] / "outsid"
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx_for(roots), uri=uri, sha256="0" * 64)
    assert_refused(failed)


async def test_the_issue_example_etc_passwd_is_refused(layout):
    uri = f"{layout['root']}/../../../../etc/passwd"
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx_for(layout["root"]), uri=uri, size=1)
    assert_refused(failed)
    assert "'..'" in failed.value.message
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx_for(layout["root"]), uri="../../../../etc/passwd", size=1)
    assert_refused(failed)


async def test_a_symlink_out_of_a_root_is_refused(layout):
    link = layout["model"] / "link.bin"
    link.symlink_to(layout["secret"])
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx_for(layout["root"]), uri=str(link), sha256="0" * 64)
    assert_refused(failed)
    folder = layout["root"] / "linked-dir"
    folder.symlink_to(layout["secret"].parent, target_is_directory=True)
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx_for(layout["root"]), uri=str(folder / "secret.txt"),
                         size=1)
    assert_refused(failed)


async def test_a_manifest_entry_that_links_out_of_the_root_is_refused(layout):
    model = layout["model"]
    (model / "leak").symlink_to(layout["secret"])
    (model / "manifest.json").write_text(json.dumps({"weights.bin": sha(b"w" * 100),
                                                     "leak": "0" * 64}))
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx_for(layout["root"]), uri=str(model), manifest=True)
    assert_refused(failed)


@pytest.mark.parametrize("manifest", ["secret", "../../outside/secret.txt", "file-url"])
async def test_a_manifest_outside_every_root_is_refused(layout, manifest):
    value = {"secret": str(layout["secret"]), "file-url": layout["secret"].as_uri()}.get(
        manifest, manifest)
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx_for(layout["root"]), uri=str(layout["model"]),
                         manifest=value)
    assert_refused(failed)


async def test_an_http_artifact_cannot_read_a_local_manifest_outside_the_roots(layout):
    # Refused before any request: port 9 (discard) is never contacted.
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx_for(layout["root"], allow=["127.0.0.1"]),
                         uri="http://127.0.0.1:9/model/", manifest=str(layout["secret"]))
    assert_refused(failed)


async def test_the_default_root_is_the_registry_directory(layout, monkeypatch):
    monkeypatch.delenv("RUNBOOKD_ARTIFACT_ROOTS", raising=False)
    settings = Settings(env="dev", registry_dir=layout["root"])
    assert settings.artifact_root_paths == [layout["root"]]
    ctx = make_ctx(registry_dir=layout["root"])
    path = layout["model"] / "weights.bin"
    assert (await run_action(ACTION, ctx, uri=str(path), size=100)).output["ok"]
    with pytest.raises(ActionFailed) as failed:
        await run_action(ACTION, ctx, uri=str(layout["secret"]), size=1)
    assert_refused(failed)


def test_roots_are_a_comma_separated_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("RUNBOOKD_ARTIFACT_ROOTS", f"{tmp_path}/a, {tmp_path}/b")
    settings = Settings(env="dev")
    assert settings.artifact_root_paths == [tmp_path / "a", tmp_path / "b"]


async def test_a_second_root_and_a_symlinked_root(layout):
    other = layout["tmp"] / "other"
    other.mkdir()
    (other / "x.bin").write_bytes(b"x")
    alias = layout["tmp"] / "root-alias"
    alias.symlink_to(layout["root"], target_is_directory=True)
    ctx = make_ctx(artifact_roots=f"{alias},{other}")
    assert (await run_action(ACTION, ctx, uri=str(other / "x.bin"), size=1)).output["ok"]
    assert (await run_action(ACTION, ctx, uri=str(layout["model"] / "weights.bin"),
                             size=100)).output["ok"]


def test_registry_names_are_whole_segments():
    for bad in ("demo\n", "..", ".hidden", "a/b", "aliases"):
        with pytest.raises(RegistryError):
            check_name("model", bad)
    with pytest.raises(RegistryError):
        check_alias("champion\n")


async def test_the_registry_reads_only_its_own_files(tmp_path):
    registry = tmp_path / "registry"
    create_demo_registry(registry)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    version = registry / "models" / "demo-model" / "2"
    (version / "leak").symlink_to(secret)
    manifest = json.loads((version / "manifest.json").read_text())
    (version / "manifest.json").write_text(json.dumps({**manifest, "leak": "0" * 64}))
    with pytest.raises(RegistryError, match="outside the registry"):
        ModelRegistry(registry).verify("demo-model", "2")
    with pytest.raises(ActionFailed) as failed:
        await run_action(RegistryVerify(), make_ctx(registry_dir=registry),
                         model="demo-model", version="2")
    assert sha(SECRET) not in failed.value.message
    # A whole version folder that is a link out of the registry.
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "manifest.json").write_text(json.dumps({"secret.txt": "0" * 64}))
    (outside / "secret.txt").write_bytes(SECRET)
    (registry / "models" / "demo-model" / "3").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RegistryError, match="outside the registry"):
        ModelRegistry(registry).verify("demo-model", "3")
    with pytest.raises(RegistryError, match="outside the registry"):
        ModelRegistry(registry).read_manifest("demo-model", "3")
