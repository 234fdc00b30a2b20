"""Signed approval links: opaque, single-use, revocable, expiring URLs to an approval page.

A token is base64url(link id ‖ HMAC-SHA256(key, link id, execution, step run, step hash,
intended approver, expiry)). The row holds the same fields, so a token is checked by
recomputing its MAC from the row (constant-time compare): a changed field or a forged id
fails. The key is derived from RUNBOOKD_LINK_SECRET; in dev without it, a per-process key is
used, so links do not survive a restart. A GET of a link never changes anything (Slack
fetches every link it sees); only the POST from its confirmation page acts.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.catalog.schema import ApprovalSpec
from app.config import Settings
from app.db import SessionDep, session_scope, utcnow
from app.engine import states
from app.engine.approvals import find_step_run
from app.engine.models import ApprovalLink, Execution, StepRun
from app.engine.runbooks import RunbookSource
from app.errors import (
    Conflict,
    Forbidden,
    Invalid,
    LinkGone,
    NotFound,
    SigningKeyMissing,
)
from app.events import record_event
from app.identity import ROLES, Identity
from app.identity.deps import require
from app.notify.models import Notification
from app.paging import RowId
from app.signing import derived_key

log = logging.getLogger(__name__)

ID_BYTES = 16
MAC_BYTES = 32
MAX_TTL = dt.timedelta(hours=24)
ROLE_PREFIX = "role:"


def _mac(key: bytes, link: ApprovalLink) -> bytes:
    fields = [link.id, str(link.execution_id), str(link.step_run_id), link.step_hash,
              link.intended, str(int(link.expires_at.timestamp()))]
    return hmac.new(key, "\x1f".join(fields).encode(), hashlib.sha256).digest()


def encode_token(settings: Settings, link: ApprovalLink) -> str:
    """The opaque token of a link row (deterministic: the MAC is recomputed from the row)."""
    raw = bytes.fromhex(link.id) + _mac(derived_key(settings, "approval-link"), link)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str) -> tuple[str, bytes]:
    """The link id and MAC inside a token; a malformed token is NotFound."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise NotFound("this approval link is not valid") from None
    if len(token) > 128 or len(raw) != ID_BYTES + MAC_BYTES:
        raise NotFound("this approval link is not valid")
    return raw[:ID_BYTES].hex(), raw[ID_BYTES:]


def link_url(settings: Settings, token: str) -> str:
    return f"{settings.public_url.rstrip('/')}/approve/{token}"


def intended_role(link: ApprovalLink) -> str | None:
    """The role a role-targeted link asks for, or None for a link naming one identity."""
    return link.intended.removeprefix(ROLE_PREFIX) if link.intended.startswith(ROLE_PREFIX) \
        else None


def intended_for(spec: ApprovalSpec) -> str:
    """Who a link posted to a shared channel is for: always a role, so it needs sign-in.

    A link naming an identity acts as that identity without sign-in, so in a channel it
    would hand that identity's vote to every reader. With no roles in the spec, `viewer`
    means "any signed-in identity", and `decide()` still checks the named identities.
    """
    return ROLE_PREFIX + (spec.roles[0] if spec.roles else "viewer")


def _check_intended(intended: str) -> None:
    role = intended.removeprefix(ROLE_PREFIX)
    if intended.startswith(ROLE_PREFIX) and role not in ROLES:
        raise Invalid(f"unknown role {role!r}; one of {', '.join(ROLES)}",
                      details=[{"field": "intended", "message": "unknown role"}])
    if not intended or len(intended) > 128:
        raise Invalid("intended must be an identity name or role:<role>",
                      details=[{"field": "intended", "message": "invalid"}])


async def make_link(session: AsyncSession, settings: Settings, *, step_run: StepRun,
                    intended: str, ttl: dt.timedelta, created_by: str,
                    reuse: bool = False) -> str:
    """Create a link to approve `step_run` (awaiting approval) and return its URL."""
    link = await create_link_row(session, settings, step_run=step_run, intended=intended,
                                 ttl=ttl, created_by=created_by, reuse=reuse)
    return link_url(settings, encode_token(settings, link))


