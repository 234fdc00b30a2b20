"""Helpers for the web tests: a runbookd with the web pages mounted, and a browser-like
httpx client that signs in through the form and reads CSRF tokens from pages."""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.web.routes import install
from tests.support.engine_catalog import write_catalog
from tests.support.engine_helpers import Rig
from tests.support.net import serve_app

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def web_app(settings: Settings) -> FastAPI:
    """create_app plus the web routes, unless create_app mounts them already."""
    app = create_app(settings)
    if not any(getattr(r, "path", None) == "/approve/{token}" for r in app.routes):
        install(app)
    return app


@contextlib.asynccontextmanager
async def web_rig(tmp_path: Path, make_settings: Callable[..., Settings], tokens: dict[str, str],
                  db_url: str, runbooks: list[dict[str, Any]], **overrides: Any,
                  ) -> AsyncIterator[Rig]:
    """Like engine_helpers.rig, with the pages, the Slack endpoint and the links API."""
    mappings, remediations = write_catalog(tmp_path / "catalog", runbooks)
    settings = make_settings(mappings=mappings, remediations_dir=remediations, **overrides)
    async with serve_app(web_app(settings)) as server, httpx.AsyncClient(
            base_url=server.url, timeout=30) as http:
        yield Rig(server=server, http=http, tokens=tokens, db_url=db_url)


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
