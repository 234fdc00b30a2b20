"""Put the web pages on the app; their modules load on the first request for a page.

The pages (app/web/routes.py and the modules it imports: templates, views, charts, the
history read models only they use) are about 1.3 MiB of every process's idle memory (issue 17,
target 9), and many processes serve only webhooks and the API. What start-up needs stays here:
the session middleware and the session lookup the API uses for a signed-in browser. The
pages' routes sit behind one route, `LazyPages`, that imports them when a request's path
could be a page's and then hands it to them unchanged.
"""

from __future__ import annotations

import threading

from fastapi import APIRouter, FastAPI, Request, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from app.errors import RunbookdError
from app.web.session import SessionLoader, session_identity

# The first path segment of every page route and of /static. A path outside these is never a
# page, so an API call, a probe or a stray 404 does not load the pages; a test checks this
# list against the loaded routes.
PAGE_SEGMENTS = frozenset({
    "", "approve", "executions", "favicon.ico", "guards", "login", "logout", "runbooks",
    "static", "stats", "ui",
})


class LazyPages(BaseRoute):
    """The pages' routes, imported the first time a request's path may be one of theirs."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._pages: APIRouter | None = None
        self._lock = threading.Lock()  # a TestClient or a worker thread may match at once

    @property
    def pages(self) -> APIRouter:
        """The pages' router, imported on first access."""
        if self._pages is None:
            with self._lock:
                if self._pages is None:
                    from app.web.routes import pages_router

                    self._pages = pages_router(self._app)
        return self._pages

    @property
    def loaded(self) -> bool:
        return self._pages is not None

    @property
    def routes(self) -> list[BaseRoute]:
        return self.pages.routes

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or _first_segment(scope) not in PAGE_SEGMENTS:
            return Match.NONE, {}
        best = Match.NONE
        for route in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return Match.FULL, {}
            if match == Match.PARTIAL:
                best = Match.PARTIAL
        # No child scope: handle() dispatches the untouched scope through the pages' own
        # router, which picks the same route (the full match, else the method mismatch).
        return best, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.pages.app(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: object):  # type: ignore[no-untyped-def]
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)


def _first_segment(scope: Scope) -> str:
    path: str = scope.get("path", "")
    return path.lstrip("/").split("/", 1)[0]


def install(app: FastAPI) -> None:
    """Put the pages, the approval-link pages and /static on `app`, loaded on first use."""
    app.router.routes.append(LazyPages(app))
    app.add_middleware(SessionLoader)  # checks a session cookie against its row, once
    app.state.session_identity = session_identity


def error_page(request: Request, exc: RunbookdError) -> Response:
    """The HTML error page (app/web/pages.py), for a form refused before any route runs."""
    from app.web.pages import error_page as render_error

    return render_error(request, exc)
