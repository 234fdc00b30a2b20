"""The pages of signed approval links: `/approve/{token}`.

A GET shows what will run, the rendered parameters, the alert and who else approved, and
changes nothing (Slack's bot fetches every link it sees). The POST, with a CSRF token, acts
through `decide(channel="link")`, bound to the step hash the link was made for.

A link is an invitation, never a credential: only a signed-in identity decides through it.
A link that names an identity works only for that identity; a role-targeted link, the kind
posted to shared channels, works for anyone signed in with that role. So neither a forwarded
link nor an admin who minted links for others is a vote.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.schema import ApprovalSpec
from app.db import SessionDep
from app.engine import links, states
from app.engine.approvals import DecisionRequest, decide
from app.engine.models import ApprovalLink, Execution, StepRun
from app.errors import Forbidden, LinkStale, NotFound, RunbookdError, Unauthenticated
from app.history.queries import execution_detail
from app.identity import Identity
from app.web.pages import (
    HtmlRoute,
    client_addr,
    decision_blocker,
    redirect,
    render,
    role_list,
    runbook_or_none,
    standing_approvers,
    transaction,
)
from app.web.session import current_identity, verify_csrf

router = APIRouter(route_class=HtmlRoute, include_in_schema=False)


@dataclass(frozen=True)
class Rights:
    """Who would act through a link, why they may not (or ""), and what a POST raises
    before `decide()` (which checks the approval rules itself)."""

    acting: Identity | None
    why_not: str
    refuse: type[RunbookdError] | None = None


def _rights(request: Request, link: ApprovalLink, started_by: str | None,
            spec: ApprovalSpec) -> Rights:
    acting = current_identity(request)
    role = links.intended_role(link)
    if acting is None:
        return Rights(None, "sign in to decide with this link", Unauthenticated)
    if role is None and acting.name != link.intended:
        return Rights(acting, f"this link is for {link.intended}; you are signed in as "
                              f"{acting.name}", Forbidden)
    if role is not None and not acting.has_role(role):
        return Rights(acting, f"this link is for the {role} role; {acting.name} is "
                              f"{role_list(acting)}", Forbidden)
    return Rights(acting, decision_blocker(acting, started_by, spec))


async def _approval_context(request: Request, session: AsyncSession, token: str,
                            link: ApprovalLink) -> dict[str, Any]:
    detail = await execution_detail(session, link.execution_id)
    step = next((s for s in detail.steps if s.id == link.step_run_id), None)
    if step is None:
        raise NotFound("the step of this link no longer exists")
    if step.status != states.STEP_AWAITING_APPROVAL:
        raise LinkStale(f"step {step.step_id} is no longer awaiting approval: it is "
                              f"{step.status.replace('_', ' ')}", current_state=step.status,
                              execution_id=detail.id)
    if step.step_hash != link.step_hash:
        raise LinkStale(f"step {step.step_id} changed since this link was sent; open "
                              "the execution to review it again", current_state=step.status,
                              execution_id=detail.id)
    runbook = await runbook_or_none(request, session, detail.runbook_id,
                                    detail.runbook_version)
    spec = (runbook.step(step.step_id).approvals if runbook else None) or ApprovalSpec()
    rights = _rights(request, link, detail.started_by, spec)
    return {"title": f"Approve {step.title}?", "ex": detail, "step": step, "spec": spec,
            "runbook": runbook, "approvers": standing_approvers(step), "link": link,
            "token": token, "acting": rights.acting, "why_not": rights.why_not,
            "role": links.intended_role(link)}


@router.get("/approve/{token}")
async def approval_page(token: str, request: Request, session: SessionDep) -> Response:
    """The confirmation page of a link. It changes nothing: Slack's bot fetches every link."""
    link = await links.open_link(session, request.app.state.settings, token)
    return render(request, "approve.html", await _approval_context(request, session, token,
                                                                   link))


@router.post("/approve/{token}")
async def approve_by_link(
    token: str, request: Request,
    decision: Annotated[Literal["approve", "reject"], Form()],
    comment: Annotated[str, Form(max_length=2000)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    """Act on a link: `decide(channel="link")`, bound to the hash the link was made for."""
    verify_csrf(request, csrf_token)
    engine = request.app.state.engine
    async with transaction(request) as session:
        link = await links.open_link(session, request.app.state.settings, token, lock=True)
        step = await session.get(StepRun, link.step_run_id)
        if step is None:
            raise NotFound("the step of this link no longer exists")
        acting = current_identity(request)
        if acting is None:
            raise Unauthenticated("sign in to decide with this link")

        def admit(execution: Execution, _: StepRun, spec: ApprovalSpec) -> None:
            # The link's own rule, on top of decide's: whom it was sent to.
            rights = _rights(request, link, execution.started_by, spec)
            if rights.refuse is not None or rights.acting is None:
                raise (rights.refuse or Unauthenticated)(rights.why_not)

        outcome = await decide(session, DecisionRequest(
            execution_id=link.execution_id, step_id=step.ref,
            identity=acting, decision=decision, channel="link", comment=comment,
            source_addr=client_addr(request), seen_hash=link.step_hash,
        ), runbooks=engine.runbooks, admit=admit, on_approved=engine.wake)
        if outcome.counted:
            # A repeat that counted for nothing leaves a shared link for the others.
            links.consume(session, link, actor=acting.name,
                          source_addr=client_addr(request), step_id=step.ref)
    if current_identity(request) is not None:
        return redirect(f"/executions/{outcome.execution_id}#step-{step.ref}")
    return render(request, "approve_result.html", {
        "title": "Decision recorded", "outcome": outcome, "acting": acting,
        "step_title": step.title})
