"""The storm brake in a real browser (issue 16): the guards page shows an engaged brake with
its targets and held executions, and a responder releases it there with a reason; the held
executions then run, and the release is recorded. Screenshots under
test-artifacts/screenshots/issue16-brake-*.png."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.engine.brake_models import StormBrakeRow
from app.events import Event
from tests.support.engine_catalog import runbook, step
from tests.support.web import launched_chromium, screenshot

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

BOOK = runbook("storm", [step("fix")], limits={"brake": {"targets": 2, "within": "10m"}},
               escalation=[{"after": "5m", "notify": ["slack:#ml-oncall"]}])
REASON = "the feature store is back; these models were never broken"


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    async with launched_chromium() as browser:
        yield browser


async def test_a_responder_releases_an_engaged_brake_on_the_guards_page(make_rig, chromium):
    from playwright.async_api import expect

    async with make_rig([BOOK]) as r:
        for n in range(4):
            await r.fire("storm", model=f"m{n}")
        await r.wait_for(lambda rows: len(rows) == 4 and sorted(e.status for e in rows) == [
            "paused", "paused", "succeeded", "succeeded"])

        context = await chromium.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        await page.goto(f"{r.server.url}/login?next=/guards")
        await page.get_by_label("API token").fill(r.tokens["rita"])
        await page.get_by_role("button", name=re.compile("Sign in")).click()
        await page.wait_for_url(f"{r.server.url}/guards")

        brake = page.locator("#brake-runbook-storm")
        await expect(brake.locator("h3")).to_contain_text("engaged")
        held = brake.locator("tbody tr")
        await expect(held).to_have_count(2)
        await expect(held.first).to_contain_text("paused")
        await screenshot(page, "issue16-brake-engaged", full=True)

        # The release needs its reason: the browser refuses an empty one (required).
        await brake.get_by_role("button", name=re.compile("Release")).click()
        assert await brake.get_by_label("Reason (recorded)").evaluate(
            "input => !input.validity.valid")
        await brake.get_by_label("Reason (recorded)").fill(REASON)
        await brake.get_by_role("button", name=re.compile("Release")).click()
        brake = page.locator("#brake-runbook-storm")
        await expect(brake.locator("h3")).to_contain_text("released")
        await expect(brake).to_contain_text("Released by rita")
        await expect(brake).to_contain_text(REASON)
        await screenshot(page, "issue16-brake-released", full=True)
        await context.close()

        rows = await r.wait_for(lambda rows: all(e.status == "succeeded" for e in rows))
        assert len(rows) == 4
        [row] = await r.rows(StormBrakeRow)
        assert (row.engaged, row.updated_by, row.reason) == (False, "rita", REASON)
        released = [e for e in await r.rows(Event) if e.kind == "brake.released"]
        assert [(e.actor, e.reason) for e in released] == [("rita", REASON)]
