"""Hole 15: uvicorn trusted X-Forwarded-For from 127.0.0.1 by default, so any local proxy (or
any local process) could set the address recorded on approvals and events. It is trusted only
from RUNBOOKD_TRUSTED_PROXIES, empty by default.

The rig serves with the options `runbookd serve` gives uvicorn (`server_options`)."""

from __future__ import annotations

import json

import pytest

from app.config import Settings
from tests.support.auth import auth
from tests.support.engine_catalog import risky, runbook, step

SPOOFED = "6.6.6.6"


def book():
    return runbook("px", [step("check"), risky("rollback")])


async def approve_behind(r, ex_id: int) -> str | None:
    """Approve as alice with a forged X-Forwarded-For; the recorded source address."""
    answer = await r.http.post(
        f"/api/v1/executions/{ex_id}/steps/rollback/approve",
        headers={**auth(r.tokens["alice"]), "Content-Type": "application/json",
                 "X-Forwarded-For": SPOOFED},
        content=json.dumps({"comment": "ok"}))
    assert answer.status_code == 200, answer.text
    [approval] = await r.approvals()
    return approval.source_addr


async def test_x_forwarded_for_is_not_trusted_by_default(make_rig):
    async with make_rig([book()]) as r:
        ex = await r.awaiting("px")
        recorded = await approve_behind(r, ex.id)
    assert recorded == "127.0.0.1"


async def test_x_forwarded_for_from_a_trusted_proxy_is_recorded(make_rig):
    async with make_rig([book()], trusted_proxies=["127.0.0.0/8"]) as r:
        ex = await r.awaiting("px")
        recorded = await approve_behind(r, ex.id)
    assert recorded == SPOOFED


@pytest.mark.parametrize("value", ["*", "proxy.internal", "10.0.0.0/33"])
def test_trusted_proxies_are_addresses_or_networks(value):
    with pytest.raises(ValueError, match="RUNBOOKD_TRUSTED_PROXIES"):
        Settings(env="dev", trusted_proxies=value)
