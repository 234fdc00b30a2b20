"""SIGHUP reloads the catalog of a running process; an invalid one is refused and the old
one stays in force, as Prometheus does."""

from __future__ import annotations

import os
import signal

import httpx

from tests.support.auth import WEBHOOK_TOKEN, auth
from tests.support.engine_catalog import runbook, step, write_catalog
from tests.support.procs import RunbookdProcess, runbookd_env
from tests.support.wait import eventually


async def _runbooks(url: str, token: str) -> list[str]:
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.get("/api/v1/runbooks", headers=auth(token))
        body = answer.json()
        items = body if isinstance(body, list) else body.get("items", body.get("runbooks", []))
        return sorted(item["id"] for item in items)


async def _metric(url: str, name: str) -> float:
    async with httpx.AsyncClient(base_url=url) as http:
        text = (await http.get("/metrics")).text
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith(name + " ")))


async def test_sighup_reloads_and_keeps_the_old_catalog_when_the_new_is_invalid(
        tmp_path, db_url, tokens, tokens_file):
    root = tmp_path / "catalog"
    mappings, remediations = write_catalog(root, [runbook("first", [step("a")])])
    proc = RunbookdProcess(runbookd_env(db_url=db_url, mappings=mappings,
                                        remediations=remediations, tokens_file=tokens_file,
                                        webhook_token=WEBHOOK_TOKEN),
                           log_path=tmp_path / "runbookd.log")
    await proc.start()
    try:
        assert await _runbooks(proc.url, tokens["victor"]) == ["first"]
        write_catalog(root, [runbook("first", [step("a")]), runbook("second", [step("b")])])
        os.kill(proc.proc.pid, signal.SIGHUP)

        async def has_second():
            return await _runbooks(proc.url, tokens["victor"]) == ["first", "second"]

        await eventually(has_second, timeout=10, what="the reload to add `second`")
        assert await _metric(proc.url, "runbookd_config_last_reload_successful") == 1

        (remediations / "broken.yaml").write_text("id: broken\nsteps: [\n")
        os.kill(proc.proc.pid, signal.SIGHUP)

        async def failed():
            return await _metric(proc.url, "runbookd_config_last_reload_successful") == 0

        await eventually(failed, timeout=10, what="the failed reload to show")
        assert await _runbooks(proc.url, tokens["victor"]) == ["first", "second"]
        assert "broken.yaml" in proc.log_path.read_text()
    finally:
        proc.stop()
