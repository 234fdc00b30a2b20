"""The outbox sender: delivers notification rows, with retries, never blocking the executor.

Delivery is at least once. A row is claimed by pushing its `next_attempt_at` a lease ahead
and committing, then delivered, then marked `sent`. If the process dies after the receiver
got it but before `sent` committed, the row is delivered again when the lease runs out. The
resend carries the same key: PagerDuty folds it into the same incident (`dedup_key`), and a
generic webhook receives the same `Idempotency-Key`. Slack incoming webhooks have no such key,
so a crash in that window can post one message twice; a lost message is worse at 3 a.m.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app import metrics
from app.config import Settings
from app.db import session_scope, utcnow
from app.notify import outbox, pagerduty, slack_messages, webhook
from app.notify.errors import DeliveryError, NotConfigured
from app.notify.models import FAILED, PENDING, SENT, Notification
from app.notify.retry import deliver_with_retries
from app.outbound import OutboundHttp

log = logging.getLogger(__name__)

CLAIM_LEASE = dt.timedelta(seconds=60)
MAX_ATTEMPTS = 8
_SLACK_KINDS = {"approval_request", "escalation", "failed", "needs_attention", "succeeded",
                "resolved"}
_PD_SEVERITY = {"critical": "critical", "high": "error", "warning": "warning", "info": "info"}

# Given a notification, the URL of its approval page (a signed link), or None.
LinkMaker = Callable[[Notification], Awaitable[str | None]]


class NotificationSender:
    def __init__(
        self, settings: Settings, session_factory: async_sessionmaker[AsyncSession],
        http: OutboundHttp, *, link_maker: LinkMaker | None = None, batch: int = 20,
    ) -> None:
        self.settings = settings
        self.factory = session_factory
        self.http = http
        self.link_maker = link_maker
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="notification-sender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            outbox.pending_signal.clear()
            try:
                while await self.send_due() == self.batch:
                    pass
                await self._update_gauge()
            except Exception:
                log.warning("notification sender: cycle failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(outbox.pending_signal.wait(),
                                       timeout=self.settings.poll_seconds)

    async def send_due(self) -> int:
        """Deliver the notifications that are due; returns how many were tried."""
        now = utcnow()
        async with session_scope(self.factory) as session:
            rows = (await session.execute(
                select(Notification).where(Notification.status == PENDING,
                                           Notification.next_attempt_at <= now)
                .order_by(Notification.id).limit(self.batch).with_for_update(skip_locked=True)
            )).scalars().all()
            for row in rows:
                row.attempts += 1
                row.next_attempt_at = now + CLAIM_LEASE
            claimed = [(row.id, row) for row in rows]
        results = await asyncio.gather(*(self._deliver(row) for _, row in claimed))
        async with session_scope(self.factory) as session:
            for (row_id, row), error in zip(claimed, results, strict=True):
                current = await session.get(Notification, row_id, with_for_update=True)
                if current is None:
                    continue
                if error is None:
                    outbox.move(current, SENT, sent_at=utcnow(), last_error=None)
                elif error.retryable and row.attempts < MAX_ATTEMPTS:
                    outbox.move(current, PENDING, last_error=error.message,
                                next_attempt_at=utcnow() + dt.timedelta(
                                    seconds=min(2 ** row.attempts, 300)))
                else:
                    outbox.move(current, FAILED, last_error=error.message)
                    metrics.notifications_failed.inc()
                    if isinstance(error, NotConfigured):
                        # Said once at start-up; here the message itself goes to the log.
                        log.info("notification %s (%s) not sent to %s, which is not "
                                 "configured: %s", row_id, row.kind, row.channel,
                                 str(row.payload.get("text", ""))[:300])
                    else:
                        log.warning("notification %s to %s failed: %s", row_id, row.channel,
                                    error.message)
        return len(claimed)

    async def _deliver(self, row: Notification) -> DeliveryError | None:
        try:
            await deliver_with_retries(lambda: self._send(row), attempts=3, initial=0.2,
                                       maximum=2.0)
        except DeliveryError as exc:
            return exc
        except Exception as exc:
            return DeliveryError(f"{row.channel}: {type(exc).__name__}: {exc}"[:500],
                                 retryable=False)
        return None

    async def _send(self, row: Notification) -> None:
        kind, _, name = row.channel.partition(":")
        payload = row.payload
        if kind == "slack":
            url = self._secret(f"slack_{name}") or _value(self.settings.slack_webhook_url)
            if not url:
                raise NotConfigured("Slack: no webhook URL configured (RUNBOOKD_SLACK_WEBHOOK_URL"
                                    f" or RUNBOOKD_SECRETS slack_{name})")
            approve_url = await self.link_maker(row) if (
                self.link_maker and row.kind == "approval_request") else None
            message = slack_messages.build_message(
                row.kind if row.kind in _SLACK_KINDS else "info",
                title=f"{payload.get('runbook_title', '')} on {payload.get('target', '')}",
                execution_id=row.execution_id, runbook=payload.get("runbook"),
                status=payload.get("status"), step_id=payload.get("step_id"),
                step_title=payload.get("step_title"), details=payload.get("text"),
                approve_url=approve_url, execution_url=self._execution_url(row),
                plan=payload.get("plan"), plan_hash=payload.get("step_hash"),
                feedback=bool(payload.get("feedback")),
            )
            await slack_messages.post_incoming_webhook(self.http, url, message)
        elif kind == "pagerduty":
            key = self._secret(f"pagerduty_{name}") or _value(self.settings.pagerduty_routing_key)
            if not key:
                raise DeliveryError("PagerDuty: no routing key configured "
                                    "(RUNBOOKD_PAGERDUTY_ROUTING_KEY)", retryable=False)
            event = pagerduty.build_event(
                "trigger", routing_key=key, dedup_key=f"runbookd-{row.execution_id}",
                summary=f"runbookd: {payload.get('text', row.kind)}"[:1024],
                source=f"runbookd/{payload.get('runbook', '')}",
                severity=_PD_SEVERITY.get(payload.get("severity", ""), "error"),  # type: ignore[arg-type]
                custom_details={k: v for k, v in payload.items() if k != "params"},
                client_url=self._execution_url(row),
            )
            await pagerduty.send_event(self.http, self.settings.pagerduty_events_url, event)
        elif kind == "webhook":
            url = self._secret(f"webhook_{name}") or self.settings.notify_webhook_url
            if not url:
                raise DeliveryError("webhook: no URL configured (RUNBOOKD_NOTIFY_WEBHOOK_URL)",
                                    retryable=False)
            await webhook.send_webhook(self.http, url, {**payload, "channel": row.channel},
                                       idempotency_key=row.dedup_key)
        else:
            raise DeliveryError(f"unknown channel kind {kind!r} in {row.channel!r}",
                                retryable=False)

    def _secret(self, name: str) -> str | None:
        return _value(self.settings.secrets.get(name))

    def _execution_url(self, row: Notification) -> str | None:
        if row.execution_id is None:
            return None
        return f"{self.settings.public_url.rstrip('/')}/executions/{row.execution_id}"

    async def _update_gauge(self) -> None:
        async with session_scope(self.factory) as session:
            pending = (await session.execute(
                select(func.count()).select_from(Notification)
                .where(Notification.status == PENDING))).scalar_one()
        metrics.notifications_pending.set(pending)


def _value(secret: Any) -> str | None:
    return secret.get_secret_value() if secret is not None else None
