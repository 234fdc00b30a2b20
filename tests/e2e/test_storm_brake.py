"""The storm brake end to end (issue 16): a real Alertmanager sends 20 alerts for 20 models and
the global brake (5 targets within 10m) lets exactly 5 executions run and holds 15; a release
runs them, an abort cancels them. The guards page shows the brake in Chromium, with a
screenshot under test-artifacts/screenshots/issue16-storm-brake.png (git-ignored)."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.engine.brake_models import BrakeVerdict
from tests.support.alertmanager import now_utc, run_alertmanager
from tests.support.auth import WEBHOOK_TOKEN
from tests.support.binaries import need_binary
from tests.support.engine_catalog import runbook, step, write_catalog
from tests.support.web import launched_chromium, screenshot, signed_in_page

pytestmark = pytest.mark.e2e

MODELS = [f"ranker-{n:02d}" for n in range(20)]


def storm_catalog(root: Path) -> dict[str, Path]:
    """A rollback runbook and a global brake of 5 targets within 10 minutes."""
    mappings, remediations = write_catalog(root, [runbook(
        "model-rollback", [step("roll-back")],
        escalation=[{"after": "5m", "notify": ["slack:#ml-oncall"]}])])
    doc = yaml.safe_load(mappings.read_text())
    doc["brake"] = {"targets": 5, "within": "10m"}
    mappings.write_text(yaml.safe_dump(doc))
    return {"mappings": mappings, "remediations_dir": remediations}


def settled(rows: list[Any]) -> bool:
    return len(rows) == len(MODELS) and all(e.status in ("succeeded", "paused") for e in rows)


@pytest.mark.parametrize("verb", ["release", "abort"])
async def test_twenty_alerts_through_alertmanager_run_five_and_hold_fifteen(
        make_rig, tmp_path: Path, verb: str) -> None:
    binary = need_binary("prometheus-alertmanager")
    async with make_rig(**storm_catalog(tmp_path / "catalog")) as r, run_alertmanager(
            binary, tmp_path / "alertmanager", webhook_url=f"{r.server.url}/webhooks/alertmanager",
            token=WEBHOOK_TOKEN, group_by=["model"]) as am:
        start = now_utc() - dt.timedelta(seconds=5)
        await am.post([{"labels": {"alertname": "model-rollback", "model": model,
                                   "severity": "critical"},
                        "annotations": {"summary": "error rate high"},
                        "startsAt": start.isoformat().replace("+00:00", "Z")}
                       for model in MODELS])
        rows = await r.wait_for(settled, timeout=60)
        ran = [e for e in rows if e.status == "succeeded"]
        held = [e for e in rows if e.status == "paused"]
        assert (len(ran), len(held)) == (5, 15), [(e.target, e.status) for e in rows]
        pages = [n for n in await r.notifications() if n.kind == "brake_engaged"]
        assert [p.channel for p in pages] == ["slack:#ml-oncall"], "one page per engagement"
        assert len(pages[0].payload["targets"]) == 6

        answer = await r.post(f"/api/v1/guards/brakes/{verb}", "rita",
                              {"reason": "the feature store was down; it is back"})
        assert answer.status_code == 200, answer.text
        assert sorted(answer.json()["execution_ids"]) == sorted(e.id for e in held)
        after = "succeeded" if verb == "release" else "cancelled"
        rows = await r.wait_for(lambda rows: all(
            e.status == (after if e.id in {h.id for h in held} else "succeeded")
            for e in rows), timeout=30)
        verdicts = await r.rows(BrakeVerdict)
    assert len(rows) == len(MODELS), "Alertmanager's redeliveries started nothing more"
    assert sorted(v.verdict for v in verdicts) == sorted(
        ["admitted"] * 5 + [f"{verb}d" if verb == "release" else "aborted"] * 15)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_guards_page_shows_the_brake_and_releases_it(make_rig, tmp_path: Path) -> None:
    async with launched_chromium() as chromium, make_rig(
            **storm_catalog(tmp_path / "catalog")) as r:
        for model in MODELS[:8]:
            await r.fire("model-rollback", model=model)
        rows = await r.wait_for(lambda rows: len(rows) == 8 and all(
            e.status in ("succeeded", "paused") for e in rows))
        assert sum(e.status == "paused" for e in rows) == 3
        page = await signed_in_page(chromium, r.server.url, r.tokens["rita"],
                                    next_path="/guards",
                                    viewport={"width": 1280, "height": 1000})
        brake = page.locator("#brake-global")
        assert "engaged" in (await brake.locator("h3").inner_text())
        assert await brake.locator("tbody tr").count() == 3
        await brake.scroll_into_view_if_needed()
        await screenshot(page, "issue16-storm-brake", full=True, min_bytes=10_000)

        await brake.get_by_label("Reason (recorded)").fill("cluster recovered")
        await brake.get_by_role("button", name=re.compile("^Release")).click()
        await page.wait_for_url(f"{r.server.url}/guards")
        text = await page.locator("#brake-global").inner_text()
        rows = await r.wait_for(lambda rows: all(e.status == "succeeded" for e in rows))
        [event] = [e for e in await r.events() if e.kind == "brake.released"]
    assert "released" in text and "rita" in text and "cluster recovered" in text
    assert (event.actor, event.reason) == ("rita", "cluster recovered")
