"""Fixtures of the end-to-end tests: one headless Chromium per browser test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.web import launched_chromium


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """Debian's chromium under Playwright (skips, or fails under RUNBOOKD_REQUIRE_E2E, when
    either is missing)."""
    async with launched_chromium() as browser:
        yield browser
