"""Slack: Block Kit messages for executions and approval requests, and incoming-webhook delivery.

An approval request carries Approve and Reject buttons (`action_id` `approve` / `reject`, `value`
`"<execution id>:<step id>"`, read back with `parse_button_value`) and a link button to the
approval page (`action_id` `open_approval`; Slack reports its clicks too: ignore them). Text
from alerts is escaped, so a label cannot ping `<!channel>` or forge a link. The message of an
ended execution that people took part in asks for their feedback: three buttons
(`FEEDBACK_ACTIONS`, `value` the execution id).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from app.notify.transport import failure, post_json, short_text
from app.outbound import OutboundHttp

SERVICE = "Slack"
MessageKind = Literal["approval_request", "started", "succeeded", "failed", "needs_attention",
                      "escalation", "resolved", "info"]

_HEADLINE: dict[str, str] = {
    "approval_request": ":raising_hand: Approval needed",
    "started": ":arrow_forward: Remediation started",
    "succeeded": ":white_check_mark: Remediation succeeded",
    "failed": ":x: Remediation failed",
    "needs_attention": ":warning: Needs attention",
    "escalation": ":rotating_light: Escalation",
    "resolved": ":large_green_circle: Alert resolved",
    "info": ":information_source: runbookd",
}
# Block Kit limits (api.slack.com/reference/block-kit).
SECTION_TEXT_MAX = 3000
BUTTON_TEXT_MAX = 75
FALLBACK_MAX = 4000
CONTEXT_ELEMENTS_MAX = 10


def escape(text: str) -> str:
    """Escape Slack's control characters: `&`, `<`, `>`."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def button_value(execution_id: int, step_id: str, plan_hash: str) -> str:
    """What an Approve/Reject button carries: the step and the hash of the plan it showed,
    so that a click on an old message never approves a step that changed since."""
    return f"{execution_id}:{step_id}:{plan_hash}"


_HASH = frozenset("0123456789abcdef")


def parse_button_value(value: str) -> tuple[int, str, str]:
    """`"42:rollback:<sha256>"` to (42, "rollback", "<sha256>"); ValueError on anything else."""
    execution, _, rest = value.partition(":")
    step, _, plan_hash = rest.rpartition(":")
    if (not execution.isdigit() or len(execution) > 18 or not step or len(plan_hash) != 64
            or not set(plan_hash) <= _HASH):
        raise ValueError(f"not an approval button value: {value[:100]!r}")
    return int(execution), step, plan_hash


# A feedback button's action id, and the verdict a click on it gives.
FEEDBACK_ACTIONS = {"feedback_helped": "helped", "feedback_partly": "partly",
                    "feedback_did_not_help": "did_not_help"}
_FEEDBACK_LABELS = {"feedback_helped": "Helped", "feedback_partly": "Partly",
                    "feedback_did_not_help": "Did not help"}


def parse_feedback_value(value: str) -> int:
    """A feedback button's value (the execution id) to an int; ValueError on anything else."""
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise ValueError(f"not a feedback button value: {value[:100]!r}")
    return int(value)


def feedback_blocks(execution_id: int) -> list[dict[str, Any]]:
    """The question whether the runbook helped, and its three buttons."""
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            "*Did this runbook help?* If you took part (you started it or decided on a "
            "step), tell us; a second click replaces your first.")}},
        {"type": "actions", "block_id": f"runbookd-feedback-{execution_id}",
         "elements": [_button(label, action_id, value=str(execution_id))
                      for action_id, label in _FEEDBACK_LABELS.items()]},
    ]


def _button(text: str, action_id: str, *, value: str | None = None, url: str | None = None,
            style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {"type": "button", "action_id": action_id,
                              "text": {"type": "plain_text", "text": _cut(text, BUTTON_TEXT_MAX),
                                       "emoji": True}}
    if value is not None:
        button["value"] = value
    if url is not None:
        button["url"] = url
    if style is not None:
        button["style"] = style
    return button


def build_message(
    kind: MessageKind, *, title: str, execution_id: int | None = None, runbook: str | None = None,
    status: str | None = None, step_id: str | None = None, step_title: str | None = None,
    target: Mapping[str, str] | None = None, details: str | None = None,
    approve_url: str | None = None, execution_url: str | None = None,
    plan: str | None = None, plan_hash: str | None = None, feedback: bool = False,
) -> dict[str, Any]:
    """A Block Kit payload (`text` fallback plus section, context and actions blocks).

    An approval request shows the plan, the concrete change, before anything else. With
    `feedback`, the message ends with the question whether the runbook helped."""
    if kind == "approval_request" and (execution_id is None or not step_id or not plan_hash):
        raise ValueError("an approval request needs the execution id, the step id and the "
                         "hash of its plan")
    headline = _HEADLINE[kind]
    body = f"*{headline}*\n*{escape(title)}*"
    if plan:
        body += f"\n*Plan:* {escape(plan)}"
    if step_title or step_id:
        body += f"\nStep: {escape(step_title or '')}" + (f" (`{escape(step_id)}`)" if step_id
                                                          else "")
    if details:
        body += f"\n{escape(details)}"
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _cut(body, SECTION_TEXT_MAX)}},
    ]
    facts = []
    if runbook:
        facts.append(f"Runbook: *{escape(runbook)}*")
    if execution_id is not None:
        facts.append(f"Execution: #{execution_id}")
    if status:
        facts.append(f"Status: {escape(status)}")
    facts += [f"{escape(k)}: `{escape(v)}`" for k, v in sorted((target or {}).items())]
    if facts:
        blocks.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": _cut(fact, SECTION_TEXT_MAX)}
            for fact in facts[:CONTEXT_ELEMENTS_MAX]]})
    buttons = []
    if kind == "approval_request":
        assert execution_id is not None and step_id is not None and plan_hash is not None
        value = button_value(execution_id, step_id, plan_hash)
        buttons += [_button("Approve", "approve", value=value, style="primary"),
                    _button("Reject", "reject", value=value, style="danger")]
        if approve_url:
            buttons.append(_button("Open approval page", "open_approval", url=approve_url))
    if execution_url:
        buttons.append(_button("Open execution", "open_execution", url=execution_url))
    if buttons:
        blocks.append({"type": "actions", "block_id": f"runbookd-{execution_id or 0}",
                       "elements": buttons})
    if feedback and execution_id is not None:
        blocks += feedback_blocks(execution_id)
    fallback = f"{headline.split(' ', 1)[1]}: {title}"
    if step_id:
        fallback += f" (step {step_id})"
    return {"text": _cut(escape(fallback), FALLBACK_MAX), "blocks": blocks}


async def post_incoming_webhook(http: OutboundHttp, url: str, payload: dict[str, Any]) -> None:
    """Deliver to a Slack incoming webhook, which answers `200 ok`; else DeliveryError."""
    response = await post_json(http, url, payload, service=SERVICE)
    if response.status_code == 200:
        return
    raise failure(response, service=SERVICE, url=url, detail=short_text(response))
