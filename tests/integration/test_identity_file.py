"""A running runbookd and a tokens file that goes bad: nobody is signed out, and /metrics
says that the file was refused until a good one replaces it."""

from __future__ import annotations

import os
import re

import httpx

from tests.support.auth import auth
from tests.support.web import browser, sign_in


def rewrite(path, text: str) -> None:
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


async def metric(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} is not exported"
    return float(found.group(1))


async def test_an_empty_tokens_file_signs_nobody_out_and_is_reported(make_rig, tokens,
                                                                     tokens_file):
    async with make_rig() as r, browser(r.server.url) as web:
        await sign_in(web, tokens["alice"])
        assert await metric(r.http, "runbookd_identities_file_valid") == 1
        errors = await metric(r.http, "runbookd_identities_reload_errors_total")
        good = tokens_file.read_text()
        rewrite(tokens_file, "")
        api = await r.http.get("/api/v1/executions", headers=auth(tokens["bob"]))
        assert api.status_code == 200
        assert (await web.get("/runbooks")).status_code == 200
        assert await metric(r.http, "runbookd_identities_file_valid") == 0
        assert await metric(r.http, "runbookd_identities_reload_errors_total") == errors + 1
        rewrite(tokens_file, good + "\n")
        assert (await r.http.get("/api/v1/executions",
                                 headers=auth(tokens["bob"]))).status_code == 200
        assert await metric(r.http, "runbookd_identities_file_valid") == 1
