"""`notify.slack`, `notify.webhook`, `pagerduty.trigger` and `pagerduty.resolve` as runbook steps.

Destinations come from settings, by name: a runbook names a secret (`webhook_secret`,
`url_secret`, `routing_key_secret`) or relies on the default setting, and never holds a URL
or a key itself. PagerDuty events use the dedup key `runbookd-<execution id>`, so a trigger
and its resolve meet on one incident and a repeated trigger does not open a second one.

Their plans say where a message goes, as a host and the name of the secret or setting that
holds the destination (never a URL path or a key), and what it says.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.actions._support import json_sha256, secret_value
from app.actions.base import (
    ActionContext,
    ActionFailed,
    ActionParams,
    ActionPlan,
    ActionResult,
)
from app.notify.errors import DeliveryError
from app.notify.pagerduty import Severity, build_event, send_event
from app.notify.retry import deliver_with_retries
from app.notify.slack_messages import build_message, post_incoming_webhook
from app.notify.transport import host_of
from app.notify.webhook import send_webhook

Attempts = Annotated[int, Field(ge=1, le=10)]


def execution_url(ctx: ActionContext) -> str | None:
    """The page of this execution, for links in messages."""
    if ctx.execution_id is None:
        return None
    return f"{ctx.settings.public_url.rstrip('/')}/executions/{ctx.execution_id}"


def _configured(ctx: ActionContext, secret_name: str | None, default: Any, *,
                setting: str) -> str:
    """A destination from a named secret, else from its default setting."""
    if secret_name:
        return secret_value(ctx, secret_name)
    value = default.get_secret_value() if hasattr(default, "get_secret_value") else default
    if not value:
        raise ActionFailed(f"no destination configured: set {setting} or name a secret")
    return str(value)


def _where(url: str, secret_name: str | None, *, setting: str) -> dict[str, str]:
    """A destination as a plan may show it: its host, and which secret or setting names it."""
    return {"host": host_of(url), "via": f"secret {secret_name}" if secret_name else setting}


def _quoted(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


async def _deliver(fn: Any, attempts: int) -> Any:
    try:
        return await deliver_with_retries(fn, attempts=attempts)
    except DeliveryError as exc:
        tried = f" (after {attempts} attempt(s))" if exc.retryable else ""
        raise ActionFailed(f"{exc.message}{tried}", output={"status": exc.status}) from None


class SlackParams(ActionParams):
    text: str = Field(min_length=1, max_length=2900)
    title: str | None = Field(default=None, max_length=150)
    kind: Literal["info", "started", "succeeded", "failed", "needs_attention", "escalation",
                  "resolved"] = "info"
    webhook_secret: str | None = None
    attempts: Attempts = 3


class NotifySlack:
    name: ClassVar[str] = "notify.slack"
    Params = SlackParams
    idempotent: ClassVar[bool] = False  # a second post is a second message
    description: ClassVar[str] = "Posts a message to a Slack incoming webhook (from settings)."

    async def plan(self, ctx: ActionContext, params: SlackParams) -> ActionPlan:
        """Which webhook (host only) gets which message."""
        url = _configured(ctx, params.webhook_secret, ctx.settings.slack_webhook_url,
                          setting="RUNBOOKD_SLACK_WEBHOOK_URL")
        where = _where(url, params.webhook_secret, setting="RUNBOOKD_SLACK_WEBHOOK_URL")
        title = params.title or f"runbookd execution #{ctx.execution_id}"
        return ActionPlan(
            summary=f"post a {params.kind} message to the Slack webhook at {where['host']} "
                    f"({where['via']}): {_quoted(params.text)}",
            resolved={**where, "kind": params.kind, "title": title,
                      "text_sha256": json_sha256(params.text)})

    async def run(self, ctx: ActionContext, params: SlackParams) -> ActionResult:
        url = _configured(ctx, params.webhook_secret, ctx.settings.slack_webhook_url,
                          setting="RUNBOOKD_SLACK_WEBHOOK_URL")
        title = params.title or f"runbookd execution #{ctx.execution_id}"
        payload = build_message(params.kind, title=title, execution_id=ctx.execution_id,
                                step_id=ctx.step_id, details=params.text,
                                execution_url=execution_url(ctx))
        where = f"Slack webhook at {host_of(url)}"
        if ctx.dry_run:
            return ActionResult(f"would post a message ({params.kind}) to the {where}: "
                                f"{params.text[:200]!r}", {"blocks": len(payload["blocks"])})
        await _deliver(lambda: post_incoming_webhook(ctx.http, url, payload), params.attempts)
        return ActionResult(f"posted a message ({params.kind}) to the {where}",
                            {"blocks": len(payload["blocks"])})


class WebhookParams(ActionParams):
    # The JSON body, as the receiver expects it.
    payload: dict[str, Any]
    url_secret: str | None = None
    attempts: Attempts = 3


class NotifyWebhook:
    name: ClassVar[str] = "notify.webhook"
    Params = WebhookParams
    # The Idempotency-Key is the same for every run of this step, so a receiver that honours
    # it sees one delivery.
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = (
        "POSTs a JSON body to the configured webhook with an Idempotency-Key per step."
    )

    async def plan(self, ctx: ActionContext, params: WebhookParams) -> ActionPlan:
        """Which webhook (host only) gets which payload."""
        url = _configured(ctx, params.url_secret, ctx.settings.notify_webhook_url,
                          setting="RUNBOOKD_NOTIFY_WEBHOOK_URL")
        where = _where(url, params.url_secret, setting="RUNBOOKD_NOTIFY_WEBHOOK_URL")
        fields = ", ".join(sorted(params.payload)[:8])
        more = ", …" if len(params.payload) > 8 else ""
        return ActionPlan(
            summary=f"POST a JSON payload ({len(params.payload)} field(s): {fields}{more}) to "
                    f"the webhook at {where['host']} ({where['via']})",
            resolved={**where, "payload_sha256": json_sha256(params.payload)})

    async def run(self, ctx: ActionContext, params: WebhookParams) -> ActionResult:
        url = _configured(ctx, params.url_secret, ctx.settings.notify_webhook_url,
                          setting="RUNBOOKD_NOTIFY_WEBHOOK_URL")
        key = (f"runbookd-{ctx.execution_id}-{ctx.step_id}" if ctx.execution_id is not None
               else f"runbookd-adhoc-{uuid.uuid4().hex}")
        where = f"webhook at {host_of(url)}"
        if ctx.dry_run:
            return ActionResult(f"would POST {len(params.payload)} field(s) to the {where} "
                                f"with Idempotency-Key {key}", {"idempotency_key": key})
        headers = {"X-Runbookd-Execution": str(ctx.execution_id)}
        response = await _deliver(
            lambda: send_webhook(ctx.http, url, params.payload, idempotency_key=key,
                                 headers=headers), params.attempts)
        return ActionResult(f"delivered to the {where} ({response.status_code})",
                            {"status": response.status_code, "idempotency_key": key})


class Link(BaseModel):
    model_config = ConfigDict(extra="forbid")
    href: str = Field(pattern=r"^https?://", max_length=2048)
    text: str = Field(default="", max_length=200)


class TriggerParams(ActionParams):
    summary: str = Field(min_length=1, max_length=1024)
    severity: Severity = "error"
    source: str = Field(default="runbookd", min_length=1, max_length=255)
    component: str | None = Field(default=None, max_length=255)
    group: str | None = Field(default=None, max_length=255)
    class_: str | None = Field(default=None, alias="class", max_length=255)
    custom_details: dict[str, Any] = Field(default_factory=dict)
    links: list[Link] = Field(default_factory=list, max_length=10)
    routing_key_secret: str | None = None
    attempts: Attempts = 3

    model_config = ConfigDict(populate_by_name=True)


class ResolveParams(ActionParams):
    routing_key_secret: str | None = None
    attempts: Attempts = 3


def _dedup_key(ctx: ActionContext) -> str:
    if ctx.execution_id is None:
        if ctx.dry_run:
            return "runbookd-<execution id>"
        raise ActionFailed("PagerDuty events need an execution id for their dedup key")
    return f"runbookd-{ctx.execution_id}"


class PagerdutyTrigger:
    name: ClassVar[str] = "pagerduty.trigger"
    Params = TriggerParams
    # PagerDuty merges events with one dedup key into one incident.
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Triggers a PagerDuty incident (Events API v2) with dedup key runbookd-<execution id>."
    )

    async def plan(self, ctx: ActionContext, params: TriggerParams) -> ActionPlan:
        """Which incident is triggered, how severe, and where (host only, never the key)."""
        where = _pagerduty(ctx, params.routing_key_secret)
        dedup_key = _dedup_key(ctx)
        return ActionPlan(
            summary=f"trigger PagerDuty incident {dedup_key} ({params.severity}): "
                    f"{_quoted(params.summary)} via {where['host']} ({where['via']})",
            resolved={**where, "event_action": "trigger", "dedup_key": dedup_key,
                      "severity": params.severity, "summary": params.summary})

    async def run(self, ctx: ActionContext, params: TriggerParams) -> ActionResult:
        routing_key = _configured(ctx, params.routing_key_secret,
                                  ctx.settings.pagerduty_routing_key,
                                  setting="RUNBOOKD_PAGERDUTY_ROUTING_KEY")
        dedup_key = _dedup_key(ctx)
        links = [link.model_dump() for link in params.links]
        if (url := execution_url(ctx)) is not None:
            links.append({"href": url, "text": "runbookd execution"})
        event = build_event("trigger", routing_key=routing_key, dedup_key=dedup_key,
                            summary=params.summary, source=params.source,
                            severity=params.severity, custom_details=params.custom_details,
                            links=links, component=params.component, group=params.group,
                            class_=params.class_, client_url=execution_url(ctx))
        return await _send(ctx, event, params.attempts, verb="trigger",
                           detail=f"{params.severity} {params.summary[:200]!r}")


class PagerdutyResolve:
    name: ClassVar[str] = "pagerduty.resolve"
    Params = ResolveParams
    idempotent: ClassVar[bool] = True
    description: ClassVar[str] = "Resolves the PagerDuty incident of this execution."

    async def plan(self, ctx: ActionContext, params: ResolveParams) -> ActionPlan:
        """Which incident is resolved, and where (host only, never the key)."""
        where = _pagerduty(ctx, params.routing_key_secret)
        dedup_key = _dedup_key(ctx)
        return ActionPlan(
            summary=f"resolve PagerDuty incident {dedup_key} via {where['host']} "
                    f"({where['via']})",
            resolved={**where, "event_action": "resolve", "dedup_key": dedup_key})

    async def run(self, ctx: ActionContext, params: ResolveParams) -> ActionResult:
        routing_key = _configured(ctx, params.routing_key_secret,
                                  ctx.settings.pagerduty_routing_key,
                                  setting="RUNBOOKD_PAGERDUTY_ROUTING_KEY")
        event = build_event("resolve", routing_key=routing_key, dedup_key=_dedup_key(ctx))
        return await _send(ctx, event, params.attempts, verb="resolve", detail="")


def _pagerduty(ctx: ActionContext, routing_key_secret: str | None) -> dict[str, str]:
    """Where events go, once a routing key is configured (the key itself is not kept)."""
    _configured(ctx, routing_key_secret, ctx.settings.pagerduty_routing_key,
                setting="RUNBOOKD_PAGERDUTY_ROUTING_KEY")
    return _where(ctx.settings.pagerduty_events_url, routing_key_secret,
                  setting="RUNBOOKD_PAGERDUTY_ROUTING_KEY")


async def _send(ctx: ActionContext, event: dict[str, Any], attempts: int, *, verb: str,
                detail: str) -> ActionResult:
    url = ctx.settings.pagerduty_events_url
    dedup_key = event["dedup_key"]
    shown = f"PagerDuty incident {dedup_key}" + (f": {detail}" if detail else "")
    if ctx.dry_run:
        return ActionResult(f"would {verb} {shown} (via {host_of(url)})",
                            {"dedup_key": dedup_key})
    answered = await _deliver(lambda: send_event(ctx.http, url, event), attempts)
    done = {"trigger": "triggered", "resolve": "resolved"}[verb]
    return ActionResult(f"{done} {shown}", {"dedup_key": answered, "event_action": verb})
