"""The first hour of a new user (issue 15): the guard commands fail and show state as the API
does, one word (`reason`) for why a guard changed, reloads that report only what is new, and a
401 that says what was wrong."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app as cli
from app.config import get_settings
from app.engine.models import Guard
from tests.support.auth import auth
from tests.support.db import all_rows
from tests.support.engine_catalog import runbook, step, write_catalog

BOOKS = [runbook("held", [step("a")]), runbook("other", [step("a")]),
         runbook("third", [step("a")])]


@pytest.fixture
def runbookd(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`runbookd(*args)`: the CLI in this process, on the test's database and catalog."""
    mappings, remediations = write_catalog(tmp_path / "catalog", BOOKS)
    for name, value in {"RUNBOOKD_ENV": "dev", "RUNBOOKD_DATABASE_URL": db_url,
                        "RUNBOOKD_MAPPINGS": str(mappings),
                        "RUNBOOKD_REMEDIATIONS_DIR": str(remediations)}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args))

    yield invoke
    get_settings.cache_clear()


def _guards(db_url: str) -> list[tuple[str, bool, str]]:
    rows = asyncio.run(all_rows(db_url, Guard))
    return sorted((g.key, g.engaged, g.reason) for g in rows)


@pytest.mark.parametrize("verb", ["pause", "resume"])
def test_pause_or_resume_of_an_unknown_runbook_fails_naming_the_known_ones(runbookd, db_url,
                                                                           verb):
    result = runbookd(verb, "no-such-runbook")
    assert result.exit_code == 1, result.output
    assert "no runbook 'no-such-runbook' in the catalog" in result.output
    assert "known: held, other, third" in result.output
    assert _guards(db_url) == []


def test_pause_and_resume_of_a_known_runbook_record_the_reason(runbookd, db_url):
    paused = runbookd("pause", "held", "--reason", "maintenance")
    assert paused.exit_code == 0, paused.output
    assert _guards(db_url) == [("runbook:held", True, "maintenance")]
    resumed = runbookd("resume", "held", "--reason", "done")
    assert resumed.exit_code == 0, resumed.output
    assert _guards(db_url) == [("runbook:held", False, "done")]


def test_resume_of_a_runbook_gone_from_the_catalog_but_still_paused_works(runbookd, db_url,
                                                                           tmp_path):
    assert runbookd("pause", "third", "--reason", "retiring").exit_code == 0
    (tmp_path / "catalog" / "remediations" / "third.yaml").unlink()
    resumed = runbookd("resume", "third")
    assert resumed.exit_code == 0, resumed.output
    assert _guards(db_url) == [("runbook:third", False, "")]


def test_kill_switch_without_an_argument_shows_the_state(runbookd):
    off = runbookd("kill-switch")
    assert off.exit_code == 0, off.output
    assert off.output.strip() == "kill switch: off"
    assert runbookd("kill-switch", "on", "--reason", "incident 42").exit_code == 0
    on = runbookd("kill-switch")
    assert on.exit_code == 0, on.output
    line = on.output.strip()
    assert line.startswith("kill switch: engaged by cli:") and "since 20" in line
    assert line.endswith("UTC: incident 42")
    assert runbookd("kill-switch", "off").exit_code == 0
    released = runbookd("kill-switch").output.strip()
    assert released.startswith("kill switch: off (released by cli:")


def test_a_bad_kill_switch_state_is_refused(runbookd):
    result = runbookd("kill-switch", "maybe")
    assert result.exit_code == 2
    assert "on or off" in result.output


async def test_the_api_says_reason_for_every_guard_and_still_takes_comment(make_rig):
    async with make_rig([runbook("held", [step("a")])]) as r:
        paused = await r.post("/api/v1/guards/runbooks/held/pause", "rita",
                              {"reason": "maintenance"})
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] == {"held": "maintenance"}
        resumed = await r.post("/api/v1/guards/runbooks/held/resume", "rita",
                               {"reason": "done"})
        assert resumed.json()["paused"] == {}
        # The old field still works, so scripts written against it keep working.
        old = await r.post("/api/v1/guards/runbooks/held/pause", "rita", {"comment": "old"})
        assert old.json()["paused"] == {"held": "old"}
        both = await r.post("/api/v1/guards/runbooks/held/pause", "rita",
                            {"reason": "a", "comment": "b"})
        assert both.status_code == 422
        reasons = [e.reason for e in await r.events() if e.kind == "guard.changed"]
    assert reasons == ["maintenance", "done", "old"]


async def test_a_reload_of_an_unchanged_catalog_has_no_new_versions(make_rig, tmp_path):
    async with make_rig(BOOKS) as r:
        first = await r.post("/-/reload", "root")
        assert first.status_code == 200, first.text
        assert first.json()["new_versions"] == []
        assert first.json()["runbooks"] == 3
        changed = runbook("other", [step("a"), step("b")])
        write_catalog(tmp_path / "catalog", [*BOOKS[:1], changed, *BOOKS[2:]])
        second = (await r.post("/-/reload", "root")).json()["new_versions"]
        assert [v["runbook_id"] for v in second] == ["other"]
        assert (await r.post("/-/reload", "root")).json()["new_versions"] == []


async def test_a_rejected_reload_logs_one_warning(make_rig, tmp_path, caplog):
    async with make_rig(BOOKS) as r:
        (tmp_path / "catalog" / "remediations" / "held.yaml").write_text("id: held\n")
        with caplog.at_level(logging.WARNING):
            rejected = await r.post("/-/reload", "root")
        assert rejected.status_code == 400
    lines = [rec for rec in caplog.records if "reload" in rec.getMessage()]
    assert len(lines) == 1, [rec.getMessage() for rec in lines]
    assert lines[0].levelno == logging.WARNING
    message = lines[0].getMessage()
    assert "rejected" in message and "held.yaml" in message and "error(s)" in message


async def test_a_401_says_whether_a_token_was_sent(make_rig):
    async with make_rig([runbook("held", [step("a")])]) as r:
        missing = await r.http.get("/api/v1/guards")
        wrong = await r.http.get("/api/v1/guards", headers=auth("rbd_not-a-real-token"))
    assert missing.status_code == wrong.status_code == 401
    assert "an API token is required" in missing.json()["error"]["message"]
    assert wrong.json()["error"]["message"] == "this token matches no identity"
