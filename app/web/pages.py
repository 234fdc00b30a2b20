"""Rendering for the web pages: the Jinja2 environment (autoescaped), security headers, the
route class that turns the error tree into HTML pages instead of JSON, and small helpers
shared by the page routes."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import ApprovalSpec, Runbook
from app.db import session_scope
from app.durations import format_duration
from app.engine import approvals
from app.errors import (
    Forbidden,
    Invalid,
    NotFound,
    RunbookdError,
    Unauthenticated,
    describe_validation_errors,
    error_view,
)
from app.history.schemas import StepOut
from app.identity import ROLES, Identity, Role
from app.web.charts import readable
from app.web.session import current_identity, finish_csrf, form_token

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

# Pages load only their own CSS and JS; nothing may frame them or submit them elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Approval pages carry their token in the URL: never send it to another site. Not
    # no-referrer: with it, Chromium sends `Origin: null` on our own forms.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def when(value: dt.datetime | None) -> str:
    """A timestamp as people read it at 3 a.m.: UTC, to the second."""
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(ms: int | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms} ms"
    seconds = ms / 1000
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def seconds(value: dt.timedelta | None) -> str:
    return format_duration(value) if value is not None else "—"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, duration=duration, pretty=pretty, seconds=seconds,
                       readable=readable)
    return env


templates = Jinja2Templates(env=_environment())


def static_files() -> StaticFiles:
    """The app's CSS and JS, to mount at /static."""
    return StaticFiles(directory=STATIC_DIR)


def render(request: Request, name: str, context: dict[str, Any], *,
           status: int = 200) -> Response:
    """Render a page with the signed-in identity and a CSRF token for its forms."""
    full = {"me": current_identity(request), "csrf": form_token(request), **context}
    response = templates.TemplateResponse(request, name, full, status_code=status,
                                          headers=SECURITY_HEADERS)
    finish_csrf(request, response)
    return response


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def error_page(request: Request, exc: RunbookdError) -> Response:
    """A clear page with the error's status; a GET without sign-in goes to the sign-in."""
    if isinstance(exc, Unauthenticated) and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return redirect(f"/login?next={quote(target, safe='')}")
    return render(request, "error.html", error_view(exc), status=exc.status_code)


class HtmlRoute(APIRoute):
    """An APIRoute whose errors become HTML pages (the JSON mapping is for the API)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def html_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RunbookdError as exc:
                return error_page(request, exc)
            except RequestValidationError as exc:
                details = describe_validation_errors(list(exc.errors()))
                fields = ", ".join(d["field"] for d in details)
                return error_page(request, Invalid(f"check {fields}", details=details))

        return html_handler



# -- helpers shared by the page routes -------------------------------------------------------

def require_identity(request: Request, role: Role = "viewer") -> Identity:
    """The signed-in identity with `role`, else 401 (sign in) or 403."""
    me = current_identity(request)
    if me is None:
        raise Unauthenticated("sign in to continue")
    if not me.has_role(role):
        raise Forbidden(f"{me.name} lacks the {role} role needed here")
    return me


def client_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


def transaction(request: Request) -> Any:
    """A form POST's own transaction: an error rolls it back before the error page renders."""
    return session_scope(request.app.state.session_factory)


def role_list(identity: Identity) -> str:
    return ", ".join(r for r in ROLES if r in identity.roles)


def standing_approvers(step: StepOut) -> list[str]:
    """Who approved the step's current hash (voided and stale approvals do not count)."""
    return sorted({a.identity for a in step.approvals if a.decision == "approve"
                   and a.voided_at is None and a.step_hash == step.step_hash})


def decision_blocker(me: Identity | None, started_by: str | None, spec: ApprovalSpec) -> str:
    """Why `me` may not decide on a step with this spec, as the page says it ("" when it may).

    The rule is the engine's (`approvals.decision_blocker`); `decide()` enforces it on every
    POST, and this only shows or hides buttons.
    """
    if me is None:
        return "sign in to decide"
    blocker = approvals.decision_blocker(me, started_by=started_by, spec=spec)
    if blocker == "not_eligible":
        return f"needs one of: {', '.join(spec.roles + spec.identities)}"
    if blocker == "initiator":
        return "you started this execution, so someone else must approve (separation of duties)"
    return ""


async def runbook_or_none(request: Request, session: AsyncSession, runbook_id: str,
                          version: str) -> Runbook | None:
    """The exact runbook version an execution ran, or None if it was never stored."""
    try:
        return await request.app.state.engine.runbooks.get(session, runbook_id, version)
    except NotFound:
        return None
