"""The catalog over real HTTP (uvicorn) into a real database: reload good and bad, versions,
the read endpoints and simulate."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest

from app.catalog.models import RunbookVersion
from app.catalog.service import CatalogHolder
from app.db import make_engine, make_session_factory, session_scope
from app.engine.guards import set_guard
from app.events import Event
from tests.support.auth import auth
from tests.support.catalog_fixtures import (
    ACTIONS,
    DRIFT_LABELS,
    line_of,
    runbook_text,
    write_catalog,
)
from tests.support.db import all_rows
from tests.support.payloads import am_alert, am_body


@pytest.fixture
def paths(tmp_path):
    return write_catalog(tmp_path / "catalog")


@pytest.fixture
async def api(make_rig, paths) -> AsyncIterator[httpx.AsyncClient]:
    mappings, remediations = paths
    async with make_rig(mappings=mappings, remediations_dir=remediations,
                        worker_enabled=False) as r:
        yield r.http


async def gauge(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not exposed"
    return float(found.group(1))


async def test_reload_good_bad_and_fixed(api, tokens, paths, db_url):
    _, remediations = paths
    viewer, admin = auth(tokens["victor"]), auth(tokens["root"])
    first = (await api.get("/api/v1/runbooks", headers=viewer)).json()
    assert [(r["id"], r["steps"], r["risky_steps"], r["paused"]) for r in first] == [
        ("drift", 2, 1, False)]
    v1 = first[0]["version"]
    assert await gauge(api, "runbookd_config_last_reload_successful") == 1

    bad = runbook_text(replace={"severity: critical": "severity: urgent"})
    (remediations / "drift.yaml").write_text(bad)
    answer = await api.post("/-/reload", headers=admin)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["code"] == "catalog_invalid"
    line = line_of(bad, "severity: urgent")
    assert any(d.endswith(f"drift.yaml:{line}:11: severity: Input should be 'critical', "
                          "'high', 'warning' or 'info'") for d in error["details"])
    # The old catalog stays in force.
    still = (await api.get("/api/v1/runbooks", headers=viewer)).json()
    assert still[0]["version"] == v1
    assert await gauge(api, "runbookd_config_last_reload_successful") == 0

    (remediations / "drift.yaml").write_text(
        runbook_text(replace={"title: Check the drift": "title: Check the drift again"}))
    answer = await api.post("/-/reload", headers=admin)
    assert answer.status_code == 200, answer.text
    summary = answer.json()
    assert (summary["status"], summary["runbooks"], summary["mappings"]) == ("ok", 1, 1)
    v2 = summary["new_versions"][0]["version"]
    assert summary["new_versions"] == [{"runbook_id": "drift", "version": v2}] and v2 != v1
    assert await gauge(api, "runbookd_config_last_reload_successful") == 1
    assert await gauge(api, "runbookd_config_last_reload_success_timestamp_seconds") > 0

    versions = (await api.get("/api/v1/runbooks/drift/versions", headers=viewer)).json()
    assert [(v["version"], v["current"]) for v in versions] == [(v2, True), (v1, False)]
    stored = await all_rows(db_url, RunbookVersion, order_by=RunbookVersion.loaded_at)
    assert [(r.runbook_id, r.version) for r in stored] == [("drift", v1), ("drift", v2)]
    assert stored[1].content["steps"][0]["title"] == "Check the drift again"

    # A reload that changes nothing stores nothing new.
    again = await api.post("/-/reload", headers=admin)
    assert again.json()["new_versions"] == []

    events = [e for e in await all_rows(db_url, Event) if e.kind == "config.reload"]
    assert [(e.entity, e.data["ok"]) for e in events] == [
        ("catalog", True), ("catalog", False), ("catalog", True), ("catalog", True)]
    assert events[0].actor == "system:startup" and events[1].actor == "root"
    assert any("severity" in d for d in events[1].data["errors"])


async def test_reload_needs_an_admin(api, tokens):
    assert (await api.post("/-/reload")).status_code == 401
    assert (await api.post("/-/reload", headers=auth(tokens["victor"]))).status_code == 403
    assert (await api.post("/-/reload", headers=auth(tokens["alice"]))).status_code == 403


async def test_read_endpoints(api, tokens):
    viewer = auth(tokens["victor"])
    assert (await api.get("/api/v1/runbooks")).status_code == 401
    one = await api.get("/api/v1/runbooks/drift", headers=viewer)
    assert one.status_code == 200
    body = one.json()
    assert body["content"]["steps"][1]["approvals"] == {
        "count": 2, "roles": ["approver"], "identities": ["alice"]}
    assert body["content"]["params"]["model"]["from"] == "labels.model"
    assert body["path"].endswith("drift.yaml") and len(body["version"]) == 64
    assert (await api.get("/api/v1/runbooks/nope", headers=viewer)).status_code == 404
    assert (await api.get("/api/v1/runbooks/nope/versions", headers=viewer)).status_code == 404
    assert (await api.get("/api/v1/runbooks/" + "x" * 65, headers=viewer)).status_code == 422

    mappings = (await api.get("/api/v1/mappings", headers=viewer)).json()
    assert mappings == [{"position": 1, "name": "to-drift",
                         "matchers": ['alertname="Drift"', 'severity=~"warning|critical"'],
                         "runbook": "drift", "continue": False, "params": {}}]


async def test_a_paused_runbook_is_listed_as_paused_and_simulates_as_held(api, tokens, db_url):
    engine = make_engine(db_url)
    try:
        async with session_scope(make_session_factory(engine)) as session:
            await set_guard(session, "runbook:drift", engaged=True, actor="test",
                            reason="maintenance")
    finally:
        await engine.dispose()
    viewer = auth(tokens["victor"])
    (listed,) = (await api.get("/api/v1/runbooks", headers=viewer)).json()
    assert (listed["paused"], listed["paused_reason"]) == (True, "runbook paused: maintenance")
    plan = (await api.post("/api/v1/simulate", json={"labels": DRIFT_LABELS},
                           headers=viewer)).json()["results"][0]["runbooks"][0]
    assert [s["decision"] for s in plan["steps"]] == ["held", "held"]


async def test_simulate(api, tokens):
    viewer = auth(tokens["victor"])
    answer = await api.post("/api/v1/simulate", json={"labels": DRIFT_LABELS}, headers=viewer)
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()["results"]
    (plan,) = result["runbooks"]
    assert (plan["runbook"], plan["would_execute"], plan["target"]) == (
        "drift", True, "model:fraud-v3")
    assert [(s["id"], s["decision"]) for s in plan["steps"]] == [
        ("check", "run"), ("change", "needs_approval")]
    assert plan["steps"][1]["with"] == {"message": "rolling back from <output.version of step "
                                                   "check>"}

    body = am_body(am_alert("a" * 16, labels=DRIFT_LABELS),
                   am_alert("b" * 16, labels={**DRIFT_LABELS, "model": "{{ 7*7 }}"}))
    answer = await api.post("/api/v1/simulate", json={"alert": body}, headers=viewer)
    first, second = answer.json()["results"]
    assert first["runbooks"][0]["would_execute"]
    assert not second["runbooks"][0]["would_execute"]
    assert second["alert"]["labels"]["model"] == "{{ 7*7 }}"

    huge = await api.post("/api/v1/simulate", headers=viewer,
                          json={"labels": {**DRIFT_LABELS, "model": "A" * 100_000}})
    assert huge.status_code == 200 and len(huge.content) < 20_000
    assert "100000 characters" in huge.text


@pytest.mark.parametrize("body", [
    {},
    {"labels": {"a": "b"}, "alert": {"alerts": []}},
    {"alert": {"hello": "world"}},
    {"alert": {"alerts": [{"labels": 1}]}},
    {"labels": {"a": 1}},
    {"labels": {"a": "b"}, "extra": True},
])
async def test_simulate_rejects_what_is_not_an_alert(api, tokens, body):
    answer = await api.post("/api/v1/simulate", json=body, headers=auth(tokens["victor"]))
    assert answer.status_code == 422, answer.text


async def test_replicas_reloading_at_once_store_each_version_once(paths, db_url):
    mappings, remediations = paths
    engine = make_engine(db_url)
    try:
        factory = make_session_factory(engine)
        holders = [CatalogHolder(mappings_path=mappings, remediations_dir=remediations,
                                 actions=ACTIONS) for _ in range(3)]
        loaded = await asyncio.gather(*(h.reload(factory, actor="test") for h in holders))
        assert len({c.runbooks["drift"].version for c in loaded}) == 1
    finally:
        await engine.dispose()
    stored = await all_rows(db_url, RunbookVersion, order_by=RunbookVersion.version)
    assert [(r.runbook_id, r.version) for r in stored] == [
        ("drift", loaded[0].runbooks["drift"].version)]
