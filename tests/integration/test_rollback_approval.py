"""Issue 14, defect 6: rollbacks skipped approval, and declared rollbacks could never run.

- The rollback of a risky step needs approval too (the same approvers as the step), unless
  the runbook marks it `auto: true`. It is addressed as `<step>.rollback`.
- A step's rollback can be started by hand: `POST /api/v1/executions/{id}/steps/{step}/rollback`
  starts a rollback execution linked to the first, which asks for approval like any risky step.
"""

from __future__ import annotations

import json

from tests.support.engine_catalog import risky, runbook, step


def undo(out: str, **extra) -> dict:
    return {"title": "Undo change", "action": "noop", "with": {"append_to": out}, **extra}


def failing_after(change: dict) -> dict:
    return runbook("change", [change, step("check", "fail", on_failure="rollback")])


async def test_the_rollback_of_a_risky_step_waits_for_approval(make_rig, tmp_path) -> None:
    out = tmp_path / "undo.txt"
    book = failing_after(risky("change", rollback=undo(str(out))))
    async with make_rig([book]) as r:
        ex = await r.awaiting("change")
        assert (await r.approve(ex.id, "change", "alice")).status_code == 200
        await r.wait_for(lambda rows: rows[0].status == "awaiting_approval"
                         and "change.rollback" in (rows[0].status_reason or ""))
        assert not out.exists()
        runs = {(s.kind, s.step_id): s for s in await r.steps(ex.id)}
        rollback = runs[("rollback", "change")]
        assert rollback.status == "awaiting_approval"
        assert rollback.plan and rollback.step_hash
        assert (await r.approve(ex.id, "change.rollback", "victor")).status_code == 403
        answer = await r.approve(ex.id, "change.rollback", "bob")
        assert answer.status_code == 200, answer.text
        done = await r.wait_status(ex.id, "failed")
        runs = {(s.kind, s.step_id): s for s in await r.steps(ex.id)}
    assert runs[("rollback", "change")].status == "succeeded"
    assert "rolled back" in done.status_reason
    assert out.read_text().count("\n") == 1


async def test_an_auto_rollback_runs_without_approval(make_rig, tmp_path) -> None:
    out = tmp_path / "undo.txt"
    book = failing_after(risky("change", rollback=undo(str(out), auto=True)))
    async with make_rig([book]) as r:
        ex = await r.awaiting("change")
        assert (await r.approve(ex.id, "change", "alice")).status_code == 200
        await r.wait_status(ex.id, "failed")
    assert out.read_text().count("\n") == 1


async def test_a_rollback_can_be_started_by_hand(make_rig, tmp_path) -> None:
    out = tmp_path / "undo.txt"
    book = runbook("manual", [risky("change", rollback=undo(str(out))), step("after")])
    async with make_rig([book]) as r:
        ex = await r.awaiting("manual")
        assert (await r.approve(ex.id, "change", "alice")).status_code == 200
        await r.wait_status(ex.id, "succeeded")
        refused = await r.post(f"/api/v1/executions/{ex.id}/steps/change/rollback", "victor")
        assert refused.status_code == 403
        missing = await r.post(f"/api/v1/executions/{ex.id}/steps/after/rollback", "rita")
        assert missing.status_code == 409
        assert "has no rollback" in missing.json()["error"]["message"]
        started = await r.post(f"/api/v1/executions/{ex.id}/steps/change/rollback", "rita",
                               {"reason": "the new version is worse"})
        assert started.status_code == 201, started.text
        body = started.json()
        assert body["trigger"] == "rollback" and body["parent_id"] == ex.id
        rollback_id = body["id"]
        await r.wait_status(rollback_id, "awaiting_approval")
        assert not out.exists()
        again = await r.post(f"/api/v1/executions/{ex.id}/steps/change/rollback", "rita")
        assert again.status_code == 409  # one at a time: the per-target lock
        assert (await r.approve(rollback_id, "change.rollback", "rita")).status_code == 403
        assert (await r.approve(rollback_id, "change.rollback", "bob")).status_code == 200
        done = await r.wait_status(rollback_id, "succeeded")
        events = await r.events(rollback_id)
    assert out.read_text().count("\n") == 1
    assert done.status_reason == f"rolled back step change of execution {ex.id}"
    assert any(e.kind == "execution.created" and "the new version is worse" in (e.reason or "")
               for e in events)


async def test_the_cli_starts_a_rollback_and_approves_it(make_rig, db_url, tokens, tokens_file,
                                                         tmp_path) -> None:
    from tests.integration.test_approval_path import _cli

    out = tmp_path / "undo.txt"
    book = runbook("cli", [risky("change", rollback=undo(str(out)))])
    async with make_rig([book]) as r:
        ex = await r.awaiting("cli")
        assert (await r.approve(ex.id, "change", "alice")).status_code == 200
        await r.wait_status(ex.id, "succeeded")
        code, _, err = await _cli(db_url, tokens_file, "rollback", str(ex.id), "change",
                                  "--token", tokens["victor"])
        assert code == 1 and "403" in err and "needs the responder role" in err, err
        code, printed, err = await _cli(db_url, tokens_file, "rollback", str(ex.id), "change",
                                        "--reason", "worse", "--token", tokens["rita"])
        assert code == 0, err
        started = json.loads(printed.splitlines()[-1])
        assert (started["trigger"], started["parent_id"]) == ("rollback", ex.id)
        await r.wait_status(started["id"], "awaiting_approval")
        code, _, err = await _cli(db_url, tokens_file, "approve", str(started["id"]),
                                  "change.rollback", "--yes", "--token", tokens["bob"])
        assert code == 0, err
        await r.wait_status(started["id"], "succeeded")
    assert out.read_text().count("\n") == 1


async def test_the_execution_page_rolls_a_step_back(make_rig, tokens, tmp_path) -> None:
    from tests.support.web import browser, csrf_of, sign_in

    out = tmp_path / "undo.txt"
    book = runbook("page", [risky("change", rollback=undo(str(out)))])
    async with make_rig([book]) as r:
        ex = await r.awaiting("page")
        assert (await r.approve(ex.id, "change", "alice")).status_code == 200
        await r.wait_status(ex.id, "succeeded")
        async with browser(r.server.url) as web:
            await sign_in(web, tokens["victor"])
            assert "Roll back this step" not in (await web.get(f"/executions/{ex.id}")).text
        async with browser(r.server.url) as web:
            await sign_in(web, tokens["rita"])
            page = (await web.get(f"/executions/{ex.id}")).text
            assert "Roll back this step (asks its approvers)" in page
            url = f"/executions/{ex.id}/steps/change/rollback"
            forged = await web.post(url, data={"reason": "worse"})
            assert forged.status_code == 403
            started = await web.post(url, data={"reason": "worse",
                                                "csrf_token": csrf_of(page)})
            assert started.status_code == 303
            new_id = int(started.headers["location"].rsplit("/", 1)[1])
        await r.wait_status(new_id, "awaiting_approval")
        async with browser(r.server.url) as web:
            await sign_in(web, tokens["bob"])
            shown = (await web.get(f"/executions/{new_id}")).text
        assert f'href="/executions/{ex.id}"' in shown
        assert f"/executions/{new_id}/steps/change.rollback/decide" in shown
    assert not out.exists()
