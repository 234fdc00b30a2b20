"""The web pages: executions, runbooks, guards and sign-in (approval links: `approve.py`).

Thin: each route looks up, calls a service (`decide`, `set_guard`, the history queries)
and renders. A form POST checks its CSRF token, runs in its own transaction (so a refused
decision rolls back before its error page renders), and redirects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import ApprovalSpec, Runbook
from app.catalog.service import list_versions
from app.db import SessionDep, after_commit, utcnow
from app.engine import links, states
from app.engine.approvals import DecisionRequest, decide
from app.engine.brakes import list_brakes, release_brake
from app.engine.executions import start_rollback
from app.engine.guards import GLOBAL, current_guard_state, runbook_key, set_guard
from app.engine.models import Execution, Guard
from app.errors import Forbidden, NotFound
from app.events import Event, record_event
from app.history.attention import needs_you, wake_times
from app.history.queries import ExecutionFilter, execution_detail, list_executions
from app.history.routes import execution_filter
from app.history.schemas import ExecutionDetail, StepOut
from app.history.timeline import describe, step_refs
from app.history.triage import last_runs
from app.identity import Identity
from app.paging import BIGINT_MAX, RowId
from app.web import views
from app.web.approve import router as approve_router
from app.web.drills import drill_view
from app.web.feedback import feedback_panel, runbook_notes
from app.web.feedback import router as feedback_router
from app.web.pages import (
    STATIC_DIR,
    HtmlRoute,
    client_addr,
    decision_blocker,
    redirect,
    render,
    require_identity,
    runbook_or_none,
    standing_approvers,
    static_files,
    transaction,
)
from app.web.session import (
    clear_session_cookie,
    current_identity,
    safe_next,
    set_session_cookie,
    sign_in,
    sign_out,
    verify_csrf,
)
from app.web.signoff_pages import router as signoff_router
from app.web.signoff_pages import signoff_column, signoff_panel
from app.web.stats import router as stats_router

router = APIRouter(route_class=HtmlRoute, include_in_schema=False)
Csrf = Annotated[str, Form()]
Text = Annotated[str, Form(max_length=2000)]
Decision = Annotated[Literal["approve", "reject"], Form()]


def pages_router(app: FastAPI) -> APIRouter:
    """The pages, the approval-link pages and /static, as one router for `app`.

    app/web/install.py puts it behind the route that loads it on the first page request; it
    takes `app`'s dependency overrides, as the app's own router would.
    """
    pages = APIRouter(dependency_overrides_provider=app)
    pages.include_router(router)
    pages.include_router(approve_router)
    pages.include_router(feedback_router)
    pages.include_router(stats_router)
    pages.include_router(signoff_router)
    pages.mount("/static", static_files(), name="static")
    return pages


@dataclass(frozen=True)
class StepView:
    """A step run as a page shows it: who approved, and whether the viewer may decide."""

    run: StepOut
    spec: ApprovalSpec | None
    approvers: list[str]
    can_decide: bool
    why_not: str
    # A finished execution's step that ran and declares a rollback: a responder may start it.
    can_roll_back: bool = False


def _step_views(detail: ExecutionDetail, runbook: Runbook | None,
                me: Identity | None) -> list[StepView]:
    views = []
    for run in detail.steps:
        spec = None
        if run.risky and runbook is not None:
            try:
                spec = runbook.step(run.step_id).approvals or ApprovalSpec()
            except KeyError:
                spec = None
        awaiting = run.status == states.STEP_AWAITING_APPROVAL and \
            detail.status == states.AWAITING_APPROVAL
        why = (decision_blocker(me, detail.started_by, spec) if spec and awaiting
               else "not awaiting")
        views.append(StepView(run, spec, standing_approvers(run), awaiting and not why, why,
                              _can_roll_back(detail, runbook, run, me)))
    return views


def _can_roll_back(detail: ExecutionDetail, runbook: Runbook | None, run: StepOut,
                   me: Identity | None) -> bool:
    if (me is None or not me.has_role("responder") or runbook is None or run.kind != "step"
            or detail.status not in states.FINAL_EXECUTION
            or run.status not in (states.STEP_SUCCEEDED, states.STEP_FAILED,
                                  states.STEP_TIMED_OUT)):
        return False
    try:
        return runbook.step(run.step_id).rollback is not None
    except KeyError:
        return False


async def _last_event(session: AsyncSession, execution_id: int) -> int:
    return (await session.execute(select(func.max(Event.id)).where(
        Event.execution_id == execution_id))).scalar_one() or 0


@router.get("/favicon.ico")
async def favicon() -> Response:
    """Browsers ask for /favicon.ico before reading the page's icon link."""
    return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})


