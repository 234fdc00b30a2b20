"""Helpers for the web tests: a browser-like httpx client that signs in through the form and
reads CSRF tokens from pages. The runbookd they talk to is the `make_rig` fixture's."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from tests.support.binaries import need_binary, need_module

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: str) -> str:
    found = CSRF.search(page)
    assert found, "no CSRF token in the page"
    return html.unescape(found.group(1))


@contextlib.asynccontextmanager
async def browser(base_url: str, *, user_agent: str = "Mozilla/5.0 (test)",
                  ) -> AsyncIterator[httpx.AsyncClient]:
    """A cookie-keeping client that does not follow redirects (tests look at them)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30,
                                 headers={"User-Agent": user_agent}) as client:
        yield client


async def sign_in(client: httpx.AsyncClient, token: str, next_path: str = "/") -> httpx.Response:
    page = await client.get(f"/login?next={next_path}")
    answer = await client.post("/login", data={"token": token, "next": next_path,
                                               "csrf_token": csrf_of(page.text)})
    assert answer.status_code == 303, answer.text
    return answer


# Debian's chromium, headless, without the services a test machine cannot reach.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextlib.asynccontextmanager
async def launched_chromium() -> AsyncIterator[Any]:
    """A Playwright browser on /usr/bin/chromium (skips, or fails under
    RUNBOOKD_REQUIRE_E2E, when chromium or Playwright is missing)."""
    need_binary("chromium")
    need_module("playwright")
    # Imported here so that collecting the suite does not need Playwright.
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                          args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


# Browser tests save what they saw here (git-ignored), for a reviewer to look at.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


async def screenshot(target: Any, name: str, *, full: bool = False,
                     min_bytes: int = 5_000) -> Path:
    """Save a page's (or an element's) screenshot as `name`.png; an almost empty file means
    the page drew nothing, which fails the test."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    options = {"full_page": True} if full else {}
    await target.screenshot(path=str(path), **options)
    assert path.stat().st_size > min_bytes, f"{path} looks empty"
    return path


async def signed_in_page(browser: Any, base_url: str, token: str, *, next_path: str = "/",
                         viewport: dict[str, int] | None = None) -> Any:
    """A Playwright page of a new context, signed in through the login form with `token`,
    on `next_path` (where the form sends it)."""
    context = await browser.new_context(viewport=viewport or {"width": 1280, "height": 900})
    page = await context.new_page()
    await page.goto(f"{base_url}/login?next={next_path}")
    await page.get_by_label("API token").fill(token)
    await page.get_by_role("button", name=re.compile("Sign in")).click()
    await page.wait_for_url(f"{base_url}{next_path}")
    return page
