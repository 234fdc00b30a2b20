"""The execution and step-run state machines, as data. `transitions.py` is their one writer."""

from __future__ import annotations

from typing import Final

# Executions ------------------------------------------------------------------------------
PENDING: Final = "pending"
RUNNING: Final = "running"
AWAITING_APPROVAL: Final = "awaiting_approval"
PAUSED: Final = "paused"
NEEDS_ATTENTION: Final = "needs_attention"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
REJECTED: Final = "rejected"
CANCELLED: Final = "cancelled"
EXPIRED: Final = "expired"
RATE_LIMITED: Final = "rate_limited"

EXECUTION_STATES: Final = (
    PENDING, RUNNING, AWAITING_APPROVAL, PAUSED, NEEDS_ATTENTION,
    SUCCEEDED, FAILED, REJECTED, CANCELLED, EXPIRED, RATE_LIMITED,
)
# Rate limited is active: the execution waits for its window, holding its target's lock.
ACTIVE_EXECUTION: Final = frozenset({PENDING, RUNNING, AWAITING_APPROVAL, PAUSED, NEEDS_ATTENTION,
                                     RATE_LIMITED})
FINAL_EXECUTION: Final = frozenset(EXECUTION_STATES) - ACTIVE_EXECUTION

EXECUTION_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    # A worker takes it; or a guard, the rate limit or a precondition stops it first.
    PENDING: frozenset({RUNNING, PAUSED, CANCELLED, RATE_LIMITED, FAILED}),
    RUNNING: frozenset({
        AWAITING_APPROVAL, SUCCEEDED, FAILED, NEEDS_ATTENTION, CANCELLED, PAUSED,
        # Released between steps: waiting out a retry backoff, or handed back after a crash.
        PENDING,
    }),
    # Approved: runnable again. Rejected, expired, or cancelled (by hand or by a resolve).
    AWAITING_APPROVAL: frozenset({PENDING, REJECTED, EXPIRED, CANCELLED}),
    PAUSED: frozenset({PENDING, CANCELLED}),
    # A human chooses: retry or skip (pending again), abort (failed), or cancel.
    NEEDS_ATTENTION: frozenset({PENDING, FAILED, CANCELLED}),
    # Its window passed (tried again), or its alerts resolved or a human cancelled it.
    RATE_LIMITED: frozenset({PENDING, CANCELLED}),
    **{state: frozenset() for state in FINAL_EXECUTION},
}

# Step runs --------------------------------------------------------------------------------
STEP_PENDING: Final = "pending"
STEP_RUNNING: Final = "running"
STEP_SUCCEEDED: Final = "succeeded"
STEP_FAILED: Final = "failed"
STEP_TIMED_OUT: Final = "timed_out"
STEP_SKIPPED: Final = "skipped"
STEP_AWAITING_APPROVAL: Final = "awaiting_approval"
STEP_APPROVED: Final = "approved"
STEP_REJECTED: Final = "rejected"
STEP_EXPIRED: Final = "expired"
STEP_INTERRUPTED: Final = "interrupted"
STEP_CANCELLED: Final = "cancelled"

STEP_STATES: Final = (
    STEP_PENDING, STEP_RUNNING, STEP_SUCCEEDED, STEP_FAILED, STEP_TIMED_OUT, STEP_SKIPPED,
    STEP_AWAITING_APPROVAL, STEP_APPROVED, STEP_REJECTED, STEP_EXPIRED, STEP_INTERRUPTED,
    STEP_CANCELLED,
)

STEP_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    # A step whose parameters cannot be rendered fails without running.
    STEP_PENDING: frozenset({STEP_RUNNING, STEP_AWAITING_APPROVAL, STEP_SKIPPED, STEP_CANCELLED,
                             STEP_FAILED}),
    STEP_AWAITING_APPROVAL: frozenset({
        STEP_APPROVED, STEP_REJECTED, STEP_EXPIRED, STEP_CANCELLED,
    }),
    # Approved steps start, unless a changed hash or plan voids the approvals first, or no
    # plan can be made any more (the step fails rather than run unplanned).
    STEP_APPROVED: frozenset({STEP_RUNNING, STEP_AWAITING_APPROVAL, STEP_CANCELLED,
                              STEP_SKIPPED, STEP_FAILED}),
    STEP_RUNNING: frozenset({STEP_SUCCEEDED, STEP_FAILED, STEP_TIMED_OUT, STEP_INTERRUPTED}),
    # After a crash: an idempotent step is retried; otherwise a human retries or skips.
    STEP_INTERRUPTED: frozenset({STEP_PENDING, STEP_SKIPPED}),
    STEP_SUCCEEDED: frozenset(),
    STEP_FAILED: frozenset(),
    STEP_TIMED_OUT: frozenset(),
    STEP_SKIPPED: frozenset(),
    STEP_REJECTED: frozenset(),
    STEP_EXPIRED: frozenset(),
    STEP_CANCELLED: frozenset(),
}
OPEN_STEP: Final = frozenset({STEP_PENDING, STEP_AWAITING_APPROVAL, STEP_APPROVED})


def execution_can(from_state: str, to_state: str) -> bool:
    return to_state in EXECUTION_TRANSITIONS.get(from_state, frozenset())


def step_can(from_state: str, to_state: str) -> bool:
    return to_state in STEP_TRANSITIONS.get(from_state, frozenset())

# Markers for `Execution.cursor` besides a step id.
CURSOR_ROLLBACK: Final = "!rollback"
CURSOR_END: Final = "!end"
