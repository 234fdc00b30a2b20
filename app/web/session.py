"""Web sign-in by API token: a session row on the server, a signed cookie, CSRF for forms.

Signing in stores a `sign_in_sessions` row (app/identity/sessions.py); the cookie holds that
session's random id (never the token, nor its digest), a per-session CSRF secret and an
expiry, signed with HMAC. Every request with the cookie reads its row (one primary-key read,
in `SessionLoader`, before the route runs): a logout, possibly on another replica, or a token
removed from or rotated in the tokens file, ends the session at once, on the pages and the API.

CSRF: every form carries a token derived from the session's secret (or, before sign-in,
from a random pre-session cookie), and every POST checks it and the Origin header. The
cookie is SameSite=Lax rather than Strict, so that following an approval link from Slack
arrives signed in; Lax still never sends it with a cross-site POST.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.db import session_scope, utcnow
from app.errors import Forbidden, RunbookdError, SigningKeyMissing
from app.identity import Identity, hash_token
from app.identity.deps import identity_store
from app.identity.sessions import find_session, open_session, revoke_session
from app.signing import derived_key

log = logging.getLogger(__name__)

SESSION_SECONDS = 12 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class WebSession:
    identity: Identity
    key: str  # the row's key: sha256 of the cookie's session id
    digest: str
    csrf: str
    expires: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _equal(given: str, expected: str) -> bool:
    """Constant-time comparison that also accepts non-ASCII input (as bytes)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode())


def _sign(settings: Settings, body: str) -> str:
    return _b64(hmac.new(derived_key(settings, "web-session"), body.encode(),
                         hashlib.sha256).digest())


def secure_cookies(settings: Settings) -> bool:
    return settings.public_url.startswith("https://")


def cookie_name(settings: Settings, base: str = "session") -> str:
    # __Host- binds the cookie to this exact host and path (browsers require Secure for it).
    prefix = "__Host-" if secure_cookies(settings) else ""
    return f"{prefix}runbookd_{base}"


def encode_session(settings: Settings, *, session_id: str, csrf: str, expires: int) -> str:
    """The cookie value of a session."""
    body = _b64(json.dumps({"s": session_id, "c": csrf, "e": expires},
                           separators=(",", ":")).encode())
    return f"{body}.{_sign(settings, body)}"