# -- sign-in --------------------------------------------------------------------------------

@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    if current_identity(request) is not None:
        return redirect(safe_next(next))
    return render(request, "login.html", {"title": "Sign in", "next": safe_next(next)})


@router.post("/login")
async def login(request: Request, token: Annotated[str, Form(max_length=512)],
                csrf_token: Csrf = "", next: Annotated[str, Form()] = "/") -> Response:
    verify_csrf(request, csrf_token)
    async with transaction(request) as session:
        signed = await sign_in(request, session, token)
        if signed is not None:
            record_event(session, kind="web.signin", entity="session", actor=signed[0].name,
                         source_addr=client_addr(request))
    if signed is None:
        return render(request, "login.html", {
            "title": "Sign in", "next": safe_next(next),
            "error": "That token is not valid. Use an API token from your runbookd admin."},
            status=401)
    _, cookie = signed
    response = redirect(safe_next(next))
    set_session_cookie(request, response, cookie)
    return response


@router.post("/logout")
async def logout(request: Request, csrf_token: Csrf = "") -> Response:
    verify_csrf(request, csrf_token)
    async with transaction(request) as session:
        # Revoked on the server: a copy of the cookie opens nothing after this.
        identity = await sign_out(request, session)
        if identity is not None:
            record_event(session, kind="web.signout", entity="session", actor=identity.name,
                         source_addr=client_addr(request))
    response = redirect("/")
    clear_session_cookie(request, response)
    return response


# -- executions -----------------------------------------------------------------------------

@router.get("/")
async def index(request: Request, session: SessionDep,
                flt: Annotated[ExecutionFilter, Depends(execution_filter)],
                cursor: str | None = None) -> Response:
    """The executions list, or the sign-in page."""
    if current_identity(request) is None:
        return render(request, "login.html", {"title": "Sign in", "next": "/"})
    me = require_identity(request)
    page = await list_executions(session, flt, cursor=cursor, limit=50)
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor" and v]
    more = f"/?{urlencode([*kept, ('cursor', page.next_cursor)])}" if page.next_cursor else None
    waking = await wake_times(session, [e.id for e in page.items
                                        if e.status == states.RATE_LIMITED])
    now = utcnow()
    mine = await needs_you(session, me, runbook_of=request.app.state.engine.runbooks.get)
    return render(request, "executions.html", {
        "title": "Executions", "nav": "executions", "page": page, "flt": flt, "more": more,
        "statuses": states.EXECUTION_STATES, "filtered": bool(kept),
        "runbooks": sorted(request.app.state.catalog.catalog.runbooks),
        "needs_you": mine,
        "reasons": {e.id: views.reason(e, waking.get(e.id), now) for e in page.items}})


@router.get("/executions/{execution_id}")
async def execution_page(execution_id: RowId, request: Request, session: SessionDep,
                         decided: Annotated[str | None, Query(max_length=80)] = None,
                         ) -> Response:
    """One execution: the approval card of a waiting step first, then alerts, steps with
    params and output, approvals and the timeline. `decided` (a step ref) shows the banner
    of the viewer's decision on it, read back from the record."""
    me = require_identity(request)
    detail = await execution_detail(session, execution_id)
    runbook = await runbook_or_none(request, session, detail.runbook_id, detail.runbook_version)
    spent = me.has_role("approver")
    steps = _step_views(detail, runbook, me)
    refs = step_refs(detail.steps)
    return render(request, "execution.html", {
        "title": f"Execution #{execution_id}", "nav": "executions", "ex": detail,
        "runbook": runbook, "steps": steps,
        "cards": views.approval_cards(detail, steps, runbook, utcnow()),
        "banner": views.decision_banner(detail, decided, me.name),
        "timeline": [describe(e, refs) for e in detail.timeline],
        "links": await links.links_of(session, execution_id) if spent else [],
        "feedback": await feedback_panel(session, execution_id, me),
        "version": f"{detail.status}:{await _last_event(session, execution_id)}"})


