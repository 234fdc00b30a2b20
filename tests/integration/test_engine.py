"""The guarded executor end to end over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from tests.support.engine_catalog import risky, runbook, step


async def test_alert_runs_safe_steps_to_success(make_rig, tmp_path):
    out = tmp_path / "side-effects.txt"
    book = runbook("drift", [
        step("check", **{"with": {"output": {"drift": 0.4}}}),
        step("act", **{"with": {"append_to": str(out),
                                "message": "drift {{ steps.check.output.drift }} on "
                                           "{{ params.model }}"}}),
    ])
    async with make_rig([book]) as r:
        await r.fire("drift")
        [execution] = await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        steps = await r.steps(execution.id)
    assert execution.target == "model:fraud-v3"
    assert execution.params == {"model": "fraud-v3"}
    assert [(s.step_id, s.status) for s in steps] == [("check", "succeeded"),
                                                       ("act", "succeeded")]
    assert steps[1].summary == "drift 0.4 on fraud-v3"
    assert steps[1].duration_ms is not None
    assert out.read_text().count("\n") == 1


async def test_risky_step_waits_for_approval_then_runs(make_rig, tmp_path):
    out = tmp_path / "rollback.txt"
    book = runbook("rb", [
        step("check"),
        risky("rollback", **{"with": {"append_to": str(out)}}),
    ])
    async with make_rig([book]) as r:
        await r.fire("rb")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        assert not out.exists()
        assert (await r.approve(ex.id, "rollback", "victor")).status_code == 403
        answer = await r.approve(ex.id, "rollback", "alice", comment="looks right")
        assert answer.status_code == 200, answer.text
        assert answer.json()["step_status"] == "approved"
        await r.wait_status(ex.id, "succeeded")
        [approval] = await r.approvals()
        notifications = await r.notifications()
    assert out.read_text().count("\n") == 1
    assert (approval.identity, approval.comment, approval.channel) == ("alice", "looks right",
                                                                       "api")
    assert len(approval.step_hash) == 64
    assert any(n.kind == "approval_request" for n in notifications)


async def test_approval_rules(make_rig, tmp_path):
    """viewer 403, requester 403, the same identity twice counts once, quorum of two."""
    book = runbook("quorum", [risky("change", count=2)])
    async with make_rig([book]) as r:
        started = await r.post("/api/v1/executions", "root",
                               {"runbook": "quorum", "params": {"model": "m1"}})
        assert started.status_code == 201, started.text
        ex_id = started.json()["id"]
        await r.wait_status(ex_id, "awaiting_approval")
        viewer = await r.approve(ex_id, "change", "victor")
        requester = await r.approve(ex_id, "change", "root")
        assert (viewer.status_code, requester.status_code) == (403, 403)
        assert "separation of duties" in requester.json()["error"]["message"]
        first = await r.approve(ex_id, "change", "alice")
        again = await r.approve(ex_id, "change", "alice")
        assert first.json()["approvals"] == again.json()["approvals"] == 1
        assert again.json()["counted"] is False
        assert again.json()["step_status"] == "awaiting_approval"
        second = await r.approve(ex_id, "change", "bob")
        assert second.json() | {"approvals": 2, "step_status": "approved"} == second.json()
        await r.wait_status(ex_id, "succeeded")
        approvals = await r.approvals()
    assert sorted(a.identity for a in approvals) == ["alice", "bob"]


async def test_reject_ends_the_execution(make_rig):
    async with make_rig([runbook("rej", [risky("change")])]) as r:
        await r.fire("rej")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        answer = await r.post(f"/api/v1/executions/{ex.id}/steps/change/reject", "alice",
                              {"comment": "wrong model"})
        assert answer.json()["execution_status"] == "rejected"
        late = await r.approve(ex.id, "change", "bob")
    assert late.status_code == 409
    assert late.json()["error"]["current_state"] == "rejected"


async def test_approval_after_resolve_is_409_and_nothing_runs(make_rig, tmp_path):
    out = tmp_path / "never.txt"
    book = runbook("res", [risky("change", **{"with": {"append_to": str(out)}})])
    async with make_rig([book]) as r:
        await r.fire("res")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        await r.resolve("res")
        await r.wait_status(ex.id, "cancelled")
        late = await r.approve(ex.id, "change", "alice")
        [step_run] = await r.steps(ex.id)
    assert late.status_code == 409
    assert late.json()["error"]["current_state"] == "cancelled"
    assert step_run.status == "cancelled"
    assert not out.exists()


async def test_on_resolve_continue_keeps_waiting(make_rig):
    book = runbook("cont", [risky("change")], on_resolve="continue")
    async with make_rig([book]) as r:
        await r.fire("cont")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        await r.resolve("cont")
        events = await r.events(ex.id)
        assert any(e.kind == "alert.resolved" for e in events)
        assert (await r.approve(ex.id, "change", "alice")).status_code == 200
        await r.wait_status(ex.id, "succeeded")


async def test_escalation_tiers_then_expiry(make_rig):
    book = runbook("esc", [risky("change", approval_timeout="2s")], escalation=[
        {"after": "0.3s", "notify": ["slack:ml-oncall"]},
        {"after": "0.8s", "notify": ["pagerduty:ml-platform"]},
    ])
    async with make_rig([book], poll_seconds=0.1) as r:
        await r.fire("esc")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        await r.wait_status(ex.id, "expired", timeout=10)
        late = await r.approve(ex.id, "change", "alice")
        events = await r.events(ex.id)
        notifications = await r.notifications()
    assert late.status_code == 409
    tiers = [e.data["tier"] for e in events if e.kind == "approval.escalated"]
    assert tiers == [1, 2]
    channels = [(n.kind, n.channel) for n in notifications]
    assert ("approval_request", "slack:ml-oncall") in channels
    assert ("escalation", "slack:ml-oncall") in channels
    assert ("escalation", "pagerduty:ml-platform") in channels
    assert ("expired", "pagerduty:ml-platform") in channels


async def test_per_target_lock_attaches_second_alert(make_rig):
    async with make_rig([runbook("lock", [risky("change")])]) as r:
        await r.fire("lock", fingerprint="aaaaaaaaaaaaaaaa")
        await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        await r.fire("lock", fingerprint="bbbbbbbbbbbbbbbb")  # same model label: same target
        await r.fire("lock", fingerprint="cccccccccccccccc", model="other-model")
        rows = await r.wait_for(lambda rows: len(rows) == 2)
        events = await r.events(rows[0].id)
    assert sorted(e.target for e in rows) == ["model:fraud-v3", "model:other-model"]
    assert [e.kind for e in events].count("alert.attached") == 1


async def test_dry_run_is_a_drill_that_changes_nothing(make_rig, tmp_path):
    out = tmp_path / "drill.txt"
    book = runbook("drill", [step("act", **{"with": {"append_to": str(out)}})])
    async with make_rig([book]) as r:
        started = await r.post("/api/v1/executions", "rita",
                               {"runbook": "drill", "params": {"model": "m1"}, "dry_run": True})
        ex = await r.wait_status(started.json()["id"], "succeeded")
        [run] = await r.steps(ex.id)
    assert ex.dry_run is True
    assert not out.exists()
    assert run.summary.startswith("drill, planned only: noop")  # planned, never run


async def test_retries_only_for_idempotent_steps(make_rig, tmp_path):
    counter = tmp_path / "count"
    counter2 = tmp_path / "count2"
    book = runbook("retry", [
        step("flaky", "fail", retries=3, idempotent=True,
             **{"with": {"times": 2, "counter_file": str(counter)}}),
        step("once", "fail", retries=3, idempotent=False,
             **{"with": {"times": 2, "counter_file": str(counter2)}}),
    ])
    async with make_rig([book]) as r:
        await r.fire("retry")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "failed")
        runs = await r.steps(ex.id)
    assert [(s.step_id, s.status, s.attempts) for s in runs] == [
        ("flaky", "succeeded", 3), ("once", "failed", 1)]
    assert counter2.read_text() == "1"


async def test_timeout_and_rollback(make_rig, tmp_path):
    undo = tmp_path / "undo.txt"
    book = runbook("tmo", [
        step("change", **{"with": {"append_to": str(tmp_path / "do.txt")}},
             rollback={"title": "Undo change", "action": "noop",
                       "with": {"append_to": str(undo)}}),
        step("slow", "sleep", timeout="0.2s", on_failure="rollback",
             **{"with": {"seconds": 5}}),
    ])
    async with make_rig([book]) as r:
        await r.fire("tmo")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "failed")
        runs = await r.steps(ex.id)
    assert [(s.kind, s.step_id, s.status) for s in runs] == [
        ("step", "change", "succeeded"), ("step", "slow", "timed_out"),
        ("rollback", "change", "succeeded")]
    assert "rolled back" in ex.status_reason
    assert undo.read_text().count("\n") == 1


async def test_on_failure_continue_and_goto(make_rig):
    book = runbook("flow", [
        step("a", "fail", on_failure="continue"),
        step("b", "fail", on_failure={"goto": "d"}),
        step("c"),
        step("d"),
    ])
    async with make_rig([book]) as r:
        await r.fire("flow")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
        runs = await r.steps(ex.id)
    assert [(s.step_id, s.status) for s in runs] == [("a", "failed"), ("b", "failed"),
                                                      ("d", "succeeded")]


async def test_kill_switch_and_pause_hold_work_and_release_it(make_rig):
    async with make_rig([runbook("held", [step("a")])]) as r:
        on = await r.post("/api/v1/guards/kill-switch", "rita",
                          {"engaged": True, "reason": "incident review"})
        assert on.json()["kill_switch"] is True
        await r.fire("held")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "paused")
        assert "kill switch" in ex.status_reason
        await r.post("/api/v1/guards/kill-switch", "rita", {"engaged": False})
        await r.wait_status(ex.id, "succeeded")
        paused = await r.post("/api/v1/guards/runbooks/held/pause", "rita", {"comment": "x"})
        assert paused.json()["paused"] == {"held": "x"}
        await r.fire("held", model="m2")
        rows = await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status == "paused")
        await r.post("/api/v1/guards/runbooks/held/resume", "rita")
        await r.wait_status(rows[1].id, "succeeded")
        guard_events = [e for e in await r.events() if e.kind == "guard.changed"]
    assert [(e.actor, e.data["engaged"]) for e in guard_events] == [
        ("rita", True), ("rita", False), ("rita", True), ("rita", False)]


async def test_circuit_breaker_pauses_a_failing_runbook(make_rig):
    book = runbook("brk", [step("a", "fail")],
                   limits={"breaker": {"failures": 2, "within": "1h"}})
    async with make_rig([book]) as r:
        for i in range(2):
            await r.fire("brk", model=f"m{i}")
            await r.wait_for(lambda rows, n=i: len(rows) == n + 1 and rows[n].status == "failed")
        guards = (await r.http.get("/api/v1/guards",
                                   headers={"Authorization": f"Bearer {r.tokens['victor']}"}))
        await r.fire("brk", model="m9")
        rows = await r.wait_for(lambda rows: len(rows) == 3 and rows[2].status == "paused")
        notifications = await r.notifications()
    assert "circuit breaker" in guards.json()["paused"]["brk"]
    assert rows[2].status == "paused"
    assert any(n.kind == "breaker" for n in notifications)


async def test_rate_limit_holds_across_a_restart(make_rig):
    book = runbook("rate", [step("a")], limits={"rate": [{"count": 1, "per": "6h"}]})
    async with make_rig([book]) as r:
        await r.fire("rate", fingerprint="1111111111111111")
        await r.wait_for(lambda rows: rows and rows[0].status == "succeeded")
    async with make_rig([book]) as r:  # a new process
        await r.fire("rate", fingerprint="2222222222222222",
                     starts_at="2026-11-26T07:00:00Z")
        rows = await r.wait_for(lambda rows: len(rows) == 2 and rows[1].status != "pending")
    assert rows[1].status == "rate_limited"
    assert "next run allowed at" in rows[1].status_reason


async def test_bad_input_answers(make_rig):
    async with make_rig([runbook("bad", [risky("change")])]) as r:
        missing = await r.approve(999, "change", "alice")
        await r.fire("bad")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        wrong_state = await r.post(f"/api/v1/executions/{ex.id}/retry", "rita")
        malformed = await r.http.post(
            f"/api/v1/executions/{ex.id}/steps/change/approve", content=b"{not json",
            headers={"Authorization": f"Bearer {r.tokens['alice']}",
                     "Content-Type": "application/json"})
        unknown_field = await r.post(f"/api/v1/executions/{ex.id}/steps/change/approve",
                                     "alice", {"comment": "x", "approve": True})
        unknown_runbook = await r.post("/api/v1/executions", "rita", {"runbook": "nope"})
        bad_params = await r.post("/api/v1/executions", "rita",
                                  {"runbook": "bad", "params": {"model": "$(rm -rf /)"}})
    assert missing.status_code == 404
    assert wrong_state.status_code == 409
    assert wrong_state.json()["error"]["current_state"] == "awaiting_approval"
    assert malformed.status_code == 422
    assert unknown_field.status_code == 422
    assert "comment" not in unknown_field.json()["error"]["message"]
    assert unknown_runbook.status_code == 404
    assert bad_params.status_code == 422


async def test_an_approval_is_void_when_the_rendered_step_changes(make_rig, tmp_path):
    out = tmp_path / "changed.txt"
    book = runbook("bind", [
        step("check", **{"with": {"output": {"version": "7"}}}),
        risky("change", **{"with": {"append_to": str(out),
                                    "message": "roll back to {{ steps.check.output.version }}"}}),
    ])
    async with make_rig([book]) as r:
        await r.fire("bind")
        [ex] = await r.wait_for(lambda rows: rows and rows[0].status == "awaiting_approval")
        await r.post("/api/v1/guards/kill-switch", "rita", {"engaged": True})
        assert (await r.approve(ex.id, "change", "alice")).status_code == 200
        await r.wait_status(ex.id, "paused")
        # An earlier step's output changes after the approval (say, a retried check).
        await _set_output(r.db_url, ex.id, "check", {"version": "6"})
        await r.post("/api/v1/guards/kill-switch", "rita", {"engaged": False})
        await r.wait_status(ex.id, "awaiting_approval")
        [approval] = await r.approvals()
        runs = {s.step_id: s for s in await r.steps(ex.id)}
        assert approval.voided_at is not None
        assert runs["change"].params["message"] == "roll back to 6"
        assert not out.exists()
        assert (await r.approve(ex.id, "change", "alice")).json()["approvals"] == 1
        await r.wait_status(ex.id, "succeeded")
        assert out.read_text().count("\n") == 1


async def _set_output(db_url, execution_id, step_id, output):
    from sqlalchemy import update

    from app.db import make_engine
    from app.engine.models import StepRun

    engine = make_engine(db_url)
    async with engine.begin() as conn:
        await conn.execute(update(StepRun).where(StepRun.execution_id == execution_id,
                                                 StepRun.step_id == step_id)
                           .values(output=output))
    await engine.dispose()


async def test_interrupted_step_needs_attention_then_retry(make_rig, tmp_path):
    marks = tmp_path / "marks.txt"
    book = runbook("att", [step("long", "sleep", idempotent=False,
                                **{"with": {"seconds": 30, "append_to": str(marks)}})])
    async with make_rig([book], shutdown_grace_seconds=0) as r:
        await r.fire("att")
        await r.wait_for(lambda rows: rows and rows[0].status == "running")
        for _ in range(100):
            if marks.exists():
                break
            await asyncio.sleep(0.05)
    # Shut down with no grace: the running step is cut, like a crash.
    async with make_rig([book], shutdown_grace_seconds=0) as r:
        [ex] = await r.wait_for(lambda rows: rows[0].status == "needs_attention")
        abort_wrong = await r.post(f"/api/v1/executions/{ex.id}/retry", "victor")
        assert abort_wrong.status_code == 403
        retried = await r.post(f"/api/v1/executions/{ex.id}/retry", "rita", {"comment": "go"})
        assert retried.status_code == 200
        await r.wait_for(lambda rows: rows[0].status == "running")
        cancelled = await r.post(f"/api/v1/executions/{ex.id}/cancel", "rita")
        assert cancelled.json()["status"] == "cancelled"
        events = [e.kind for e in await r.events(ex.id)]
    assert "manual.retry" in events
    assert marks.read_text().count("start") == 2  # once before the cut, once by the human
