"""Invariant 5, checked in the source: only `transitions.py` writes execution or step state,
and only `notify/outbox.py` writes a notification's delivery state."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"
# The two writers: execution and step state, and the outbox's own delivery state.
ALLOWED = {APP / "engine" / "transitions.py", APP / "notify" / "outbox.py"}


def _status_writes(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            # What is assigned to, not what is read inside it (`counts[e.status] += 1`).
            stores = target.elts if isinstance(target, ast.Tuple) else [target]
            for sub in stores:
                # `self.status` in a constructor is an object's own field (an HTTP status).
                if (isinstance(sub, ast.Attribute) and sub.attr == "status"
                        and not (isinstance(sub.value, ast.Name) and sub.value.id == "self")):
                    lines.append(node.lineno)
        if isinstance(node, ast.Call) and any(k.arg == "status" for k in node.keywords):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "values":
                lines.append(node.lineno)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in {
                "setattr"} and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value == "status":
            lines.append(node.lineno)
    return lines


def test_only_transitions_writes_status():
    offenders = []
    for path in APP.rglob("*.py"):
        if path in ALLOWED:
            continue
        for line in _status_writes(ast.parse(path.read_text())):
            offenders.append(f"{path.relative_to(APP.parent)}:{line}")
    assert offenders == [], f"state written outside transitions.py: {offenders}"


def test_the_checker_catches_a_stray_write():
    stray = ast.parse("execution.status = 'succeeded'\nq.values(status='failed')\n"
                      "counts[e.status] += 1\na.b, run.status = 1, 'x'\n")
    assert sorted(_status_writes(stray)) == [1, 2, 4]


def test_the_outbox_moves_only_as_its_table_allows():
    from app.notify.models import OUTBOX_STATES, OUTBOX_TRANSITIONS, Notification
    from app.notify.outbox import OutboxStateError, move

    for from_state in OUTBOX_STATES:
        for to_state in OUTBOX_STATES:
            row = Notification(id=1, status=from_state)
            if to_state in OUTBOX_TRANSITIONS[from_state]:
                move(row, to_state, last_error="x")
                assert (row.status, row.last_error) == (to_state, "x")
            else:
                with pytest.raises(OutboxStateError):
                    move(row, to_state)
                assert row.status == from_state
