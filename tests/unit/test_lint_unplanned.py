"""Lint warns when a risky step uses an action without plan(): its approvers would see only the
rendered call. The registry's specs say which actions those are."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from app.actions.base import ActionContext, ActionParams, ActionResult
from app.actions.registry import ActionRegistry, default_registry
from app.catalog.lint import lint
from app.catalog.parser import registry_specs
from tests.support.catalog_fixtures import ACTIONS, line_of, runbook_text, write_catalog

TODAY = dt.date(2026, 11, 26)
RISKY = "    action: noop\n    risk: risky"


class FlipParams(ActionParams):
    message: str


class AcmeFlip:
    """A third-party action: it changes something, and has no plan()."""

    name: ClassVar[str] = "acme.flip"
    Params = FlipParams
    idempotent: ClassVar[bool] = False
    description: ClassVar[str] = "Flips a flag at Acme."

    async def run(self, ctx: ActionContext, params: Any) -> ActionResult:
        return ActionResult("flipped")


def specs() -> dict[str, Any]:
    registry = default_registry()
    registry.register(AcmeFlip())
    return registry_specs(registry)


def unplanned(issues: list[Any]) -> list[Any]:
    return [i for i in issues if "which has no plan()" in i.message]


def test_the_registry_names_the_actions_without_a_plan() -> None:
    found = registry_specs(default_registry()).unplanned
    assert {"noop", "prometheus.query", "artifact.verify", "mlflow.get_alias"} <= found
    assert not {"registry.set_alias", "mlflow.rollback_alias", "http.request", "command.run",
                "notify.slack", "pagerduty.trigger"} & found
    registry = ActionRegistry()
    registry.register(AcmeFlip())
    assert registry.specs().unplanned == {"acme.flip"}
    assert registry.specs() == {"acme.flip": FlipParams}


def test_a_risky_step_with_an_unplanned_action_is_a_warning(tmp_path) -> None:
    text = runbook_text(replace={RISKY: "    action: acme.flip\n    risk: risky"})
    mappings, remediations = write_catalog(tmp_path, {"drift": text})
    [issue] = unplanned(lint(mappings, remediations, actions=specs(), today=TODAY))
    assert issue.severity == "warning"
    assert issue.line == line_of(text, "action: acme.flip")
    assert issue.message == (
        "risky step 'change' uses action 'acme.flip', which has no plan(): its approvers will "
        "see only the rendered call, not the concrete change, and a change in the world "
        "between approval and run goes unnoticed")


def test_safe_steps_planned_actions_and_plain_specs_are_not_warned(tmp_path) -> None:
    safe = runbook_text(replace={RISKY: "    action: acme.flip\n    risk: safe",
                                 "    approvals: {count: 2, roles: [approver], "
                                 "identities: [alice]}\n": ""})
    mappings, remediations = write_catalog(tmp_path / "safe", {"drift": safe})
    assert unplanned(lint(mappings, remediations, actions=specs(), today=TODAY)) == []
    planned = runbook_text(replace={
        RISKY: "    action: registry.set_alias\n    risk: risky",
        'with: {message: "rolling back from {{ steps.check.output.version }}"}':
            'with: {model: "{{ params.model }}", alias: champion, version: previous}'})
    mappings, remediations = write_catalog(tmp_path / "planned", {"drift": planned})
    assert unplanned(lint(mappings, remediations, actions=specs(), today=TODAY)) == []
    # Specs that do not say which actions plan (names, or a plain dict) warn about nothing.
    mappings, remediations = write_catalog(tmp_path / "plain")
    assert unplanned(lint(mappings, remediations, actions=ACTIONS, today=TODAY)) == []
