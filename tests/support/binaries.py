"""Find external binaries; skip without them, or fail when RUNBOOKD_REQUIRE_E2E=1 (CI)."""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRE_E2E = os.environ.get("RUNBOOKD_REQUIRE_E2E") == "1"


def need_binary(name: str) -> str:
    """The path of `name`; a missing binary skips the test, or fails it in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install it; .ci/run does)"
        if REQUIRE_E2E:
            pytest.fail(f"RUNBOOKD_REQUIRE_E2E=1 and {message}")
        pytest.skip(message)
    return path


def need_module(name: str) -> None:
    """Skip (or fail in CI) when an optional Python package is missing."""
    try:
        __import__(name)
    except ImportError:
        message = f"Python package {name} is not installed (pip install -e '.[dev]')"
        if REQUIRE_E2E:
            pytest.fail(f"RUNBOOKD_REQUIRE_E2E=1 and {message}")
        pytest.skip(message)
