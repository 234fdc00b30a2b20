"""Webhook bodies as the real senders write them, and their signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

GO_ZERO = "0001-01-01T00:00:00Z"


def am_alert(
    fingerprint: str = "a1b2c3d4e5f60708", *, status: str = "firing",
    labels: dict[str, str] | None = None, starts_at: str = "2026-11-26T06:00:00.123456789Z",
    ends_at: str = GO_ZERO, annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": labels or {"alertname": "ModelDrift", "model": "fraud-v3",
                             "env": "production", "severity": "critical"},
        "annotations": annotations or {"summary": "drift on fraud-v3"},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus:9090/graph?g0.expr=drift",
        "fingerprint": fingerprint,
    }


def am_body(*alerts: dict[str, Any], truncated: int = 0, receiver: str = "runbookd",
            **extra: Any) -> dict[str, Any]:
    alerts = alerts or (am_alert(),)
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    body = {
        "receiver": receiver, "status": status, "alerts": list(alerts),
        "groupLabels": {"alertname": alerts[0]["labels"].get("alertname", "")},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am:9093",
        "version": "4", "groupKey": '{}:{alertname="ModelDrift"}', "truncatedAlerts": truncated,
    }
    body.update(extra)
    return body


def go_json(body: dict[str, Any]) -> bytes:
    """JSON as Go's encoder writes it: `&` as \\u0026 and a trailing newline."""
    return (json.dumps(body, separators=(",", ":")).replace("&", "\\u0026") + "\n").encode()


def pd_event(
    event_type: str = "incident.triggered", *, incident_id: str = "PGR0VU2",
    occurred_at: str = "2026-11-26T06:00:00.000Z", event_id: str | None = None,
    title: str = "Model fraud-v3 drifting",
) -> dict[str, Any]:
    status = {"incident.resolved": "resolved",
              "incident.acknowledged": "acknowledged"}.get(event_type, "triggered")
    return {"event": {
        "id": event_id or str(uuid.uuid4()), "event_type": event_type,
        "resource_type": "incident", "occurred_at": occurred_at,
        "agent": {"id": "PLH1HKV", "type": "user_reference"}, "client": None,
        "data": {
            "id": incident_id, "type": "incident", "number": 42, "status": status,
            "incident_key": "fraud-v3-drift", "title": title,
            "created_at": "2026-11-26T05:59:00Z", "urgency": "high",
            "service": {"id": "PF9KMXH", "type": "service_reference", "summary": "ml-serving"},
            "priority": {"summary": "P1"}, "html_url": "https://acme.pagerduty.com/incidents/x",
        },
    }}


def pd_signature(body: bytes, *secrets: str) -> str:
    return ",".join(
        "v1=" + hmac.new(s.encode(), body, hashlib.sha256).hexdigest() for s in secrets
    )


def grafana_body(**extra: Any) -> dict[str, Any]:
    alert = am_alert("b1b2c3d4e5f60709", labels={"alertname": "LatencyHigh", "model": "rank-v2"})
    alert.update({"values": {"B": 0.93}, "valueString": "[ var='B' value=0.93 ]",
                  "silenceURL": "http://grafana/silence", "dashboardURL": "",
                  "panelURL": "", "imageURL": ""})
    body = am_body(alert, version="1", orgId=1, title="[FIRING:1] LatencyHigh",
                   state="alerting", message="latency high")
    body.update(extra)
    return body