@router.post("/executions/{execution_id}/steps/{step_id}/decide")
async def decide_on_page(execution_id: RowId, step_id: str, request: Request,
                         decision: Decision, step_hash: Annotated[str, Form(max_length=64)],
                         comment: Text = "", csrf_token: Csrf = "") -> Response:
    """Approve or reject from the execution page, bound to the step hash the page showed."""
    me = require_identity(request)
    verify_csrf(request, csrf_token)
    engine = request.app.state.engine
    async with transaction(request) as session:
        await decide(session, DecisionRequest(
            execution_id=execution_id, step_id=step_id, identity=me, decision=decision,
            channel="web", comment=comment, source_addr=client_addr(request),
            seen_hash=step_hash,
        ), runbooks=engine.runbooks, on_approved=engine.wake)
    return redirect(f"/executions/{execution_id}?{urlencode({'decided': step_id})}"
                    f"#step-{step_id}")


@router.post("/executions/{execution_id}/steps/{step_id}/rollback")
async def rollback_on_page(execution_id: RowId, step_id: str, request: Request,
                           reason: Text = "", csrf_token: Csrf = "") -> Response:
    """Start a step's rollback from the execution page; shows the new execution."""
    me = require_identity(request)
    verify_csrf(request, csrf_token)
    if not me.has_role("responder"):
        raise Forbidden(f"identity {me.name!r} may not start a rollback: it needs the "
                        "responder role or higher")
    engine = request.app.state.engine
    async with transaction(request) as session:
        started = await start_rollback(session, execution_id, step_id,
                                       runbook_of=engine.runbooks, actor=me.name,
                                       reason=reason, source_addr=client_addr(request))
        after_commit(session, engine.wake)
    return redirect(f"/executions/{started.id}")


@router.post("/executions/{execution_id}/links/{link_id}/revoke")
async def revoke_on_page(execution_id: RowId, link_id: str, request: Request,
                         csrf_token: Csrf = "") -> Response:
    me = require_identity(request, "approver")
    verify_csrf(request, csrf_token)
    async with transaction(request) as session:
        await links.revoke(session, link_id, actor=me.name, source_addr=client_addr(request))
    return redirect(f"/executions/{execution_id}#links")


@router.get("/ui/executions/status")
async def live_statuses(request: Request, session: SessionDep,
                        id: Annotated[list[Annotated[int, Field(ge=1, le=BIGINT_MAX)]],
                                      Query(max_length=100)] = []  # noqa: B006
                        ) -> Response:
    """Statuses for the list's live refresh (ids beyond 64 bits are a 422)."""
    require_identity(request)
    rows = await session.execute(select(Execution.id, Execution.status).where(
        Execution.id.in_(id)))
    return JSONResponse({str(i): s for i, s in rows}, headers={"Cache-Control": "no-store"})


@router.get("/ui/executions/{execution_id}/version")
async def live_version(execution_id: RowId, request: Request, session: SessionDep) -> Response:
    """What changes when anything about the execution changes (every change is an event)."""
    require_identity(request)
    execution = await session.get(Execution, execution_id)
    if execution is None:
        raise NotFound(f"execution {execution_id} does not exist")
    version = f"{execution.status}:{await _last_event(session, execution_id)}"
    return JSONResponse({"status": execution.status, "version": version},
                        headers={"Cache-Control": "no-store"})


# -- runbooks and guards ----------------------------------------------------------------------

@router.get("/runbooks")
async def runbooks_page(request: Request, session: SessionDep) -> Response:
    require_identity(request)
    guards = await current_guard_state(session)
    catalog = request.app.state.catalog.catalog
    return render(request, "runbooks.html", {
        "title": "Runbooks", "nav": "runbooks", "guards": guards,
        "runbooks": [catalog.runbooks[k] for k in sorted(catalog.runbooks)],
        **await signoff_column(session, catalog)})


