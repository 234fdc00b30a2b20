"""Envelopes for tests that hand deliveries to the intake's writer directly (no HTTP)."""

from __future__ import annotations

from typing import Any

from app.db import utcnow
from app.intake.normalize import Envelope, from_alertmanager
from app.intake.schemas import AlertmanagerWebhook
from tests.support.payloads import am_alert, am_body


def am_envelope(*alerts: dict[str, Any], **body: Any) -> Envelope:
    """An Alertmanager delivery of `alerts` (see payloads.am_alert) as the receiver makes it."""
    parsed = AlertmanagerWebhook.model_validate(am_body(*alerts, **body))
    return from_alertmanager(parsed, source="alertmanager", received_at=utcnow(),
                             remote_addr="127.0.0.1")


def quiet_envelope(*fingerprints: str, receiver: str = "runbookd") -> Envelope:
    """A delivery of alerts named Quiet (no runbook handles them), one per fingerprint."""
    return am_envelope(*(am_alert(fp, labels={"alertname": "Quiet", "n": fp})
                         for fp in fingerprints), receiver=receiver)
