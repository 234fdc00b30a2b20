"""Change sign-off in a real browser (issue 16): the runbook page of a version whose risky
step changed says "unsigned change", shows the diff against the last signed-off version and
a Sign-off button; the loader is told why they cannot sign; a reviewer signs it off there,
and the next execution runs for real. Screenshots under
test-artifacts/screenshots/issue16-signoff-*.png."""

from __future__ import annotations

import re
from typing import Any

import pytest

from app.catalog.signoff_models import RunbookSignoff
from tests.support.engine_catalog import risky, runbook, step, write_catalog
from tests.support.web import screenshot, signed_in_page

pytestmark = [pytest.mark.e2e, pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)]
COMMENT = "champion goes to the retrained model; checked the plan"


def promo(message: str) -> dict[str, Any]:
    return runbook("promo", [step("check"), risky("promote", **{"with": {"message": message}})],
                   reviewers=["bob"])


async def signed_in(chromium: Any, r: Any, who: str) -> tuple[Any, Any]:
    page = await signed_in_page(chromium, r.server.url, r.tokens[who],
                                next_path="/runbooks/promo")
    return page.context, page


async def test_a_reviewer_signs_off_an_unsigned_change_on_the_runbook_page(make_rig, chromium,
                                                                           tmp_path):
    from playwright.async_api import expect

    async with make_rig([promo("to version 1")]) as r:
        write_catalog(tmp_path / "catalog", [promo("to version 2")])
        assert (await r.post("/-/reload", "root")).status_code == 200

        # The loader sees the change and why they cannot sign it.
        context, page = await signed_in(chromium, r, "root")
        block = page.locator("#signoff")
        await expect(page.get_by_role("link", name=re.compile("Unsigned change"))).to_be_visible()
        await expect(block).to_contain_text("unsigned change")
        await expect(block).to_contain_text("You cannot sign this off")
        await expect(block).to_contain_text("loaded version")
        await expect(block.get_by_role("button", name=re.compile("Sign off"))).to_have_count(0)
        await context.close()

        context, page = await signed_in(chromium, r, "bob")
        block = page.locator("#signoff")
        await expect(block).to_contain_text("step promote: with changed")
        diff = block.locator(".diff-body")
        await expect(diff.locator(".d-del")).to_contain_text("to version 1")
        await expect(diff.locator(".d-add")).to_contain_text("to version 2")
        button = block.get_by_role("button", name=re.compile("Sign off version"))
        await block.get_by_label("What you reviewed").fill(COMMENT)
        await block.scroll_into_view_if_needed()
        await screenshot(page, "issue16-signoff-unsigned", full=True)
        await button.click()
        await page.wait_for_url(re.compile(r"/runbooks/promo#signoff$"))
        block = page.locator("#signoff")
        await expect(block).not_to_contain_text("unsigned change")
        await expect(block.locator("tbody tr").first).to_contain_text("bob")
        await expect(block.locator("tbody tr").first).to_contain_text(COMMENT)
        await expect(page.get_by_role("link", name=re.compile("Unsigned change"))).to_have_count(0)
        await block.scroll_into_view_if_needed()
        await screenshot(page, "issue16-signoff-signed", full=True)
        await context.close()

        [review] = await r.rows(RunbookSignoff, RunbookSignoff.kind == "review")
        assert (review.reviewer, review.comment) == ("bob", COMMENT)
        await r.fire("promo", model="m1")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        assert not ex.dry_run