def _decode_session(settings: Settings, value: str) -> tuple[str, str, int] | None:
    body, dot, mac = value.partition(".")
    if not dot or len(value) > 1024:
        return None
    try:
        if not _equal(mac, _sign(settings, body)):
            return None
        data = json.loads(_unb64(body))
        session_id, csrf, expires = str(data["s"]), str(data["c"]), int(data["e"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    return (session_id, csrf, expires) if expires > time.time() else None


async def load_session(request: Request) -> WebSession | None:
    """The request's standing session, checked against its row; cached on the request."""
    if hasattr(request.state, "web_session"):
        return request.state.web_session
    failed = getattr(request.state, "web_session_error", None)
    if failed is not None:
        return read_session(request)  # raises it, once
    settings = request.app.state.settings
    found: WebSession | None = None
    value = request.cookies.get(cookie_name(settings))
    if value:
        try:
            decoded = _decode_session(settings, value)
        except Exception:  # e.g. the signing key is not configured
            decoded = None
        if decoded is not None:
            session_id, csrf, expires = decoded
            async with session_scope(request.app.state.session_factory) as db:
                standing = await find_session(db, session_id, identities=identity_store(request),
                                              now=utcnow())
            if standing is not None:
                row, identity = standing
                found = WebSession(identity, row.id, row.token_digest, csrf, expires)
    request.state.web_session = found
    return found


def read_session(request: Request) -> WebSession | None:
    """The session `SessionLoader` (or `load_session`) found for this request.

    Without that check nothing is trusted: a cookie alone never signs anyone in. A database
    failure during the check is raised here, once, inside the route (so it becomes a 503
    page); after that the request counts as signed out.
    """
    if hasattr(request.state, "web_session"):
        return request.state.web_session
    request.state.web_session = None
    failed = getattr(request.state, "web_session_error", None)
    if failed is not None:
        raise failed
    return None


# Paths that never use a sign-in session: static files, and webhooks (they authenticate
# with their own credentials, on the hot path).
_NO_SESSION = ("/static/", "/webhooks/")


class SessionLoader:
    """ASGI middleware: check a request's session cookie against its row before the route.

    Pages ask for the identity synchronously (`current_identity`), so the one read happens
    here. Requests without the cookie, and /static files, cost nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not async, and no Request built, for what carries no cookie (webhooks, API tokens):
        # they get the app's own coroutine back, with no frame or parsing added.
        if (scope["type"] != "http" or scope["path"].startswith(_NO_SESSION)
                or not any(name == b"cookie" for name, _ in scope["headers"])):
            return self.app(scope, receive, send)
        return self._load(scope, receive, send)

    async def _load(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        if cookie_name(request.app.state.settings) in request.cookies:
            try:
                await load_session(request)
            except RunbookdError as exc:  # e.g. the database is unavailable
                request.state.web_session_error = exc
        await self.app(scope, receive, send)


def current_identity(request: Request) -> Identity | None:
    """Who is signed in to the web pages, if anyone."""
    session = read_session(request)
    return session.identity if session else None


async def session_identity(request: Request) -> Identity | None:
    """The hook for `app.state.session_identity`: the cookie's identity, for the API.

    A cookie rides along with any request the browser makes, so an unsafe method needs the
    session's CSRF token in the X-CSRF-Token header as well.
    """
    session = await load_session(request)
    if session is None:
        return None
    if request.method in SAFE_METHODS:
        return session.identity
    header = request.headers.get(CSRF_HEADER, "")
    expected = _csrf_for(request.app.state.settings, "session", session.csrf)
    return session.identity if header and _equal(header, expected) else None


async def sign_in(request: Request, db: AsyncSession,
                  token: str) -> tuple[Identity, str] | None:
    """Check an API token and open a session; returns its identity and cookie value, or None."""
    digest = hash_token(token.strip())
    identity = identity_store(request).by_digest(digest)
    if identity is None:
        return None
    now = utcnow()
    session_id = await open_session(db, identity=identity, token_digest=digest, now=now,
                                    lifetime=dt.timedelta(seconds=SESSION_SECONDS))
    value = encode_session(request.app.state.settings, session_id=session_id,
                           csrf=secrets.token_urlsafe(24),
                           expires=int(now.timestamp()) + SESSION_SECONDS)
    return identity, value


async def sign_out(request: Request, db: AsyncSession) -> Identity | None:
    """Revoke the request's session on the server; returns whose it was, if it stood."""
    session = read_session(request)
    if session is None:
        return None
    revoked = await revoke_session(db, session.key, now=utcnow())
    return session.identity if revoked else None


def set_session_cookie(request: Request, response: Response, value: str) -> None:
    settings = request.app.state.settings
    response.set_cookie(cookie_name(settings), value, max_age=SESSION_SECONDS, path="/",
                        secure=secure_cookies(settings), httponly=True, samesite="lax")
    # The pre-session CSRF cookie has done its job.
    response.delete_cookie(cookie_name(settings, "csrf"), path="/",
                           secure=secure_cookies(settings), httponly=True, samesite="lax")


def clear_session_cookie(request: Request, response: Response) -> None:
    settings = request.app.state.settings
    response.delete_cookie(cookie_name(settings), path="/", secure=secure_cookies(settings),
                           httponly=True, samesite="lax")


def _csrf_for(settings: Settings, kind: str, secret: str) -> str:
    return _b64(hmac.new(derived_key(settings, "csrf"), f"{kind}:{secret}".encode(),
                         hashlib.sha256).digest())


def form_token(request: Request) -> str:
    """The CSRF token to put in this request's forms (remember to `finish_csrf`)."""
    settings = request.app.state.settings
    session = read_session(request)
    try:
        if session is not None:
            return _csrf_for(settings, "session", session.csrf)
        pre = request.cookies.get(cookie_name(settings, "csrf")) or getattr(
            request.state, "new_pre_csrf", None)
        if not pre or len(pre) > 128:
            pre = request.state.new_pre_csrf = secrets.token_urlsafe(24)
        return _csrf_for(settings, "pre", pre)
    except SigningKeyMissing:
        return ""  # pages still render; their POSTs answer 503 saying what is missing


def finish_csrf(request: Request, response: Response) -> None:
    """Set the pre-session CSRF cookie when `form_token` had to create one."""
    pre = getattr(request.state, "new_pre_csrf", None)
    if pre:
        settings = request.app.state.settings
        response.set_cookie(cookie_name(settings, "csrf"), pre, path="/", httponly=True,
                            secure=secure_cookies(settings), samesite="lax")


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # older browsers and non-browser clients; the token still protects
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    public = urlsplit(request.app.state.settings.public_url).netloc
    return parts.netloc in {host, public} and parts.scheme in ("http", "https")


def verify_csrf(request: Request, submitted: str | None) -> None:
    """Reject a form POST whose CSRF token or Origin is wrong (403)."""
    settings = request.app.state.settings
    derived_key(settings, "csrf")  # without a key, say so (503) rather than "expired"
    session = read_session(request)
    pre = request.cookies.get(cookie_name(settings, "csrf"))
    expected = (_csrf_for(settings, "session", session.csrf) if session is not None
                else _csrf_for(settings, "pre", pre) if pre else None)
    if (not submitted or expected is None or not _same_origin(request)
            or not _equal(submitted, expected)):
        raise Forbidden("this form has expired or came from another site: reload the page "
                        "and try again")


def safe_next(value: Any) -> str:
    """A local path to go to after sign-in; anything else becomes `/`."""
    text = str(value or "/")
    if not text.startswith("/") or text.startswith("//") or "\\" in text or len(text) > 512:
        return "/"
    return text
