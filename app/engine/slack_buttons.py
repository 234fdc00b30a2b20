"""Slack interactivity: the Approve and Reject buttons of an approval request land here.

Every request is verified with `slack_sdk`'s SignatureVerifier over the raw body, within
5 minutes; a missing, malformed, stale, forged or replayed request gets a 401, a warning in
the log and an audit event. The Slack user is mapped to a runbookd identity through
RUNBOOKD_SLACK_USERS, and the decision goes through `decide(channel="slack")`, the same
rules as the API. Slack wants a 200 within 3 s, so the answer is empty and the message is
updated afterwards through `response_url`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask

from app.db import session_scope
from app.engine import states
from app.engine.approvals import ApprovalOutcome, Decision, DecisionRequest, decide
from app.engine.slack_feedback import feedback_click
from app.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    PlanChanged,
    Unauthenticated,
)
from app.events import record_event
from app.identity import Identity
from app.identity.deps import identity_store
from app.notify.slack_messages import (
    FEEDBACK_ACTIONS,
    escape,
    feedback_blocks,
    parse_button_value,
)

log = logging.getLogger(__name__)

router = APIRouter(tags=["slack"])
WINDOW_SECONDS = 300
MAX_BODY = 64 * 1024
DECISIONS = {"approve", "reject"}
STATUS_BLOCK = "runbookd-status"


class SlackRejected(Exception):
    """Why a request did not come from Slack (or came too late)."""


def verify_signature(secret: str, body: bytes, timestamp: str | None, signature: str | None,
                     *, now: float) -> None:
    """Raise SlackRejected unless Slack signed `body` at `timestamp`, within 5 minutes."""
    if not timestamp or not signature:
        raise SlackRejected("missing X-Slack-Request-Timestamp or X-Slack-Signature")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SlackRejected("malformed timestamp")
    if abs(now - int(timestamp)) > WINDOW_SECONDS:
        raise SlackRejected("timestamp outside the 5-minute window (stale or replayed)")

    class _At:
        def now(self) -> float:
            return now

    # Imported on first use: slack_sdk's package brings its whole Web API client (~2 MiB).
    from slack_sdk.signature import SignatureVerifier

    try:
        valid = SignatureVerifier(secret, clock=_At()).is_valid(body, timestamp, signature)
    except (ValueError, TypeError):  # it raises on input it cannot parse
        valid = False
    if not valid:
        raise SlackRejected("bad signature")


class ReplayGuard:
    """Signatures seen in the last 5 minutes: a verified request is accepted once.

    In-process only: with several replicas a replay might reach another one, where it meets
    `decide`, which counts the same identity's approval of a step once.
    """

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def first_time(self, signature: str, now: float) -> bool:
        # Insertion order is expiry order, so expired entries are always at the front.
        while self._seen:
            oldest, expiry = next(iter(self._seen.items()))
            if expiry >= now:
                break
            del self._seen[oldest]
        if signature in self._seen:
            return False
        self._seen[signature] = now + 2 * WINDOW_SECONDS
        return True


def _replays(request: Request) -> ReplayGuard:
    guard = getattr(request.app.state, "slack_replays", None)
    if guard is None:
        guard = request.app.state.slack_replays = ReplayGuard()
    return guard


def _addr(request: Request) -> str | None:
    return request.client.host if request.client else None


async def _audit(request: Request, kind: str, reason: str, *, actor: str = "slack",
                 execution_id: int | None = None, step_id: str | None = None,
                 data: dict[str, Any] | None = None) -> None:
    log.warning("slack interaction refused: %s (%s) from %s", kind, reason, _addr(request))
    try:
        async with session_scope(request.app.state.session_factory) as session:
            record_event(session, kind=kind, entity="slack", actor=actor, reason=reason,
                         execution_id=execution_id, step_id=step_id,
                         source_addr=_addr(request), data=data)
    except Exception:
        log.exception("could not record the refused Slack request")


async def _read_body(request: Request) -> bytes:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise PayloadTooLarge(f"a Slack interaction is at most {MAX_BODY} bytes")
    return body


def _payload(body: bytes) -> dict[str, Any]:
    try:
        fields = parse_qs(body.decode(), strict_parsing=False)
        payload = json.loads(fields["payload"][0])
    except (UnicodeDecodeError, KeyError, IndexError, ValueError):
        raise BadRequest("expected a form field `payload` holding JSON") from None
    if not isinstance(payload, dict):
        raise BadRequest("`payload` must be a JSON object")
    return payload


@router.post("/slack/interactions", status_code=200,
             responses={400: {}, 401: {}, 404: {}, 413: {}})
async def interactions(request: Request) -> Response:
    """Slack's interactivity request URL: approve or reject from a message's buttons."""
    settings = request.app.state.settings
    if settings.slack_signing_secret is None:
        raise NotFound("Slack interactivity is not configured (RUNBOOKD_SLACK_SIGNING_SECRET)")
    body = await _read_body(request)
    now = time.time()
    signature = request.headers.get("x-slack-signature")
    try:
        verify_signature(settings.slack_signing_secret.get_secret_value(), body,
                         request.headers.get("x-slack-request-timestamp"), signature, now=now)
        if not _replays(request).first_time(signature or "", now):
            raise SlackRejected("replayed request (this signature was already used)")
    except SlackRejected as exc:
        await _audit(request, "slack.rejected", str(exc))
        raise Unauthenticated(f"not a valid Slack request: {exc}",
                              scheme="Slack-Signature") from None
    payload = _payload(body)
    action = next((a for a in payload.get("actions") or [] if isinstance(a, dict)
                   and a.get("action_id") in (*DECISIONS, *FEEDBACK_ACTIONS)), None)
    if payload.get("type") != "block_actions" or action is None:
        return Response(status_code=200)  # link buttons and other interactions: nothing to do
    response_url = str(payload.get("response_url") or "")
    user = payload.get("user") or {}
    if action["action_id"] in FEEDBACK_ACTIONS:  # an ended execution's feedback buttons
        message = await feedback_click(request, action, str(user.get("id", "")),
                                       _addr(request))
    else:
        message = await _act(request, payload, action, str(user.get("id", "")))
    return Response(status_code=200, background=BackgroundTask(
        _respond, request.app.state.engine.http, response_url, message))


async def _act(request: Request, payload: dict[str, Any], action: dict[str, Any],
               user_id: str) -> dict[str, Any]:
    """Decide, and return the message to send to `response_url`."""
    try:
        execution_id, step_id, plan_hash = parse_button_value(str(action.get("value", "")))
    except ValueError:
        return _ephemeral("This button does not name a runbookd step (or comes from a message "
                          "older than approval plans): open the execution page to decide.")
    name = request.app.state.settings.slack_users.get(user_id)
    identity = identity_store(request).by_name(name) if name else None
    if identity is None:
        await _audit(request, "slack.unknown_user",
                     f"Slack user {user_id[:32]} is not mapped to a runbookd identity",
                     execution_id=execution_id, step_id=step_id,
                     data={"slack_user": user_id[:32], "mapped_to": name})
        return _ephemeral("Forbidden (403): your Slack user is not mapped to a runbookd "
                          "identity, so runbookd cannot take your decision. Ask an admin to "
                          "add you to RUNBOOKD_SLACK_USERS.")
    decision: Decision = "approve" if action["action_id"] == "approve" else "reject"
    try:
        outcome = await _decide(request, execution_id, step_id, identity, decision,
                                f"via Slack (user {user_id[:32]})", plan_hash)
    except PlanChanged as exc:
        await _audit(request, "slack.refused", exc.message, actor=identity.name,
                     execution_id=execution_id, step_id=step_id,
                     data={"slack_user": user_id[:32], "decision": decision,
                           "clicked_hash": plan_hash, "current_hash": exc.plan_hash})
        now_plan = (exc.plan or {}).get("summary") or "see the execution page"
        return _ephemeral(f"This request changed since this message was sent, so your "
                          f"{decision} was not recorded. It would now do: {now_plan}. Review "
                          "it on the execution page or in the newest message.")
    except (Forbidden, Conflict, NotFound) as exc:
        await _audit(request, "slack.refused", exc.message, actor=identity.name,
                     execution_id=execution_id, step_id=step_id,
                     data={"slack_user": user_id[:32], "decision": decision})
        return _ephemeral(f"{identity.name}: {exc.message}")
    if not outcome.counted:
        return _ephemeral(f"You ({identity.name}) already approved this step: "
                          f"{outcome.approvals} of {outcome.required}.")
    return _replacement(payload, outcome, identity)


async def _decide(request: Request, execution_id: int, step_id: str, identity: Identity,
                  decision: Decision, comment: str, plan_hash: str) -> ApprovalOutcome:
    engine = request.app.state.engine
    async with session_scope(request.app.state.session_factory) as session:
        return await decide(session, DecisionRequest(
            execution_id=execution_id, step_id=step_id, identity=identity, decision=decision,
            channel="slack", comment=comment, source_addr=_addr(request), seen_hash=plan_hash,
        ), runbooks=engine.runbooks, on_approved=engine.wake)


def _ephemeral(text: str) -> dict[str, Any]:
    """A reply only the clicking user sees; the original message stays."""
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


def _replacement(payload: dict[str, Any], outcome: ApprovalOutcome,
                 identity: Identity) -> dict[str, Any]:
    """The original message with its status line updated (and its buttons gone when final)."""
    who = escape(identity.name)
    if outcome.decision == "reject":
        status = f":x: Rejected by *{who}*: execution #{outcome.execution_id} stops."
    elif outcome.step_status == states.STEP_APPROVED:
        status = (f":white_check_mark: Approved by *{who}* ({outcome.approvals} of "
                  f"{outcome.required}): step `{escape(outcome.step_id)}` runs now.")
    else:
        status = (f":+1: *{who}* approved ({outcome.approvals} of {outcome.required}); "
                  "waiting for more approvals.")
    final = outcome.step_status != states.STEP_AWAITING_APPROVAL
    original = payload.get("message") or {}
    blocks = []
    for block in original.get("blocks") or []:
        if not isinstance(block, dict) or block.get("block_id") == STATUS_BLOCK:
            continue
        if final and block.get("type") == "actions":
            kept = [e for e in block.get("elements") or []
                    if e.get("action_id") not in (*DECISIONS, "open_approval")]
            if not kept:
                continue
            block = {**block, "elements": kept}
        blocks.append(block)
    if outcome.execution_status in states.FINAL_EXECUTION:  # a rejection ended it: ask
        blocks += feedback_blocks(outcome.execution_id)
    blocks.append({"type": "context", "block_id": STATUS_BLOCK,
                   "elements": [{"type": "mrkdwn", "text": status}]})
    text = str(original.get("text") or f"runbookd execution #{outcome.execution_id}")
    return {"replace_original": True, "text": text, "blocks": blocks}


async def _respond(http: Any, url: str, message: dict[str, Any]) -> None:
    """POST the update to Slack's response_url (allow-listed like all outbound HTTP)."""
    if not url:
        return
    try:
        response = await http.request("POST", url, json=message)
        if response.status_code >= 300:
            log.warning("Slack response_url answered %s", response.status_code)
    except Exception as exc:
        # The URL is a capability for the channel: log its kind of failure, never the URL.
        log.warning("could not update the Slack message: %s", type(exc).__name__)

