"""Drills in a real browser (Playwright on Debian's chromium, SQLite only): the runbook page
says when the runbook was last drilled and what each step's drill found, and the stats page
lists the drilled runbooks. Screenshots under test-artifacts/screenshots/ (git-ignored),
named issue16-drill-*.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from app.actions.embedded_registry import create_demo_registry
from tests.integration.test_drills import drilled, finished
from tests.support.web import screenshot, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]



async def shot(page: Any, name: str) -> Path:
    return await screenshot(page, f"issue16-drill-{name}", full=True, min_bytes=10_000)


async def test_the_runbook_page_shows_the_last_drill(make_rig, chromium, tokens, tmp_path):
    create_demo_registry(tmp_path / "registry")
    async with make_rig([drilled(tmp_path)]) as r:
        started = await r.post("/api/v1/runbooks/drilled/drills", "rita", {})
        await finished(r, "drilled", started.json()["id"])
        page = await signed_in_page(chromium, r.server.url, tokens["victor"])
        context = page.context

        await page.goto(f"{r.server.url}/runbooks/drilled#drill")
        section = page.locator("#drill")
        headline = await section.get_by_role("status").inner_text()
        rows = await section.locator("tbody tr").all_inner_texts()
        schedule = await section.locator("p.muted").last.inner_text()
        await section.scroll_into_view_if_needed()
        runbook_shot = await shot(page, "runbook")

        await page.goto(f"{r.server.url}/stats")
        panel = page.locator("#drills")
        stats_rows = await panel.locator("tbody tr").all_inner_texts()
        await panel.scroll_into_view_if_needed()
        stats_shot = await shot(page, "stats")
        await context.close()
    assert re.fullmatch(r"Last drilled just now: 2 problems \(execution #\d+\)\.", headline)
    assert len(rows) == 5
    gone = next(row for row in rows if row.startswith("gone"))
    assert "read for real" in gone and "problem" in gone and "retired-model" in gone
    change = next(row for row in rows if row.startswith("change"))
    assert "planned only" in change and "\tok\t" in change
    assert "Schedule: every 7d, next due" in schedule
    assert len(stats_rows) == 1 and stats_rows[0].startswith("drilled\tjust now\t2 problems")
    assert runbook_shot.exists() and stats_shot.exists()
