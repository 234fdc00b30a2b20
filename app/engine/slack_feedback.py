"""Slack: a click on a feedback button of an ended execution's message records the verdict
for the clicking user's runbookd identity, through `give_feedback` (the API's rules). The
request was verified by `slack_buttons`; the answer is an ephemeral reply to the clicker, and
the message in the channel stays as it is for the others who took part."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request

from app.db import session_scope
from app.engine.feedback import FeedbackGiven, give_feedback
from app.errors import Conflict, Forbidden, Invalid, NotFound
from app.events import record_event
from app.identity.deps import identity_store
from app.notify.slack_messages import FEEDBACK_ACTIONS, parse_feedback_value

log = logging.getLogger(__name__)
_WORDS = {"helped": "helped", "partly": "partly helped", "did_not_help": "did not help"}


def ephemeral(text: str) -> dict[str, Any]:
    """A reply only the clicking user sees; the original message stays."""
    return {"response_type": "ephemeral", "replace_original": False, "text": text}


async def feedback_click(request: Request, action: dict[str, Any], user_id: str,
                         source_addr: str | None) -> dict[str, Any]:
    """Record the clicked verdict; returns the reply for `response_url`."""
    verdict = FEEDBACK_ACTIONS[str(action.get("action_id"))]
    try:
        execution_id = parse_feedback_value(str(action.get("value", "")))
    except ValueError:
        return ephemeral("This button does not name a runbookd execution: give your feedback "
                         "on the execution page instead.")
    name = request.app.state.settings.slack_users.get(user_id)
    identity = identity_store(request).by_name(name) if name else None
    factory = request.app.state.session_factory
    if identity is None:
        log.warning("slack feedback from an unmapped user refused (execution %s)", execution_id)
        async with session_scope(factory) as session:
            record_event(session, kind="slack.unknown_user", entity="slack", actor="slack",
                         reason=f"Slack user {user_id[:32]} is not mapped to a runbookd "
                                "identity", execution_id=execution_id, source_addr=source_addr,
                         data={"slack_user": user_id[:32], "mapped_to": name,
                               "feedback": verdict})
        return ephemeral(
            f"Your Slack user ({user_id[:32]}) is not linked to a runbookd identity, so your "
            "feedback was not recorded. To link it, ask a runbookd admin to add "
            f"`{user_id[:32]}: <your identity>` to RUNBOOKD_SLACK_USERS; or give it on the "
            f"execution page, or with `runbookd feedback {execution_id} ... --token`.")
    try:
        async with session_scope(factory) as session:
            await give_feedback(session, FeedbackGiven(
                execution_id=execution_id, identity=identity.name, verdict=verdict,
                channel="slack", source_addr=source_addr))
    except (Forbidden, Conflict, NotFound, Invalid) as exc:
        return ephemeral(f"{identity.name}: your feedback was not recorded: {exc.message}")
    url = f"{request.app.state.settings.public_url.rstrip('/')}/executions/{execution_id}"
    return ephemeral(f"Thanks, {identity.name}: recorded that the runbook {_WORDS[verdict]} "
                     f"in execution #{execution_id}. Add a note on the execution page: {url}")