async def create_link_row(session: AsyncSession, settings: Settings, *, step_run: StepRun,
                          intended: str, ttl: dt.timedelta, created_by: str,
                          reuse: bool = False) -> ApprovalLink:
    """The link row behind `make_link`; with `reuse`, a live one for the same audience.

    `created_by` is recorded on the row and in the audit: who invited whom."""
    _check_intended(intended)
    if step_run.status != states.STEP_AWAITING_APPROVAL or not step_run.step_hash:
        raise Conflict(f"step {step_run.step_id} is not awaiting approval",
                       current_state=step_run.status)
    derived_key(settings, "approval-link")  # refuse before writing anything
    now = utcnow()
    if reuse:
        # The sender retries deliveries; one live link per step, hash and audience is enough.
        existing = (await session.execute(
            select(ApprovalLink).where(
                ApprovalLink.step_run_id == step_run.id,
                ApprovalLink.step_hash == step_run.step_hash,
                ApprovalLink.intended == intended, ApprovalLink.used_at.is_(None),
                ApprovalLink.revoked_at.is_(None), ApprovalLink.expires_at > now)
            .order_by(ApprovalLink.created_at.desc()).limit(1))).scalar_one_or_none()
        if existing is not None:
            return existing
    expires = now + min(ttl, MAX_TTL)
    if step_run.approval_expires_at is not None:
        expires = min(expires, step_run.approval_expires_at)
    link = ApprovalLink(
        id=secrets.token_bytes(ID_BYTES).hex(), execution_id=step_run.execution_id,
        step_run_id=step_run.id, step_hash=step_run.step_hash, intended=intended,
        created_by=created_by,
        # Whole seconds: the MAC signs the expiry, and every database must round-trip it.
        created_at=now, expires_at=expires.replace(microsecond=0),
    )
    session.add(link)
    record_event(session, kind="link.created", entity="link", actor=created_by,
                 execution_id=step_run.execution_id, step_run_id=step_run.id,
                 step_id=step_run.ref,
                 data={"link_id": link.id, "intended": intended,
                       "expires_at": link.expires_at.isoformat()})
    await session.flush()
    return link


async def open_link(session: AsyncSession, settings: Settings, token: str, *,
                    lock: bool = False) -> ApprovalLink:
    """The verified link of a token: 404 malformed or unknown, 403 forged, 410 spent."""
    link_id, mac = decode_token(token)
    query = select(ApprovalLink).where(ApprovalLink.id == link_id)
    if lock:
        query = query.with_for_update()
    link = (await session.execute(query)).scalar_one_or_none()
    if link is None:
        raise NotFound("this approval link is not valid")
    if not hmac.compare_digest(mac, _mac(derived_key(settings, "approval-link"), link)):
        raise Forbidden("this approval link was altered, or signed with a key that has since "
                        "changed")
    if link.revoked_at is not None:
        raise LinkGone(f"this approval link was revoked at {_when(link.revoked_at)}",
                       execution_id=link.execution_id)
    if link.used_at is not None:
        raise LinkGone(f"this approval link was already used at {_when(link.used_at)}",
                       execution_id=link.execution_id)
    if utcnow() >= link.expires_at:
        raise LinkGone(f"this approval link expired at {_when(link.expires_at)}",
                       execution_id=link.execution_id)
    return link


