"""The runbook page's sign-off block (`_signoff.html`) and its Sign-off form.

Thin: the panel is read from `app.catalog.signoffs`, whose `signoff_blocker` is the one rule
for who may sign off; the form checks its CSRF token, signs off in its own transaction and
redirects back to the block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.loader import Catalog
from app.catalog.models import RunbookVersion
from app.catalog.schema import Runbook
from app.catalog.signoff_models import RunbookSignoff
from app.catalog.signoff_reviews import ReviewState, review_of, review_states
from app.catalog.signoffs import (
    Pending,
    last_signed_version,
    list_signoffs,
    pending_for,
    reviewers_for,
    sign_off,
    signoff_blocker,
    unsigned_among,
)
from app.identity import Identity
from app.web import views
from app.web.pages import HtmlRoute, client_addr, redirect, require_identity, transaction
from app.web.session import verify_csrf

router = APIRouter(route_class=HtmlRoute, include_in_schema=False)
RECENT = 5  # sign-offs listed on the page; the API lists them all


@dataclass(frozen=True)
class SignoffPanel:
    """What the block shows: the unsigned change (if any) with its diff against the last
    signed-off version, who may sign it, the review cadence and the recent sign-offs."""

    runbook_id: str
    live_version: str
    pending: Pending | None
    diff: views.VersionDiff | None
    blocker: str | None  # why the signed-in identity may not sign off, or None
    review: ReviewState
    recent: list[RunbookSignoff]
    reviewers: list[str]

    @property
    def can_sign(self) -> bool:
        """A form shows for an unsigned change, or for the review of an overdue runbook."""
        return self.pending is not None or self.review.overdue


async def signoff_panel(session: AsyncSession, runbook: Runbook, live_version: str,
                        me: Identity) -> SignoffPanel:
    """The sign-off block of the runbook page, for the signed-in identity `me`."""
    pending = await pending_for(session, runbook.id, live_version)
    row = await session.get(RunbookVersion, (runbook.id, live_version))
    diff, blocker, reviewers = None, None, list(runbook.reviewers)
    if row is not None:
        base = pending.base if pending else await last_signed_version(
            session, runbook.id, other_than=live_version)
        reviewers = reviewers_for(row, base)
        blocker = signoff_blocker(me, row, reviewers)
        if pending is not None and pending.base is not None:
            diff = views.version_diffs([row, pending.base])[0]
    return SignoffPanel(
        runbook_id=runbook.id, live_version=live_version, pending=pending, diff=diff,
        blocker=blocker, review=await review_of(session, runbook),
        recent=(await list_signoffs(session, runbook.id))[:RECENT], reviewers=reviewers)


async def signoff_column(session: AsyncSession, catalog: Catalog) -> dict[str, Any]:
    """The runbook list's review and sign-off state: `reviews` by runbook id, and the ids
    whose live version is `unsigned`."""
    unsigned = await unsigned_among(
        session, [(lr.runbook.id, lr.version) for lr in catalog.runbooks.values()])
    return {"reviews": {r.runbook_id: r for r in await review_states(session, catalog)},
            "unsigned": {rid for rid, _ in unsigned}}


@router.post("/runbooks/{runbook_id}/signoff")
async def sign_off_on_page(runbook_id: str, request: Request,
                           version: Annotated[str, Form(min_length=1, max_length=64)],
                           comment: Annotated[str, Form(max_length=2000)] = "",
                           csrf_token: Annotated[str, Form()] = "") -> Response:
    """Sign off a version from the runbook page, as the signed-in identity."""
    me = require_identity(request)
    verify_csrf(request, csrf_token)
    async with transaction(request) as session:
        await sign_off(session, runbook_id=runbook_id, version=version, identity=me,
                       comment=comment, source_addr=client_addr(request))
    return redirect(f"/runbooks/{runbook_id}#signoff")
