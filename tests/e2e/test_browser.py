"""The responder's pages in a real browser: Playwright drives Debian's chromium against a real
runbookd on 127.0.0.1. Screenshots of the main pages, at phone and desktop widths, go to
test-artifacts/screenshots/ (git-ignored)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.support.engine_catalog import risky, runbook, step
from tests.support.web import screenshot

pytestmark = pytest.mark.e2e

WIDTHS = (390, 1280)
BOT = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"


def book() -> dict[str, Any]:
    return runbook("fraud-drift", [
        step("check-drift", **{"with": {"output": {"psi": 0.31, "threshold": 0.2}},
                                "description": "Compare the live feature distribution with "
                                               "the training one."}),
        risky("rollback-alias", action="sleep", **{
            "title": "Roll the model alias back to the last good version",
            "with": {"seconds": 1.5}}),
        step("verify", **{"with": {"message": "alias points at the previous version"}}),
    ], title="Fraud model drift", summary="The fraud model's input distribution drifted "
       "beyond its threshold; predictions are no longer trustworthy.",
       dashboards={"drift": "https://grafana.example/d/fraud-drift"})


async def shoot(page: Any, name: str) -> None:
    """Full-page screenshots at phone and desktop widths."""
    for width in WIDTHS:
        await page.set_viewport_size({"width": width, "height": 844 if width < 600 else 900})
        await screenshot(page, f"{name}-{width}", full=True, min_bytes=0)
    await page.set_viewport_size({"width": 1280, "height": 900})


async def link_for(r: Any, ex_id: int) -> str:
    made = await r.post(f"/api/v1/executions/{ex_id}/steps/rollback-alias/approval-links",
                        "alice", {})
    assert made.status_code == 201, made.text
    return made.json()["url"].replace(r.server.app.state.settings.public_url, r.server.url)


async def sign_in(page: Any, token: str) -> None:
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name=re.compile("Sign in")).click()


async def test_approve_through_a_link_and_watch_it_run(make_rig, chromium, tokens):
    from playwright.async_api import expect

    async with make_rig([book()]) as r:
        ex = await r.awaiting("fraud-drift")
        url = await link_for(r, ex.id)
        context = await chromium.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()

        await page.goto(f"{r.server.url}/")
        await expect(page).to_have_title("Sign in · runbookd")
        await shoot(page, "sign-in")

        response = await page.goto(url)
        assert response.status == 200
        await expect(page.get_by_role("heading", level=1)).to_contain_text(
            "Roll the model alias back")
        await expect(page.get_by_text("Opening this page changes nothing")).to_be_visible()
        await expect(page.locator("pre").first).to_contain_text('"seconds": 1.5')
        await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
        await sign_in(page, tokens["bob"])
        await expect(page).to_have_url(url)
        await expect(page.get_by_text("You are deciding as")).to_contain_text("bob")
        await shoot(page, "approval-confirmation")

        await page.get_by_label("Comment (optional)").fill("drift confirmed on the dashboard")
        # Reach the Approve button with the keyboard, as a responder without a mouse would.
        for _ in range(40):
            await page.keyboard.press("Tab")
            if await page.evaluate("document.activeElement.value") == "approve":
                break
        else:
            raise AssertionError("the Approve button is not reachable by keyboard")
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(re.compile(rf"/executions/{ex.id}#step-rollback-alias$"))

        step_card = page.locator("#step-rollback-alias")
        await expect(step_card.locator(".status").first).to_have_text(
            re.compile("approved|running|succeeded"))
        # The page follows the execution by itself: the step runs, then everything succeeds.
        await expect(step_card.locator(".status").first).to_have_text("succeeded",
                                                                      timeout=20_000)
        await expect(page.locator("h1 .status")).to_have_text("succeeded", timeout=20_000)
        timeline = page.locator(".timeline")
        await expect(timeline).to_contain_text("approval.approve")
        await expect(timeline).to_contain_text("by bob")
        await expect(timeline).to_contain_text("running → succeeded")
        await expect(step_card).to_contain_text("drift confirmed on the dashboard")
        await shoot(page, "execution")

        await page.goto(f"{r.server.url}/")
        await expect(page.locator(f'[data-status-for="{ex.id}"]')).to_have_text("succeeded")
        await shoot(page, "executions")
        await page.goto(f"{r.server.url}/runbooks/fraud-drift")
        await expect(page.get_by_role("heading", name="Version history")).to_be_visible()
        await shoot(page, "runbook")
        await page.goto(f"{r.server.url}/guards")
        await expect(page.get_by_role("button", name="Engage the kill switch")).to_be_visible()
        await shoot(page, "guards")
        await context.close()

        [approval] = await r.approvals()
    assert (approval.identity, approval.channel) == ("bob", "link")


async def test_viewer_sees_no_approve_button(make_rig, chromium, tokens):
    from playwright.async_api import expect

    async with make_rig([book()]) as r:
        ex = await r.awaiting("fraud-drift")
        context = await chromium.new_context(viewport={"width": 390, "height": 844})
        page = await context.new_page()
        await page.goto(f"{r.server.url}/executions/{ex.id}")
        await expect(page).to_have_title("Sign in · runbookd")
        await sign_in(page, tokens["victor"])
        await expect(page).to_have_title(f"Execution #{ex.id} · runbookd")
        await expect(page.locator("#step-rollback-alias .status").first).to_have_text(
            "awaiting approval")
        await expect(page.get_by_role("button", name="Approve")).to_have_count(0)
        await expect(page.get_by_role("button", name="Reject")).to_have_count(0)
        await expect(page.get_by_text("You cannot decide on this step")).to_be_visible()
        await page.goto(f"{r.server.url}/guards")
        await expect(page.get_by_role("button", name="Engage the kill switch")).to_have_count(0)
        await context.close()
        assert await r.approvals() == []


async def test_link_preview_bot_changes_nothing(make_rig, chromium, tokens):
    from playwright.async_api import expect

    async with make_rig([book()]) as r:
        ex = await r.awaiting("fraud-drift")
        url = await link_for(r, ex.id)
        events_before = len(await r.events())
        context = await chromium.new_context(user_agent=BOT)
        page = await context.new_page()
        for _ in range(2):
            response = await page.goto(url)
            assert response.status == 200
            await expect(page.get_by_role("heading", level=1)).to_contain_text("Approve")
        fetched = await context.request.get(url)
        assert fetched.status == 200
        await context.close()

        [execution] = await r.executions()
        [run] = [s for s in await r.steps(ex.id) if s.step_id == "rollback-alias"]
        links = await r.http.get(f"/api/v1/executions/{ex.id}/approval-links",
                                 headers={"Authorization": f"Bearer {tokens['victor']}"})
        events_after = len(await r.events())
    assert execution.status == "awaiting_approval"
    assert run.status == "awaiting_approval"
    assert [link["used_at"] for link in links.json()] == [None]
    assert await r.approvals() == []
    assert events_after == events_before
