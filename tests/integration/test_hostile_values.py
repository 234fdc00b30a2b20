"""Values a database cannot store never become a 5xx: NUL characters in alerts are made
storable (a refused alert would be resent forever), and elsewhere they are a 422, as are
ids beyond 64 bits."""

from __future__ import annotations

import json

from app.intake.models import Alert
from tests.support.auth import WEBHOOK_HEADERS, auth
from tests.support.db import all_rows
from tests.support.payloads import am_alert, am_body


async def test_nul_in_an_alert_is_stored_as_a_replacement_character(client, db_url):
    alert = am_alert(labels={"alertname": "Bad\x00Label", "model": "m\x00"},
                     annotations={"summary": "a\x00b"})
    response = await client.post(
        "/webhooks/alertmanager", content=json.dumps(am_body(alert, receiver="r\x00")),
        headers=WEBHOOK_HEADERS)
    assert response.status_code == 200, response.text
    [stored] = await all_rows(db_url, Alert)
    assert stored.labels == {"alertname": "Bad\ufffdLabel", "model": "m\ufffd"}
    assert stored.annotations["summary"] == "a\ufffdb"


async def test_nul_in_api_text_and_huge_ids_are_422(client, tokens):
    rita = {**auth(tokens["rita"]), "Content-Type": "application/json"}
    nul = await client.post("/api/v1/guards/kill-switch", headers=rita,
                            content=json.dumps({"engaged": False, "reason": "a\x00b"}))
    assert nul.status_code in (200, 422)  # SQLite stores it; PostgreSQL cannot: never 5xx
    viewer = auth(tokens["victor"])
    for path in ("/api/v1/executions/9223372036854775808",
                 "/api/v1/executions/9223372036854775808/postmortem",
                 "/api/v1/audit?after=9223372036854775808",
                 "/api/v1/audit?execution_id=-1"):
        assert (await client.get(path, headers=viewer)).status_code == 422, path
    cancel = await client.post("/api/v1/executions/9223372036854775808/cancel", headers=rita)
    assert cancel.status_code == 422


async def test_numbers_the_database_cannot_hold_are_422_not_500(client):
    body = am_body(am_alert(), truncated=257_761_880_243)
    response = await client.post(
        "/webhooks/alertmanager", content=json.dumps(body),
        headers=WEBHOOK_HEADERS)
    assert response.status_code == 422
    assert "truncatedAlerts" in response.json()["error"]["message"]