@router.get("/runbooks/{runbook_id}")
async def runbook_page(runbook_id: str, request: Request, session: SessionDep,
                       version: str | None = None) -> Response:
    """The runbook document (the live version, or a stored one), with its history."""
    me = require_identity(request)
    engine = request.app.state.engine
    versions = await list_versions(session, runbook_id)
    loaded = request.app.state.catalog.catalog.runbooks.get(runbook_id)
    if loaded is None and not versions:
        raise NotFound(f"no runbook {runbook_id!r}")
    shown = version or (loaded.version if loaded else versions[0].version)
    book = await engine.runbooks.get(session, runbook_id, shown)
    guards = await current_guard_state(session)
    settings = request.app.state.settings
    checks = await last_runs(session, runbook_id, [t.check for t in book.triage])
    return render(request, "runbook.html", {
        "title": book.title, "nav": "runbooks", "rb": book, "shown": shown,
        "live": loaded.version if loaded else None, "versions": versions,
        "tree": views.triage_tree(book, checks), "diffs": views.version_diffs(versions),
        "recent_feedback": await runbook_notes(session, runbook_id),
        "paused": guards.paused.get(runbook_id), "kill": guards.kill_switch,
        "drill": await drill_view(session, book),
        "signoff": await signoff_panel(session, loaded.runbook, loaded.version, me)
        if loaded else None,
        "breaker_failures": book.limits.breaker.failures if book.limits.breaker
        else settings.breaker_failures,
        "breaker_window": book.limits.breaker.within.total_seconds() if book.limits.breaker
        else settings.breaker_window_seconds})


@router.get("/guards")
async def guards_page(request: Request, session: SessionDep) -> Response:
    """The kill switch, paused runbooks (by hand or by a breaker) and recent changes."""
    me = require_identity(request)
    state = await current_guard_state(session)
    rows = {g.key: g for g in (await session.execute(select(Guard))).scalars()}
    recent = (await session.execute(select(Event).where(Event.kind == "guard.changed")
                                    .order_by(Event.id.desc()).limit(20))).scalars().all()
    catalog = request.app.state.catalog.catalog
    return render(request, "guards.html", {
        "title": "Guards", "nav": "guards", "state": state, "kill": rows.get(GLOBAL),
        "rows": rows, "recent": recent, "can_change": me.has_role("responder"),
        "runbooks": [catalog.runbooks[k] for k in sorted(catalog.runbooks)],
        "paused_unknown": sorted(set(state.paused) - set(catalog.runbooks)),
        "brakes": await list_brakes(session), "global_brake": catalog.brake})


@router.post("/guards/brakes/{verb}")
async def decide_brake(verb: Literal["release", "abort"], request: Request,
                       scope: Annotated[str, Form(max_length=128)], reason: Text = "",
                       csrf_token: Csrf = "") -> Response:
    """Release a storm brake (its held executions start) or abort them (cancelled)."""
    me = require_identity(request, "responder")
    verify_csrf(request, csrf_token)
    async with transaction(request) as session:
        await release_brake(session, scope, abort=verb == "abort", actor=me.name,
                            reason=reason, source_addr=client_addr(request))
        after_commit(session, request.app.state.engine.wake)
    return redirect("/guards")


@router.post("/guards/kill-switch")
async def kill_switch(request: Request, engaged: Annotated[Literal["on", "off"], Form()],
                      reason: Text = "", csrf_token: Csrf = "") -> Response:
    me = require_identity(request, "responder")
    verify_csrf(request, csrf_token)
    async with transaction(request) as session:
        await set_guard(session, GLOBAL, engaged=engaged == "on", actor=me.name, reason=reason,
                        source_addr=client_addr(request))
        after_commit(session, request.app.state.engine.wake)
    return redirect("/guards")


@router.post("/guards/runbooks/{runbook_id}/{verb}")
async def pause_runbook(runbook_id: str, verb: Literal["pause", "resume"], request: Request,
                        reason: Text = "", csrf_token: Csrf = "") -> Response:
    me = require_identity(request, "responder")
    verify_csrf(request, csrf_token)
    if verb == "pause":
        request.app.state.engine.current(runbook_id)  # 404 for a runbook not in the catalog
    async with transaction(request) as session:
        await set_guard(session, runbook_key(runbook_id), engaged=verb == "pause",
                        actor=me.name, reason=reason, source_addr=client_addr(request))
        after_commit(session, request.app.state.engine.wake)
    return redirect("/guards")
