"""Web sessions are rows on the server: signing out, or losing one's token, ends a session
everywhere (pages and the API), even for someone who kept a copy of the cookie."""

from __future__ import annotations

import datetime as dt
import hashlib

import httpx
import yaml
from sqlalchemy import update

from app.db import make_engine, make_session_factory
from app.events import Event
from app.identity import create_token
from app.identity.models import SignInSession
from tests.support.db import all_rows
from tests.support.web import browser, csrf_of, sign_in

COOKIE = "runbookd_session"
SIGN_IN_TITLE = "<title>Sign in · runbookd</title>"


async def stolen_copy(url: str, cookie: str) -> httpx.AsyncClient:
    """A second client holding only a copy of the session cookie (no CSRF, no logout)."""
    copy = httpx.AsyncClient(base_url=url, timeout=30)
    copy.cookies.set(COOKIE, cookie)
    return copy


async def assert_signed_in(client: httpx.AsyncClient) -> None:
    assert (await client.get("/runbooks")).status_code == 200
    assert (await client.get("/api/v1/executions")).status_code == 200


async def assert_signed_out(client: httpx.AsyncClient) -> None:
    page = await client.get("/runbooks")
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")
    assert SIGN_IN_TITLE in (await client.get("/")).text
    api = await client.get("/api/v1/executions")
    assert api.status_code == 401, api.text


async def set_rows(db_url: str, **values: object) -> None:
    engine = make_engine(db_url)
    try:
        async with make_session_factory(engine)() as session, session.begin():
            await session.execute(update(SignInSession).values(**values))
    finally:
        await engine.dispose()


async def test_logout_revokes_the_session_for_pages_and_api(make_rig, tokens, db_url):
    async with make_rig() as r, browser(r.server.url) as web:
        await sign_in(web, tokens["alice"])
        cookie = web.cookies.get(COOKIE)
        copy = await stolen_copy(r.server.url, cookie)
        async with copy:
            await assert_signed_in(copy)
            home = await web.get("/")
            out = await web.post("/logout", data={"csrf_token": csrf_of(home.text)})
            assert out.status_code == 303
            await assert_signed_out(copy)
        [row] = await all_rows(db_url, SignInSession)
        assert row.identity == "alice" and row.revoked_at is not None
        kinds = [(e.kind, e.actor) for e in await all_rows(db_url, Event)
                 if e.entity == "session"]
        assert kinds == [("web.signin", "alice"), ("web.signout", "alice")]


async def test_sign_in_stores_a_row_whose_id_is_not_in_the_cookie(make_rig, tokens, db_url):
    async with make_rig() as r, browser(r.server.url) as web:
        await sign_in(web, tokens["bob"])
        cookie = web.cookies.get(COOKIE)
        [row] = await all_rows(db_url, SignInSession)
        assert row.identity == "bob" and row.revoked_at is None
        assert row.token_digest == hashlib.sha256(tokens["bob"].encode()).hexdigest()
        assert row.id not in cookie and row.token_digest not in cookie
        assert dt.timedelta(hours=11) < row.expires_at - row.created_at <= dt.timedelta(hours=12)


async def test_removed_identity_ends_its_session_for_pages_and_api(make_rig, tokens,
                                                                   tokens_file):
    async with make_rig() as r, browser(r.server.url) as web:
        await sign_in(web, tokens["bob"])
        await assert_signed_in(web)
        entries = [e for e in yaml.safe_load(tokens_file.read_text()) if e["name"] != "bob"]
        tokens_file.write_text(yaml.safe_dump(entries))
        await assert_signed_out(web)


async def test_rotated_token_ends_its_session_for_pages_and_api(make_rig, tokens, tokens_file):
    async with make_rig() as r, browser(r.server.url) as web:
        await sign_in(web, tokens["carol"])
        await assert_signed_in(web)
        entries = [e for e in yaml.safe_load(tokens_file.read_text()) if e["name"] != "carol"]
        tokens_file.write_text(yaml.safe_dump(entries))
        new = create_token(tokens_file, "carol", ["approver"])  # the same name, a new token
        await assert_signed_out(web)
        await sign_in(web, new)
        await assert_signed_in(web)


async def test_a_session_revoked_by_another_replica_ends_at_once(make_rig, tokens, db_url):
    """Revocation is read from the shared database on every request, not from memory."""
    async with make_rig() as r, browser(r.server.url) as web:
        await sign_in(web, tokens["alice"])
        await assert_signed_in(web)
        await set_rows(db_url, revoked_at=dt.datetime.now(dt.UTC))
        await assert_signed_out(web)


async def test_an_expired_session_row_ends_the_session(make_rig, tokens, db_url):
    async with make_rig() as r, browser(r.server.url) as web:
        await sign_in(web, tokens["alice"])
        await set_rows(db_url, expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        await assert_signed_out(web)


async def test_a_cookie_without_its_row_is_refused(make_rig, tokens, db_url):
    """A validly signed cookie whose row is gone (or never existed) opens nothing."""
    async with make_rig() as r, browser(r.server.url) as web:
        await sign_in(web, tokens["alice"])
        engine = make_engine(db_url)
        try:
            async with make_session_factory(engine)() as session, session.begin():
                await session.execute(SignInSession.__table__.delete())
        finally:
            await engine.dispose()
        await assert_signed_out(web)
