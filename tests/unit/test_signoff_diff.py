"""The risky diff (change sign-off): which changes of a runbook need a reviewer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.catalog.signoff_diff import RiskyChange, risky_changes


def book(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": "rb", "title": "A runbook", "summary": "why",
        "steps": [
            {"id": "check", "action": "prometheus.query", "risk": "safe",
             "with": {"query": "up"}, "approvals": None, "rollback": None},
            {"id": "promote", "action": "mlflow.set_alias", "risk": "risky",
             "with": {"alias": "champion", "version": "{{ params.v }}"},
             "approvals": {"count": 1, "roles": ["approver"], "identities": []},
             "rollback": {"title": "back", "action": "mlflow.set_alias",
                          "with": {"alias": "champion", "version": "1"}, "auto": False},
             "timeout": None, "description": "promote it"},
        ],
    }
    for path, value in changes.items():
        *where, last = path.split("__")
        node = base
        for key in where:
            node = node["steps"][int(key)] if key.isdigit() else node[key]
        node[last] = value
    return base


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, []),
    # Prose, safe steps and a risky step's words need no reviewer.
    ({"title": "Renamed", "summary": "new words"}, []),
    ({"0__with": {"query": "up == 0"}, "0__action": "http.get"}, []),
    ({"1__description": "promote the model", "1__timeout": 60.0, "1__title": "Promote"}, []),
    # A risky step's action, with, approvals or rollback need one.
    ({"1__action": "registry.set_alias"}, [RiskyChange("promote", "changed", ("action",))]),
    ({"1__with": {"alias": "champion", "version": "2"}},
     [RiskyChange("promote", "changed", ("with",))]),
    ({"1__approvals": {"count": 2, "roles": ["approver"], "identities": []},
      "1__rollback": None},
     [RiskyChange("promote", "changed", ("approvals", "rollback"))]),
    # Risk itself.
    ({"1__risk": "safe"}, [RiskyChange("promote", "made_safe")]),
    ({"0__risk": "risky"}, [RiskyChange("check", "made_risky")]),
])
def test_what_needs_a_reviewer(changes: dict[str, Any], expected: list[RiskyChange]):
    assert risky_changes(book(), book(**changes)) == expected


def test_a_risky_step_added_or_removed_is_a_change():
    before = book()
    after = copy.deepcopy(before)
    after["steps"].append({**after["steps"][1], "id": "promote-again"})
    assert risky_changes(before, after) == [RiskyChange("promote-again", "added")]
    assert risky_changes(after, before) == [RiskyChange("promote-again", "removed")]
    # Removing a safe step is not.
    fewer = copy.deepcopy(before)
    del fewer["steps"][0]
    assert risky_changes(before, fewer) == []


def test_with_nothing_signed_every_risky_step_is_new():
    assert risky_changes(None, book()) == [RiskyChange("promote", "added")]
    safe_only = book(**{"1__risk": "safe"})
    assert risky_changes(None, safe_only) == []


def test_each_change_reads_as_one_line():
    assert RiskyChange("promote", "changed", ("with", "rollback")).describe() == \
        "step promote: with, rollback changed"
    assert RiskyChange("promote", "added").describe() == "step promote: risky step added"
    assert RiskyChange("promote", "made_safe").describe() == "step promote: no longer risky"
