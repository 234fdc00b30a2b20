"""Intake over real HTTP into a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest
import yaml

from app.intake.models import Alert, Delivery
from tests.support.auth import WEBHOOK_HEADERS, WEBHOOK_TOKEN, auth
from tests.support.db import all_rows
from tests.support.payloads import (
    am_alert,
    am_body,
    go_json,
    grafana_body,
    pd_event,
    pd_signature,
)


async def post_am(client: httpx.AsyncClient, body: dict, **kw) -> httpx.Response:
    return await client.post("/webhooks/alertmanager", content=go_json(body),
                             headers=kw.pop("headers", WEBHOOK_HEADERS), **kw)


async def test_firing_then_resolved_is_one_alert_with_a_status_change(client, db_url):
    first = await post_am(client, am_body(am_alert()))
    assert first.status_code == 200
    assert first.json()["alerts"] == {"received": 1, "new": 1, "changed": 0, "duplicate": 0}

    resolved = am_alert(status="resolved", ends_at="2026-11-26T06:10:00Z")
    second = await post_am(client, am_body(resolved))
    assert second.json()["alerts"]["changed"] == 1

    alerts = await all_rows(db_url, Alert)
    assert len(alerts) == 1
    assert alerts[0].status == "resolved"
    assert alerts[0].ends_at.isoformat() == "2026-11-26T06:10:00+00:00"
    # Go's \u0026 arrived as "&" and the zero endsAt of the firing was read as "no end".
    assert alerts[0].labels["alertname"] == "ModelDrift"


async def test_redelivery_adds_nothing(client, db_url):
    body = am_body(am_alert("1111111111111111"), am_alert("2222222222222222"))
    for _ in range(3):
        assert (await post_am(client, body)).status_code == 200
    alerts = await all_rows(db_url, Alert)
    deliveries = await all_rows(db_url, Delivery)
    assert len(alerts) == 2
    assert [d.alerts_new for d in deliveries] == [2, 0, 0]
    assert [d.alerts_duplicate for d in deliveries] == [0, 2, 2]


async def test_stale_firing_after_resolved_does_not_reopen(client, db_url):
    await post_am(client, am_body(am_alert(status="resolved", ends_at="2026-11-26T06:10:00Z")))
    late = await post_am(client, am_body(am_alert()))
    assert late.json()["alerts"]["duplicate"] == 1
    [alert] = await all_rows(db_url, Alert)
    assert alert.status == "resolved"


async def test_a_new_starts_at_is_a_new_occurrence(client, db_url):
    await post_am(client, am_body(am_alert(status="resolved", ends_at="2026-11-26T06:10:00Z")))
    refire = await post_am(client, am_body(am_alert(starts_at="2026-11-26T07:00:00Z")))
    assert refire.json()["alerts"]["new"] == 1
    assert [a.status for a in await all_rows(db_url, Alert)] == ["resolved", "firing"]


async def test_truncated_group_is_recorded(client, db_url):
    response = await post_am(client, am_body(am_alert(), truncated=7))
    assert response.json()["truncated_alerts"] == 7
    [delivery] = await all_rows(db_url, Delivery)
    assert delivery.truncated_alerts == 7
    assert delivery.group_key == '{}:{alertname="ModelDrift"}'


async def test_unknown_fields_are_accepted(client):
    body = am_body(am_alert(), notification_reason="repeat", routeLabels={"team": "ml"})
    body["alerts"][0]["newField"] = {"nested": True}
    assert (await post_am(client, body)).status_code == 200


async def test_concurrent_deliveries_are_all_stored(client, db_url):
    """Group commit under concurrency: every 2xx is a committed row."""
    bodies = [am_body(am_alert(f"{i:016x}")) for i in range(120)]
    answers = await asyncio.gather(*(post_am(client, b) for b in bodies))
    assert all(a.status_code == 200 for a in answers)
    assert len(await all_rows(db_url, Alert)) == 120
    assert sum(d.alerts_new for d in await all_rows(db_url, Delivery)) == 120


async def test_ha_pair_sending_the_same_group_at_once_stores_it_once(client, db_url):
    body = am_body(am_alert("abcdefabcdefabcd"))
    answers = await asyncio.gather(*(post_am(client, body) for _ in range(20)))
    assert all(a.status_code == 200 for a in answers)
    assert sum(a.json()["alerts"]["new"] for a in answers) == 1
    assert len(await all_rows(db_url, Alert)) == 1


@pytest.mark.parametrize(("headers", "scheme"), [
    ({}, "Bearer"),
    ({"Authorization": "Bearer wrong-token"}, "Bearer"),
    ({"Authorization": "Basic d3Jvbmc6cGFzcw=="}, "Basic"),
    ({"Authorization": "Basic not base64!!"}, "Basic"),
    ({"Authorization": "Token abc"}, "Bearer"),
])
async def test_bad_credentials_get_401_with_challenge_and_store_nothing(
    client, db_url, headers, scheme,
):
    response = await post_am(client, am_body(), headers={"Content-Type": "application/json",
                                                          **headers})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith(scheme)
    assert WEBHOOK_TOKEN not in response.text
    assert await all_rows(db_url, Alert) == []


async def test_basic_auth(make_rig):
    async with make_rig(webhook_tokens=[], webhook_basic_auth=["am:s3cret-pass"]) as r:
        ok = await post_am(r.http, am_body(), headers={"Content-Type": "application/json"},
                           auth=("am", "s3cret-pass"))
        bad = await post_am(r.http, am_body(), headers={"Content-Type": "application/json"},
                            auth=("am", "wrong"))
    assert ok.status_code == 200
    assert bad.status_code == 401


async def test_malformed_json_is_400(client, db_url):
    response = await client.post("/webhooks/alertmanager", content=b'{"alerts": [',
                                 headers=WEBHOOK_HEADERS)
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["error"]["message"]
    assert await all_rows(db_url, Delivery) == []


async def test_schema_error_is_422_naming_the_field(client, db_url):
    body = am_body(am_alert())
    del body["alerts"][0]["fingerprint"]
    body["alerts"][0]["startsAt"] = "yesterday"
    response = await post_am(client, body)
    assert response.status_code == 422
    error = response.json()["error"]
    fields = {d["field"] for d in error["details"]}
    assert {"alerts.0.fingerprint", "alerts.0.startsAt"} <= fields
    assert "alerts.0.fingerprint" in error["message"]
    assert await all_rows(db_url, Alert) == []


async def test_wrong_content_type_is_415(client):
    response = await client.post("/webhooks/alertmanager", content=go_json(am_body()),
                                 headers={**auth(WEBHOOK_TOKEN), "Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


async def test_declared_oversized_body_is_413(make_rig):
    async with make_rig(max_body_bytes=4096) as r:
        big = am_body(am_alert(annotations={"blob": "x" * 10_000}))
        response = await post_am(r.http, big)
    assert response.status_code == 413
    assert "RUNBOOKD_MAX_BODY_BYTES" in response.json()["error"]["message"]


async def test_chunked_oversized_body_is_413_without_reading_it_all(make_rig):
    """A chunked body with no Content-Length: the answer comes while the body is unfinished."""
    async with make_rig(max_body_bytes=4096) as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.server.port)
        writer.write(
            b"POST /webhooks/alertmanager HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
            + f"Authorization: Bearer {WEBHOOK_TOKEN}\r\n\r\n".encode()
        )
        for _ in range(8):  # 8 KiB, twice the limit, and never the final empty chunk
            writer.write(b"400\r\n" + b" " * 1024 + b"\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        writer.close()
    assert b" 413 " in status_line


async def test_pagerduty_signature_rotation_and_dedup(make_rig, db_url):
    body = json.dumps(pd_event(event_id="01ABC")).encode()
    async with make_rig(pagerduty_secrets=["old-secret-123456", "new-secret-654321"]) as r:
        async def send(raw: bytes, signature: str, webhook_id: str = "wh-1"):
            return await r.http.post("/webhooks/pagerduty", content=raw, headers={
                "Content-Type": "application/json", "X-PagerDuty-Signature": signature,
                "X-Webhook-Id": webhook_id})

        # During rotation PagerDuty signs with both; one unknown signature must not hurt.
        rotating = pd_signature(body, "some-other-secret", "new-secret-654321")
        assert (await send(body, rotating)).status_code == 200
        again = await send(body, pd_signature(body, "old-secret-123456"))
        assert again.status_code == 200
        assert again.json()["status"] == "duplicate_delivery"

        forged = await send(body, pd_signature(body, "attacker-secret"), "wh-2")
        assert forged.status_code == 401
        tampered = body.replace(b"fraud-v3", b"fraud-v4")
        assert (await send(tampered, pd_signature(body, "new-secret-654321"),
                           "wh-3")).status_code == 401
        assert (await send(body, "", "wh-4")).status_code == 401

    [alert] = await all_rows(db_url, Alert)
    assert alert.source == "pagerduty"
    assert alert.fingerprint == "PGR0VU2"
    assert alert.status == "firing"
    assert len(await all_rows(db_url, Delivery)) == 1


async def test_pagerduty_lifecycle_orders_by_occurred_at(make_rig, db_url):
    secret = "pd-secret-abcdef12"
    events = [
        pd_event("incident.triggered", occurred_at="2026-11-26T06:00:00Z"),
        pd_event("incident.resolved", occurred_at="2026-11-26T06:20:00Z"),
        pd_event("incident.acknowledged", occurred_at="2026-11-26T06:05:00Z"),  # late
        pd_event("incident.annotated", occurred_at="2026-11-26T06:21:00Z"),
        pd_event("incident.reopened", occurred_at="2026-11-26T06:30:00Z"),
    ]
    statuses = []
    async with make_rig(pagerduty_secrets=[secret]) as r:
        for event in events:
            raw = json.dumps(event).encode()
            response = await r.http.post("/webhooks/pagerduty", content=raw, headers={
                "Content-Type": "application/json",
                "X-PagerDuty-Signature": pd_signature(raw, secret)})
            assert response.status_code == 200
            statuses.append((await all_rows(db_url, Alert))[0].status)
    assert statuses == ["firing", "resolved", "resolved", "resolved", "firing"]
    deliveries = await all_rows(db_url, Delivery)
    assert [d.event_type for d in deliveries][3] == "incident.annotated"
    assert deliveries[3].alerts_total == 0


async def test_grafana_with_and_without_signature(make_rig, db_url):
    import hashlib
    import hmac

    secret = "grafana-secret-42x"
    raw = json.dumps(grafana_body()).encode()
    ts = str(int(time.time()))  # a signed timestamp must be within 5 minutes of now
    good = hmac.new(secret.encode(), ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
    async with make_rig(grafana_secret=secret,
                        grafana_timestamp_header="X-Grafana-Alerting-Timestamp") as r:
        headers = {"Content-Type": "application/json", "X-Grafana-Alerting-Timestamp": ts}
        ok = await r.http.post("/webhooks/grafana", content=raw,
                               headers={**headers, "X-Grafana-Alerting-Signature": good})
        bad = await r.http.post("/webhooks/grafana", content=raw,
                                headers={**headers, "X-Grafana-Alerting-Signature": "00" * 32})
        missing = await r.http.post("/webhooks/grafana", content=raw, headers=headers)
    assert ok.status_code == 200, ok.text
    assert (bad.status_code, missing.status_code) == (401, 401)
    [alert] = await all_rows(db_url, Alert)
    assert (alert.source, alert.alertname) == ("grafana", "LatencyHigh")


async def test_grafana_without_secret_uses_bearer(client):
    response = await client.post("/webhooks/grafana", content=json.dumps(grafana_body()),
                                 headers=WEBHOOK_HEADERS)
    assert response.status_code == 200
    anonymous = await client.post("/webhooks/grafana", content=json.dumps(grafana_body()),
                                  headers={"Content-Type": "application/json"})
    assert anonymous.status_code == 401


async def test_health_ready_and_metrics(client):
    await post_am(client, am_body())
    assert (await client.get("/-/healthy")).json() == {"status": "ok"}
    assert (await client.get("/-/ready")).status_code == 200
    text = (await client.get("/metrics")).text
    assert 'runbookd_webhook_requests_total{code="200",source="alertmanager"}' in text
    assert 'runbookd_alerts_received_total{source="alertmanager",status="firing"}' in text
    assert "runbookd_webhook_duration_seconds_bucket" in text


async def test_secrets_never_appear_in_logs(client, caplog):
    caplog.set_level("DEBUG")
    await post_am(client, am_body(), headers={**WEBHOOK_HEADERS, "Authorization": "Bearer nope"})
    await post_am(client, am_body())
    assert WEBHOOK_TOKEN not in caplog.text
    assert "nope" not in caplog.text


async def test_alerts_api_filters_pages_and_needs_a_token(client, tokens):
    for i in range(5):
        labels = {"alertname": "ModelDrift" if i % 2 else "LatencyHigh", "model": f"m{i}"}
        await post_am(client, am_body(am_alert(f"{i:016x}", labels=labels)))
    await post_am(client, am_body(am_alert("0000000000000001", status="resolved",
                                           labels={"alertname": "ModelDrift", "model": "m1"},
                                           ends_at="2026-11-26T06:30:00Z")))
    viewer = auth(tokens["victor"])
    assert (await client.get("/api/v1/alerts")).status_code == 401
    everything = (await client.get("/api/v1/alerts", headers=viewer)).json()
    assert [a["fingerprint"][-1] for a in everything["items"]] == ["4", "3", "2", "1", "0"]
    drift = (await client.get("/api/v1/alerts", params={"label": "alertname=ModelDrift"},
                              headers=viewer)).json()
    assert {a["labels"]["model"] for a in drift["items"]} == {"m1", "m3"}
    resolved = (await client.get("/api/v1/alerts", params={"status": "resolved"},
                                 headers=viewer)).json()
    assert [a["labels"]["model"] for a in resolved["items"]] == ["m1"]
    page = (await client.get("/api/v1/alerts", params={"limit": 2}, headers=viewer)).json()
    rest = (await client.get("/api/v1/alerts", params={"limit": 10,
                                                        "cursor": page["next_cursor"]},
                             headers=viewer)).json()
    assert len(page["items"]) == 2 and len(rest["items"]) == 3 and rest["next_cursor"] is None
    future = (await client.get("/api/v1/alerts", params={"since": "2999-01-01T00:00:00"},
                               headers=viewer)).json()
    assert future["items"] == []
    bad = await client.get("/api/v1/alerts", params={"label": "not a label"}, headers=viewer)
    assert bad.status_code == 422 and "name=value" in bad.json()["error"]["message"]


async def test_api_tokens_are_added_and_revoked_without_a_restart(client, tokens, tokens_file):
    from app.identity import create_token

    assert (await client.get("/api/v1/alerts", headers=auth(tokens["victor"]))).status_code == 200
    new = create_token(tokens_file, "nina", ["viewer"])
    assert (await client.get("/api/v1/alerts", headers=auth(new))).status_code == 200

    entries = [e for e in yaml.safe_load(tokens_file.read_text()) if e["name"] != "victor"]
    tokens_file.write_text(yaml.safe_dump(entries))
    assert (await client.get("/api/v1/alerts", headers=auth(tokens["victor"]))).status_code == 401

    # A half-written file keeps the identities loaded last instead of locking everyone out.
    tokens_file.write_text("- {name: broken")
    assert (await client.get("/api/v1/alerts", headers=auth(new))).status_code == 200
    assert (await client.get("/api/v1/alerts", headers=auth(tokens["victor"]))).status_code == 401