def _when(at: dt.datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


def consume(session: AsyncSession, link: ApprovalLink, *, actor: str,
            source_addr: str | None, step_id: str) -> None:
    """Mark a link used, in the transaction of the decision it carried."""
    link.used_at = utcnow()
    record_event(session, kind="link.used", entity="link", actor=actor,
                 execution_id=link.execution_id, step_run_id=link.step_run_id,
                 step_id=step_id, source_addr=source_addr, data={"link_id": link.id})


async def revoke(session: AsyncSession, link_id: str, *, actor: str,
                 source_addr: str | None) -> ApprovalLink:
    """Revoke a link by id; revoking twice is a no-op."""
    link = await session.get(ApprovalLink, link_id, with_for_update=True)
    if link is None:
        raise NotFound(f"approval link {link_id[:40]!r} does not exist")
    if link.revoked_at is None:
        link.revoked_at = utcnow()
        record_event(session, kind="link.revoked", entity="link", actor=actor,
                     execution_id=link.execution_id, step_run_id=link.step_run_id,
                     source_addr=source_addr, data={"link_id": link.id})
    return link


async def links_of(session: AsyncSession, execution_id: int) -> list[ApprovalLink]:
    """Every link made for an execution, newest first."""
    rows = await session.execute(select(ApprovalLink).where(
        ApprovalLink.execution_id == execution_id).order_by(ApprovalLink.created_at.desc()))
    return list(rows.scalars())


def make_link_maker(settings: Settings, factory: async_sessionmaker[AsyncSession],
                    runbooks: RunbookSource) -> Callable[[Notification], Awaitable[str | None]]:
    """The sender's `link_maker`: a role-targeted link for an approval request, or None."""

    async def link_maker(row: Notification) -> str | None:
        if row.step_run_id is None:
            return None
        try:
            async with session_scope(factory) as session:
                step = await session.get(StepRun, row.step_run_id)
                wanted = (row.payload or {}).get("step_hash")
                if step is None or step.status != states.STEP_AWAITING_APPROVAL or (
                        wanted and wanted != step.step_hash):
                    return None  # stale: a newer request (with its own link) follows
                execution = await session.get(Execution, step.execution_id)
                assert execution is not None
                runbook = await runbooks.get(session, execution.runbook_id,
                                             execution.runbook_version)
                spec = runbook.step(step.step_id).approvals or ApprovalSpec()
                return await make_link(session, settings, step_run=step,
                                       intended=intended_for(spec), ttl=MAX_TTL,
                                       created_by="system:notifications", reuse=True)
        except SigningKeyMissing:
            log.warning("approval request without a link: RUNBOOKD_LINK_SECRET is not set")
        except Exception:
            # The message matters more than its link: send it without one.
            log.warning("could not make an approval link for notification %s", row.id,
                        exc_info=True)
        return None

    return link_maker


# -- the links API -------------------------------------------------------------------------

router = APIRouter(prefix="/api/v1", tags=["approval links"])
Viewer = Annotated[Identity, Depends(require("viewer"))]
Approver = Annotated[Identity, Depends(require("approver"))]


class LinkOut(BaseModel):
    id: str
    execution_id: int
    step_run_id: int
    step_hash: str
    intended: str
    created_by: str | None
    created_at: dt.datetime
    expires_at: dt.datetime
    used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, link: ApprovalLink) -> LinkOut:
        return cls.model_validate(link, from_attributes=True)


class NewLink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    intended: str = Field(default="role:approver", max_length=128,
                          description="role:<role> (sign-in required), or an identity name")
    ttl_seconds: int = Field(default=3600, ge=60, le=int(MAX_TTL.total_seconds()))


class CreatedLink(LinkOut):
    url: str


def _addr(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.get("/executions/{execution_id}/approval-links", response_model=list[LinkOut])
async def list_links(execution_id: RowId, session: SessionDep, _: Viewer) -> list[LinkOut]:
    """The approval links of an execution (never their tokens)."""
    return [LinkOut.of(link) for link in await links_of(session, execution_id)]


@router.post("/executions/{execution_id}/steps/{step_id}/approval-links",
             response_model=CreatedLink, status_code=201,
             responses={403: {}, 404: {}, 409: {}, 503: {}})
async def create_link(execution_id: RowId, step_id: str, request: Request, session: SessionDep,
                      identity: Approver, body: NewLink | None = None) -> CreatedLink:
    """Make a link to send by email or chat; a link naming an identity needs admin."""
    body = body or NewLink()
    if not body.intended.startswith(ROLE_PREFIX) and not identity.has_role("admin"):
        # It would act as that identity without sign-in: a vote only an admin may hand out.
        raise Forbidden("only an admin may make a link that names an identity")
    settings = request.app.state.settings
    execution = await session.get(Execution, execution_id)
    if execution is not None and execution.started_by == identity.name:
        # Whoever started an execution may not approve it, nor pick who does.
        raise Forbidden(f"identity {identity.name!r} started execution {execution_id}, so it "
                        "cannot invite approvers for it (separation of duties)")
    step = await find_step_run(session, execution_id, step_id)
    link = await create_link_row(session, settings, step_run=step, intended=body.intended,
                                 ttl=dt.timedelta(seconds=body.ttl_seconds),
                                 created_by=identity.name)
    return CreatedLink(**LinkOut.of(link).model_dump(),
                       url=link_url(settings, encode_token(settings, link)))


@router.post("/approval-links/{link_id}/revoke", response_model=LinkOut,
             responses={404: {}})
async def revoke_link(link_id: str, request: Request, session: SessionDep,
                      identity: Approver) -> LinkOut:
    """Revoke a link: it answers 410 from now on."""
    return LinkOut.of(await revoke(session, link_id, actor=identity.name,
                                   source_addr=_addr(request)))
