"""Issue 15's pages in a real browser (Playwright on Debian's chromium, SQLite only): the
approval card above the fold at 1280x800 with the banner after approving, the "Needs you"
list, the stats page's charts and the runbook's triage tree. Each test saves a screenshot
under test-artifacts/screenshots/ (git-ignored), named issue15-*.png."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support.engine_catalog import risky, runbook, step
from tests.support.web import screenshot, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

FOLD = {"width": 1280, "height": 800}
NOTE = "Moves the champion alias back to the last good version: live traffic changes model."


def long_safe(sid: str) -> dict[str, Any]:
    """A safe step with a long output: three of them pushed the buttons 2,450 px down."""
    rows = {f"feature_{i:02d}": {"psi": round(0.01 * i, 2), "ok": i % 3 != 0} for i in range(30)}
    return step(sid, description="Reads the drift report.", **{"with": {"output": rows}})


def fraud() -> dict[str, Any]:
    return runbook("fraud-drift", [
        long_safe("check-drift"), long_safe("check-data"), long_safe("check-serving"),
        risky("rollback-alias", title="Roll the fraud model alias back", description=NOTE,
              approval_timeout="1h"),
    ], title="Fraud model drift", objectives={"time_to_diagnose": "5m",
                                              "time_to_restore": "15m"},
        triage=[
            {"question": "Did the input distribution drift?", "check": "check-drift",
             "points_to": "data", "then": "find the upstream change"},
            {"question": "Is serving healthy?", "check": "check-serving",
             "points_to": "compute"},
            {"question": "Did the model itself regress?", "check": "rollback-alias",
             "points_to": "model", "then": "roll the alias back"},
        ], escalation=[{"after": "10m", "notify": ["slack:#ml-oncall"]}],
        limits={"concurrent": 5})


def broken() -> dict[str, Any]:
    return runbook("feature-backfill", [step("backfill", "fail")],
                   objectives={"time_to_diagnose": "5m", "time_to_restore": "30m"})


async def signed_in(chromium: Any, r: Any, token: str, viewport: dict[str, int]) -> Any:
    return await signed_in_page(chromium, r.server.url, token, viewport=viewport)


async def shot(page: Any, name: str, *, full: bool = False) -> Path:
    return await screenshot(page, f"issue15-{name}", full=full, min_bytes=10_000)


def ago(minutes: float) -> str:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=minutes)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_the_approval_card_is_above_the_fold(make_rig, chromium, tokens):
    from playwright.async_api import expect

    async with make_rig([fraud()]) as r:
        ex = await r.awaiting("fraud-drift")
        page = await signed_in(chromium, r, tokens["alice"], FOLD)
        await page.goto(f"{r.server.url}/executions/{ex.id}")
        card = page.locator(".approval-card")
        await expect(card).to_contain_text("Roll the fraud model alias back")
        await expect(card).to_contain_text(NOTE)
        await expect(card).to_contain_text("escalates to slack:#ml-oncall")
        await expect(card).to_contain_text("Nobody has approved yet")
        approve = card.get_by_role("button", name="Approve")
        reject = card.get_by_role("button", name="Reject")
        for button in (approve, reject):
            box = await button.bounding_box()
            assert box is not None and box["y"] + box["height"] <= FOLD["height"], box
        assert await page.evaluate("window.scrollY") == 0
        # The finished safe steps are all below the card.
        steps_top = (await page.locator("#h-steps").bounding_box())["y"]
        assert steps_top > (await approve.bounding_box())["y"]
        await shot(page, "approval-card-1280x800")

        await card.get_by_label("Comment (optional)").fill("drift confirmed")
        await approve.click()
        banner = page.locator("#decision-banner")
        await expect(banner).to_contain_text("You approved “Roll the fraud model alias back”")
        await expect(page.locator("h1 .status")).to_have_text("succeeded", timeout=20_000)
        await expect(page.locator(".timeline")).to_contain_text(
            re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+step rollback-alias:\s+approved → "
                       r"running\s+\(worker "))
        await shot(page, "decision-banner")
        await page.context.close()


async def test_needs_you_leads_the_list(make_rig, chromium, tokens):
    from playwright.async_api import expect

    async with make_rig([fraud(), broken()]) as r:
        waiting = await r.awaiting("fraud-drift")
        await r.fire("feature-backfill")
        await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "failed")
        page = await signed_in(chromium, r, tokens["alice"], FOLD)
        needs = page.locator("#needs-you")
        await expect(needs.get_by_role("heading")).to_contain_text("Needs you")
        await expect(needs.locator(".needs-item")).to_have_count(1)
        await expect(needs.locator(".needs-item")).to_contain_text(
            "Roll the fraud model alias back")
        box = await needs.bounding_box()
        assert box["y"] + box["height"] < FOLD["height"]
        await expect(page.locator("td[data-label=Reason]").first).to_be_visible()
        await shot(page, "needs-you")
        await needs.get_by_role("link", name=re.compile(f"#{waiting.id}")).click()
        await expect(page.locator(".approval-card")).to_be_visible()
        await page.context.close()

        viewer = await signed_in(chromium, r, tokens["victor"], FOLD)
        await expect(viewer.locator("#needs-you")).to_contain_text("Nothing waits on you")
        await viewer.context.close()


async def test_the_stats_charts(make_rig, chromium, tokens):
    from playwright.async_api import expect

    async with make_rig([fraud(), broken()]) as r:
        # Alerts that fired 4 to 40 minutes ago: restores on both sides of the 15m objective.
        for i, minutes in enumerate((4, 9, 22, 40)):
            await r.fire("fraud-drift", model=f"fraud-{i}", starts_at=ago(minutes))
            rows = await r.wait_for(lambda rows, n=i + 1: len(rows) == n
                                    and rows[-1].status == "awaiting_approval")
            assert (await r.approve(rows[-1].id, "rollback-alias", "alice")).status_code == 200
            await r.wait_status(rows[-1].id, "succeeded")
        for i in range(3):
            await r.fire("feature-backfill", model=f"table-{i}", starts_at=ago(5))
        await r.wait_for(lambda rows: len(rows) == 7 and rows[-1].status in ("failed",))
        page = await signed_in(chromium, r, tokens["victor"], {"width": 1280, "height": 900})
        await page.goto(f"{r.server.url}/stats")
        charts = page.locator("svg.chart")
        await expect(charts).to_have_count(5)
        restore = page.locator("#chart-restore svg")
        await expect(restore.locator("rect.p90")).to_have_count(1)
        await expect(restore.locator("line.objective")).to_have_count(1)
        p90 = await restore.locator("rect.p90").bounding_box()
        line = await restore.locator("line.objective").bounding_box()
        assert p90["x"] + p90["width"] > line["x"], "the p90 of 40m overshoots the 15m line"
        await expect(page.locator("#chart-outcomes svg rect.seg")).not_to_have_count(0)
        await expect(page.locator("#chart-failing")).to_contain_text("feature-backfill")
        await expect(page.locator(".figures")).to_contain_text(re.compile(r"\d+m( \d+s)?"))
        await shot(page, "stats", full=True)

        await page.get_by_label("Runbook", exact=True).select_option("feature-backfill")
        await page.get_by_role("button", name="Show").click()
        await expect(page).to_have_url(re.compile(r"runbook=feature-backfill"))
        await expect(page.locator("#chart-restore")).to_contain_text("No execution")
        await page.context.close()


async def test_the_triage_tree(make_rig, chromium, tokens):
    from playwright.async_api import expect

    async with make_rig([fraud()]) as r:
        ex = await r.awaiting("fraud-drift")
        page = await signed_in(chromium, r, tokens["victor"], {"width": 1280, "height": 900})
        await page.goto(f"{r.server.url}/runbooks/fraud-drift")
        nodes = page.locator(".triage-tree .tree-node")
        await expect(nodes).to_have_count(3)
        first = nodes.nth(0)
        await expect(first).to_contain_text("Did the input distribution drift?")
        await expect(first.locator(".points")).to_have_text("data")
        await expect(first).to_contain_text("then: find the upstream change")
        await expect(first.locator(".last-result .status")).to_have_text("succeeded")
        await expect(first.get_by_role("link", name=f"#{ex.id}")).to_be_visible()
        await expect(nodes.nth(2).locator(".points")).to_have_text("model")
        await expect(nodes.nth(2)).to_contain_text("no finished run yet")
        await first.locator(".check a").first.click()
        await expect(page).to_have_url(re.compile("#step-check-drift$"))
        await page.locator("#h-triage").scroll_into_view_if_needed()
        await shot(page, "triage-tree")
        await page.context.close()
