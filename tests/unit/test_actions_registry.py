"""The embedded model registry (files, aliases, history) and the registry.* actions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.actions.base import ActionFailed
from app.actions.embedded_registry import (
    ModelRegistry,
    RegistryError,
    atomic_write,
    create_demo_registry,
)
from app.actions.embedded_registry_actions import (
    RegistryGetAlias,
    RegistryListVersions,
    RegistrySetAlias,
    RegistryVerify,
)
from tests.support.action_ctx import make_ctx, run_action


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "registry"
    create_demo_registry(path)
    return path


def snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")}


def test_demo_registry_layout(root: Path) -> None:
    registry = ModelRegistry(root)
    assert registry.list_versions("demo-model") == ["1", "2"]
    assert registry.get_alias("demo-model", "champion").version == "2"
    assert [(e.from_version, e.to_version) for e in registry.history("demo-model", "champion")
            ] == [(None, "1"), ("1", "2")]
    for version in ("1", "2"):
        manifest = json.loads((root / "models/demo-model" / version / "manifest.json").read_text())
        assert sorted(manifest) == ["config.json", "model.txt"]
        assert registry.verify("demo-model", version) == []
    assert registry.resolve_previous("demo-model", "champion").version == "1"


def test_demo_registry_is_rerunnable_and_keeps_aliases(root: Path) -> None:
    registry = ModelRegistry(root)
    registry.set_alias("demo-model", "champion", "1", reason="rolled back by hand")
    before = snapshot(root)
    create_demo_registry(root)
    assert snapshot(root) == before


def test_set_alias_is_atomic_and_appends_history(root: Path) -> None:
    registry = ModelRegistry(root)
    change = registry.set_alias("demo-model", "challenger", "1", reason="shadow",
                                execution_id=3, step_id="promote")
    assert (change.previous, change.current, change.changed) == (None, "1", True)
    again = registry.set_alias("demo-model", "challenger", "1")
    assert not again.changed
    history = registry.history("demo-model", "challenger")
    assert len(history) == 1
    assert (history[0].execution_id, history[0].step_id) == (3, "promote")
    aliases = root / "models/demo-model/aliases"
    assert not [p for p in aliases.iterdir() if p.name.endswith(".tmp")]
    assert registry.aliases("demo-model") == {"challenger": "1", "champion": "2"}


def test_atomic_write_leaves_the_old_file_when_writing_fails(tmp_path: Path) -> None:
    target = tmp_path / "alias.json"
    target.write_text("old")

    with pytest.raises(TypeError):
        atomic_write(target, object())  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["alias.json"]


def test_previous_skips_versions_that_fail_verification(root: Path) -> None:
    registry = ModelRegistry(root)
    registry.add_version("demo-model", "3", {"model.txt": b"v3"})
    registry.set_alias("demo-model", "champion", "3")
    (root / "models/demo-model/2/model.txt").write_text("corrupted")
    rollback = registry.resolve_previous("demo-model", "champion")
    assert rollback.version == "1"
    assert rollback.skipped[0][0] == "2"
    assert "model.txt: sha256" in rollback.skipped[0][1]


def test_previous_after_a_rollback_goes_forward_again(root: Path) -> None:
    registry = ModelRegistry(root)
    registry.set_alias("demo-model", "champion", "1")
    assert registry.resolve_previous("demo-model", "champion").version == "2"


def test_no_previous_version_is_explained(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.add_version("m", "1", {"a": b"1"})
    registry.set_alias("m", "champion", "1")
    with pytest.raises(RegistryError, match="has no previous version to go back to"):
        registry.resolve_previous("m", "champion")


@pytest.mark.parametrize("name", ["..", "../x", "a/b", "", "aliases", ".hidden"])
def test_names_cannot_escape_the_registry(root: Path, name: str) -> None:
    with pytest.raises(RegistryError, match="not a valid name"):
        ModelRegistry(root).list_versions(name)


async def test_get_alias_action(root: Path) -> None:
    ctx = make_ctx(registry_dir=root)
    result = await run_action(RegistryGetAlias(), ctx, model="demo-model", alias="champion")
    assert result.output["version"] == "2"
    with pytest.raises(ActionFailed, match="alias 'shadow' of model 'demo-model' is not set"):
        await run_action(RegistryGetAlias(), ctx, model="demo-model", alias="shadow")
    with pytest.raises(ActionFailed, match="model 'nope' is not in the registry"):
        await run_action(RegistryGetAlias(), ctx, model="nope", alias="champion")


async def test_set_alias_to_previous_rolls_back_once(root: Path) -> None:
    ctx = make_ctx(registry_dir=root, execution_id=11, step_id="rollback")
    result = await run_action(RegistrySetAlias(), ctx, model="demo-model", alias="champion",
                              version="previous")
    assert result.summary == "set alias champion of demo-model from version 2 to version 1"
    assert result.output == {"model": "demo-model", "alias": "champion", "from": "2",
                             "to": "1", "changed": True}
    # The same step, retried or resumed after a crash, does not go back a second time.
    again = await run_action(RegistrySetAlias(), ctx, model="demo-model", alias="champion",
                             version="previous")
    assert again.output["changed"] is False
    assert ModelRegistry(root).get_alias("demo-model", "champion").version == "1"
    entry = ModelRegistry(root).history("demo-model", "champion")[-1]
    assert (entry.from_version, entry.to_version, entry.execution_id) == ("2", "1", 11)


async def test_set_alias_explicit_version_is_idempotent(root: Path) -> None:
    ctx = make_ctx(registry_dir=root)
    result = await run_action(RegistrySetAlias(), ctx, model="demo-model", alias="champion",
                              version=2)
    assert result.output["changed"] is False
    assert "already points at version 2" in result.summary
    with pytest.raises(ActionFailed, match=r"has no version 9 \(versions: 1, 2\)"):
        await run_action(RegistrySetAlias(), ctx, model="demo-model", alias="champion",
                         version=9)


async def test_set_alias_dry_run_changes_nothing(root: Path) -> None:
    before = snapshot(root)
    result = await run_action(RegistrySetAlias(), make_ctx(registry_dir=root, dry_run=True),
                              model="demo-model", alias="champion", version="previous")
    assert result.summary == "would set alias champion of demo-model from version 2 to version 1"
    assert snapshot(root) == before


async def test_list_versions_and_verify(root: Path) -> None:
    ctx = make_ctx(registry_dir=root)
    listed = await run_action(RegistryListVersions(), ctx, model="demo-model")
    assert listed.output == {"model": "demo-model", "versions": ["1", "2"],
                             "aliases": {"champion": "2"}}
    verified = await run_action(RegistryVerify(), ctx, model="demo-model", alias="champion")
    assert verified.output["ok"] and verified.output["version"] == "2"
    (root / "models/demo-model/1/config.json").unlink()
    with pytest.raises(ActionFailed, match=r"demo-model version 1 fails verification .*"
                                           r"config\.json: missing"):
        await run_action(RegistryVerify(), ctx, model="demo-model", version=1)


async def test_verify_dry_run_says_it_read(root: Path) -> None:
    result = await run_action(RegistryVerify(), make_ctx(registry_dir=root, dry_run=True),
                              model="demo-model", version="2")
    assert result.summary.startswith("dry run (read-only, ran for real)")


def test_verify_needs_one_target() -> None:
    with pytest.raises(ValidationError, match="exactly one of `version` or `alias`"):
        RegistryVerify.Params.model_validate({"model": "m", "version": 1, "alias": "champion"})
    with pytest.raises(ValidationError):
        RegistrySetAlias.Params.model_validate({"model": "../etc", "alias": "x", "version": 1})


async def test_read_only_actions_say_so_in_a_drill(root: Path) -> None:
    drill = make_ctx(registry_dir=root, dry_run=True)
    got = await run_action(RegistryGetAlias(), drill, model="demo-model", alias="champion")
    listed = await run_action(RegistryListVersions(), drill, model="demo-model")
    for result in (got, listed):
        assert result.summary.startswith("dry run (read-only, ran for real): ")


def _with_a_big_version(root: Path) -> ModelRegistry:
    """A registry whose version big/1 has 512 MiB of weights (sparse), slow to checksum."""
    registry = ModelRegistry(root)
    folder = registry.version_dir("big", "1")
    folder.mkdir(parents=True)
    with (folder / "weights.bin").open("wb") as fh:
        fh.truncate(512 * 1024 * 1024)
    (folder / "manifest.json").write_text(json.dumps({"weights.bin": "0" * 64}))
    return registry


async def test_rollback_is_cancellable_while_it_verifies_candidates(tmp_path: Path) -> None:
    registry = _with_a_big_version(tmp_path)
    registry.add_version("big", "2", {"weights.bin": b"small"})
    registry.set_alias("big", "champion", "1")
    registry.set_alias("big", "champion", "2")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_action(RegistrySetAlias(), make_ctx(registry_dir=tmp_path),
                                          model="big", alias="champion", version="previous"),
                               0.05)
    assert registry.get_alias("big", "champion").version == "2"


async def test_verify_is_cancellable(tmp_path: Path) -> None:
    _with_a_big_version(tmp_path)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_action(RegistryVerify(), make_ctx(registry_dir=tmp_path),
                                          model="big", version="1"), 0.05)
