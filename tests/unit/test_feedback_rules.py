"""Responder feedback's pure parts: who may answer and when, what a verdict and a note may be,
and the Slack message that asks (Block Kit that Slack accepts, buttons that name the
execution)."""

from __future__ import annotations

import pytest

from app.engine.feedback import check_verdict, feedback_blocker, slack_of
from app.engine.models import Execution
from app.errors import Invalid
from app.notify.slack_messages import FEEDBACK_ACTIONS, build_message, parse_feedback_value
from tests.support.fake_receivers import slack_block_errors


def ended(status: str = "succeeded") -> Execution:
    return Execution(id=7, status=status, started_by="rita")


@pytest.mark.parametrize(("status", "who", "took_part", "why"), [
    ("succeeded", "alice", ["rita", "alice"], None),
    ("rejected", "rita", ["rita"], None),
    ("expired", "alice", ["alice"], None),
    ("running", "alice", ["alice"], "has not ended (it is running)"),
    ("needs_attention", "alice", ["alice"], "has not ended"),
    ("succeeded", "root", ["rita", "alice"], "took part in execution 7"),
    ("succeeded", "bob", [], "nobody: it ran with no human"),
])
def test_who_may_answer_and_when(status, who, took_part, why):
    blocker = feedback_blocker(ended(status), took_part, who)
    if why is None:
        assert blocker is None
    else:
        assert blocker is not None and why in blocker


def test_a_refusal_names_who_may():
    blocker = feedback_blocker(ended(), ["rita", "alice"], "mallory")
    assert blocker is not None and blocker.endswith(": rita, alice")


@pytest.mark.parametrize(("verdict", "note", "field"), [
    ("great", "", "verdict"), ("did-not-help", "", "verdict"), ("helped", "x" * 1001, "note"),
])
def test_bad_verdicts_and_long_notes_say_what_to_fix(verdict, note, field):
    with pytest.raises(Invalid) as caught:
        check_verdict(verdict, note)
    assert caught.value.details[0]["field"] == field
    if field == "verdict":
        assert "helped, partly, did_not_help" in caught.value.message


def test_a_verdict_with_a_note_at_the_bound_passes():
    check_verdict("partly", "x" * 1000)


def test_success_is_asked_in_slack_only():
    assert slack_of(["slack:ml-oncall", "pagerduty:ml"]) == ["slack:ml-oncall"]
    assert slack_of(["pagerduty:ml"]) == []
    assert slack_of([]) == ["slack:default"]


def test_the_asking_message_is_valid_block_kit_with_three_buttons():
    message = build_message("succeeded", title="Fraud drift on model:fraud-v3",
                            execution_id=42, execution_url="http://x/executions/42",
                            feedback=True)
    assert slack_block_errors(message) == []
    [asks] = [b for b in message["blocks"] if b.get("block_id") == "runbookd-feedback-42"]
    assert [(e["action_id"], e["value"]) for e in asks["elements"]] == [
        (a, "42") for a in FEEDBACK_ACTIONS]
    plain = build_message("succeeded", title="t", execution_id=42)
    assert "runbookd-feedback-42" not in str(plain)


@pytest.mark.parametrize("value", ["", "x", "-1", "4 2", "1" * 19, "٤٢"])
def test_a_feedback_button_value_is_an_execution_id(value):
    with pytest.raises(ValueError):
        parse_feedback_value(value)
    assert parse_feedback_value("42") == 42
