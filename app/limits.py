"""Limits every request meets before the application reads its body, and uvicorn's options.

- A body limit: a Content-Length over RUNBOOKD_API_MAX_BODY_BYTES is a 413 at once, and a
  streamed body is counted and cut at the limit.
- Authentication first: an /api/ (or /-/) request with a body needs a credential that resolves
  (a bearer token, or a session with its CSRF header), and a form needs a signed-in session,
  before a byte of the body is read; otherwise 401. The sign-in form and Slack's
  interactivity carry their credential in the body, so they are bounded but not refused.
- A deadline: a body not received within RUNBOOKD_BODY_READ_TIMEOUT_SECONDS is a 408.
Every refusal closes the connection, so the rest of the body is never read.

The webhooks pass straight through: they authenticate before reading and bound their own
bodies (RUNBOOKD_MAX_BODY_BYTES, app/intake/receiver.py), and they are the hot path
(benchmarks/RESULTS.md), so not even a frame of this middleware stays on their call chain.
Pure ASGI, not BaseHTTPMiddleware, for the same reason.

The limits on connections are uvicorn's: `Settings.server_options()`, which `runbookd serve`
passes to it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.config import Settings
from app.errors import (
    BadRequest,
    PayloadTooLarge,
    RequestTimeout,
    RunbookdError,
    Unauthenticated,
    error_body,
    no_identity,
)

log = logging.getLogger(__name__)

# Whether the request carries a credential that resolves. The app gives these (app/main.py):
# identities and sessions live above this module.
CredentialCheck = Callable[[Request], Awaitable[bool]]
# The HTML page of a refusal, for requests from the pages.
ErrorPage = Callable[[Request, RunbookdError], Response]

WEBHOOKS = "/webhooks/"
# What answers in JSON (the rest are pages, whose errors are pages too).
JSON_PREFIXES = ("/api/", "/-/", "/slack/")
# Requests whose credential is in the body: the sign-in form (the token) and Slack (a
# signature over the body). They are bounded in size and time, and authenticated after.
CREDENTIAL_IN_BODY = frozenset({"/login", "/slack/interactions"})


class RequestLimits:
    """ASGI middleware: body limit, authentication before the body, body deadline."""

    def __init__(self, app: ASGIApp, *, settings: Settings, api_credential: CredentialCheck,
                 form_credential: CredentialCheck, error_page: ErrorPage) -> None:
        self.app = app
        self.limit = settings.api_max_body_bytes
        self.timeout = settings.body_read_timeout_seconds
        self.api_credential = api_credential
        self.form_credential = form_credential
        self.error_page = error_page

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not async: whatever passes through gets the app's own coroutine back, so this
        # middleware adds no frame to the request's chain.
        if scope["type"] != "http" or scope["path"].startswith(WEBHOOKS):
            return self.app(scope, receive, send)
        length: int | None = None
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                chunked = True
        if not chunked and not length:
            return self.app(scope, receive, send)  # no body to read
        return self._guarded(scope, receive, send, length)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send,
                       length: int | None) -> None:
        deadline = asyncio.get_running_loop().time() + self.timeout
        request = Request(scope)
        path = scope["path"]
        api = path.startswith(JSON_PREFIXES)
        try:
            if length is not None and length < 0:
                raise BadRequest("Content-Length is not a number")
            if length is not None and length > self.limit:
                raise PayloadTooLarge(self._too_large())
            if path not in CREDENTIAL_IN_BODY:
                await self._authenticate(request, api=api)
            body = await self._read(receive, deadline)
        except RunbookdError as exc:
            await self._refuse(request, exc, api=api, send=send)
            return
        if body is None:
            return  # the client went away; there is no one to answer
        await self.app(scope, _replay(body, receive), send)

    async def _authenticate(self, request: Request, *, api: bool) -> None:
        if api:
            if not await self.api_credential(request):
                sent = request.headers.get("authorization", "").lower().startswith("bearer ")
                raise no_identity(token_sent=sent)
        elif not await self.form_credential(request):
            raise Unauthenticated("sign in to continue: this form needs a signed-in session")

    async def _read(self, receive: Receive, deadline: float) -> bytes | None:
        """The whole body, or None if the client disconnected; 413 past the limit, 408 past
        the deadline."""
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.limit:
                        raise PayloadTooLarge(self._too_large())
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            log.info("request body too slow: %d bytes in %.0f s", size, self.timeout)
            raise RequestTimeout(
                f"the body did not arrive within {self.timeout:g} s "
                "(RUNBOOKD_BODY_READ_TIMEOUT_SECONDS): send it at once") from None

    async def _refuse(self, request: Request, exc: RunbookdError, *, api: bool,
                      send: Send) -> None:
        response: Response
        if api:
            response = JSONResponse(error_body(exc), status_code=exc.status_code,
                                    headers=exc.headers)
        else:
            response = self.error_page(request, exc)
        # The rest of the body is never read: the connection ends with this answer.
        response.headers["Connection"] = "close"
        await response(request.scope, _no_body, send)

    def _too_large(self) -> str:
        return (f"body is over the limit of {self.limit} bytes "
                "(RUNBOOKD_API_MAX_BODY_BYTES)")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the app the body read here, then the connection's messages."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _no_body() -> Message:
    return {"type": "http.disconnect"}
