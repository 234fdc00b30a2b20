"""The transition tables, over every (from, to) pair."""

from __future__ import annotations

import itertools

import pytest

from app.engine import states

ALLOWED_EXECUTION = {
    ("pending", "running"), ("pending", "paused"), ("pending", "cancelled"),
    ("pending", "rate_limited"), ("pending", "failed"),
    ("running", "awaiting_approval"), ("running", "succeeded"), ("running", "failed"),
    ("running", "needs_attention"), ("running", "cancelled"), ("running", "paused"),
    ("running", "pending"),
    ("awaiting_approval", "pending"), ("awaiting_approval", "rejected"),
    ("awaiting_approval", "expired"), ("awaiting_approval", "cancelled"),
    ("paused", "pending"), ("paused", "cancelled"),
    ("needs_attention", "pending"), ("needs_attention", "failed"),
    ("needs_attention", "cancelled"),
    ("rate_limited", "pending"), ("rate_limited", "cancelled"),
}

ALLOWED_STEP = {
    ("pending", "running"), ("pending", "awaiting_approval"), ("pending", "skipped"),
    ("pending", "cancelled"), ("pending", "failed"),
    ("awaiting_approval", "approved"), ("awaiting_approval", "rejected"),
    ("awaiting_approval", "expired"), ("awaiting_approval", "cancelled"),
    ("approved", "running"), ("approved", "awaiting_approval"), ("approved", "cancelled"),
    ("approved", "skipped"), ("approved", "failed"),
    ("running", "succeeded"), ("running", "failed"), ("running", "timed_out"),
    ("running", "interrupted"),
    ("interrupted", "pending"), ("interrupted", "skipped"),
}


@pytest.mark.parametrize(("src", "dst"),
                         list(itertools.product(states.EXECUTION_STATES, repeat=2)))
def test_every_execution_pair(src, dst):
    assert states.execution_can(src, dst) == ((src, dst) in ALLOWED_EXECUTION)


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(states.STEP_STATES, repeat=2)))
def test_every_step_pair(src, dst):
    assert states.step_can(src, dst) == ((src, dst) in ALLOWED_STEP)


def test_final_states_have_no_way_out_and_active_ones_do():
    for state in states.EXECUTION_STATES:
        outgoing = states.EXECUTION_TRANSITIONS[state]
        assert bool(outgoing) == (state in states.ACTIVE_EXECUTION)


def test_a_running_step_can_never_go_back_to_running():
    # Invariant 4 in the table itself: the way back from running is through interrupted,
    # and only the executor's recovery or a human moves an interrupted step on.
    assert not states.step_can("running", "running")
    assert not states.step_can("running", "pending")
    assert not states.step_can("interrupted", "running")
