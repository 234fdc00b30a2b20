"""A 401 says what is wrong: no token was sent, or the token sent matches no identity, also
when the body-limit middleware refuses a POST before its route runs."""

from __future__ import annotations

from tests.support.engine_catalog import runbook, step


async def test_a_wrong_token_on_a_post_says_it_matches_no_identity(make_rig):
    async with make_rig([runbook("rb", [step("a")])]) as r:
        wrong = await r.http.post("/api/v1/executions", json={"runbook": "rb"},
                                  headers={"Authorization": "Bearer not-a-token-of-anyone"})
        missing = await r.http.post("/api/v1/executions", json={"runbook": "rb"})
    assert wrong.status_code == missing.status_code == 401
    assert wrong.json()["error"]["message"] == "this token matches no identity"
    assert "an API token is required" in missing.json()["error"]["message"]
