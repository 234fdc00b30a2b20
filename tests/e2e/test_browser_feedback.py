"""Responder feedback in a real browser (issue 16; Playwright on Debian's chromium, SQLite):
an approver of an ended execution answers the page's "Did this runbook help?" with a note,
sees her answer, and the runbook page shows the note. Screenshots under
test-artifacts/screenshots/ (git-ignored): issue16-feedback-form.png, issue16-feedback-notes.png."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from app.engine.feedback_models import Feedback
from tests.support.engine_catalog import risky, runbook, step
from tests.support.web import screenshot, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]

BOOK = runbook("fraud-drift", [step("check-drift"),
                               risky("rollback-alias", title="Roll the fraud model alias back")],
               title="Fraud model drift")
NOTE = "The rollback was right; the drift check could name the feature."


async def shot(target: Any, name: str) -> Path:
    return await screenshot(target, f"issue16-{name}")


async def test_an_approver_answers_on_the_execution_page_and_the_runbook_shows_it(
        make_rig, chromium):
    async with make_rig([BOOK]) as r:
        ex = await r.awaiting("fraud-drift")
        assert (await r.approve(ex.id, "rollback-alias", "alice")).status_code == 200
        await r.wait_status(ex.id, "succeeded")

        page = await signed_in_page(chromium, r.server.url, r.tokens["alice"],
                                    next_path=f"/executions/{ex.id}")
        context = page.context

        section = page.locator("#feedback")
        await section.scroll_into_view_if_needed()
        await section.get_by_label(re.compile("Note")).fill(NOTE)
        await shot(section, "feedback-form-filled")
        await section.get_by_role("button", name="Partly").click()
        await page.wait_for_url(re.compile(rf"/executions/{ex.id}#feedback$"))
        section = page.locator("#feedback")
        await section.get_by_text("You said “partly”").wait_for()
        assert NOTE in await section.inner_text()
        await shot(section, "feedback-form")

        await page.goto(f"{r.server.url}/runbooks/fraud-drift")
        notes = page.locator("ul.feedback-notes")
        await notes.scroll_into_view_if_needed()
        assert NOTE in await notes.inner_text()
        await shot(page, "feedback-notes")
        await context.close()
        [row] = await r.rows(Feedback)
    assert (row.identity, row.verdict, row.note, row.channel) == ("alice", "partly", NOTE,
                                                                  "web")
