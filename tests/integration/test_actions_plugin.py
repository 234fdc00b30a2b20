"""A third-party action installed with pip is found through the `runbookd.actions` entry point."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.actions.registry import default_registry
from tests.support.action_ctx import make_ctx, run_action
from tests.support.binaries import REQUIRE_E2E

PACKAGE = Path(__file__).resolve().parent.parent / "plugin_pkg"
DIST = "runbookd-example-plugin"


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    # Offline and fast: no index, no dependency resolution, no isolated build environment.
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check",
                           "--no-input", "-q", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def _can_build_wheels() -> bool:
    """setuptools builds wheels itself from 70.1 on; older ones need the `wheel` package."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(p) for p in version.split(".")[:2])
    if (major, minor) >= (70, 1):
        return True
    return importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    if not _can_build_wheels():
        message = "building the plug-in offline needs setuptools>=70.1 in the venv"
        if REQUIRE_E2E:
            pytest.fail(f"RUNBOOKD_REQUIRE_E2E=1 and {message}")
        pytest.skip(message)
    # Build from a copy, so no build/ or egg-info lands in the source tree.
    source = tmp_path_factory.mktemp("plugin") / "plugin_pkg"
    shutil.copytree(PACKAGE, source)
    done = _pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(source))
    assert done.returncode == 0, done.stderr
    importlib.invalidate_caches()
    try:
        yield
    finally:
        _pip("uninstall", "-y", DIST)
        importlib.invalidate_caches()


async def test_registry_loads_and_runs_the_plugin(installed_plugin: None) -> None:
    registry = default_registry()
    assert "example.echo" in registry.names()
    assert "noop" in registry.names()  # built-ins are still there
    action = registry.get("example.echo")
    params = registry.get("example.echo").Params.model_validate(
        {"message": "hello from a plug-in"})
    result = await action.run(make_ctx(), params)
    assert result.output == {"message": "hello from a plug-in"}
    drill = await run_action(action, make_ctx(dry_run=True), message="x")
    assert drill.summary == "would echo 'x'"
