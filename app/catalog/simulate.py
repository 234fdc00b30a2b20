"""What the catalog would do with an alert, without doing any of it. Pure.

For each alert: which mappings and runbooks match, the validated parameters (or why they
fail), the target, and every step rendered, with whether it would run on its own, wait for
approval, or be held by a guard. Outputs of earlier steps cannot be known yet, so templates
see placeholders that render as `<output of step check-drift>`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.catalog.loader import Catalog, LoadedRunbook
from app.catalog.matcher import CompiledMapping
from app.catalog.params import ParamError, render_target, resolve_params
from app.catalog.parser import ActionSpecs
from app.catalog.schema import CheckSpec, Runbook, Step
from app.catalog.simulate_limits import SimLimits, SimStepRate, limits_of, step_rate
from app.catalog.templating import RenderError, make_context, render_string
from app.durations import format_duration
from app.errors import Invalid, describe_validation_errors
from app.intake.models import FIRING
from app.intake.normalize import from_alertmanager, from_pagerduty
from app.intake.schemas import AlertmanagerWebhook, GrafanaWebhook, PagerDutyWebhook


class Guards(Protocol):
    """What simulate asks of the guards (the engine's GuardState): why a runbook is held."""

    def holds(self, runbook_id: str) -> str | None: ...


class _NoGuards:
    def holds(self, runbook_id: str) -> str | None:
        return None


# What a Pending renders as, so that a half-known `with:` is not validated too early.
PENDING = re.compile(r"<(?:[^<>]* of )?(?:step [a-z0-9-]+|execution id)>")
_UNRENDERED = re.compile(r"\{\{|\{%")
MAX_ALERTS = 500  # one simulation is for a person to read, not a load test
SHOWN = 200  # characters of a label value shown back; alert data is hostile and may be huge


class Pending:
    """A value known only when the execution runs; renders as `<output of step x>`."""

    __slots__ = ("_label", "_path")

    def __init__(self, label: str, path: tuple[str, ...] = ()):
        self._label = label
        self._path = path

    def __getattr__(self, name: str) -> Pending:
        if name.startswith("_"):
            raise AttributeError(name)
        return Pending(self._label, (*self._path, name))

    def __getitem__(self, key: Any) -> Pending:
        return Pending(self._label, (*self._path, str(key)))

    def __str__(self) -> str:
        return f"<{'.'.join(self._path)} of {self._label}>" if self._path else f"<{self._label}>"

    def __iter__(self) -> Any:
        return iter(())


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class SimAlert(_Out):
    source: str
    status: str = FIRING
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)


class SimApprovals(_Out):
    count: int
    roles: list[str]
    identities: list[str]


class SimCheck(_Out):
    title: str = ""
    action: str
    with_: dict[str, Any] = Field(alias="with")
    within: str | None = None
    errors: list[str] = Field(default_factory=list)


class SimStep(_Out):
    position: int
    id: str
    title: str
    action: str
    risk: Literal["safe", "risky"]
    # `skipped`: the step's budget is spent (known only when the database was read).
    decision: Literal["run", "needs_approval", "held", "skipped"]
    reason: str
    approvals: SimApprovals | None = None
    idempotent: bool | None = None
    timeout: str | None = None
    retries: int = 0
    on_failure: str
    on_success: str = "next"
    with_: dict[str, Any] = Field(alias="with")
    errors: list[str] = Field(default_factory=list)
    verify: SimCheck | None = None
    rollback: SimCheck | None = None
    rate: SimStepRate | None = None
    # With `--plan` only (it reads live systems): the concrete change, or why there is none.
    plan: str | None = None
    plan_error: str | None = None


class SimParamError(_Out):
    name: str
    reason: str


class SimRunbook(_Out):
    mapping: str
    runbook: str
    title: str
    version: str
    severity: str
    would_execute: bool
    reason: str
    params: dict[str, Any] | None = None
    param_errors: list[SimParamError] = Field(default_factory=list)
    target: str | None = None
    held_by: str | None = None
    limits: SimLimits
    preconditions: list[SimCheck] = Field(default_factory=list)
    steps: list[SimStep] = Field(default_factory=list)


class SimulationResult(_Out):
    """The plan for one alert."""

    alert: SimAlert
    matched: bool
    runbooks: list[SimRunbook] = Field(default_factory=list)


class SimulationReport(_Out):
    """The plans for every alert of one input."""

    results: list[SimulationResult]
    notes: list[str] = Field(default_factory=list)


def clip(value: str, limit: int = SHOWN) -> str:
    """A hostile value cut to `limit` characters, saying how long it really was."""
    return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"


def simulate(
    catalog: Catalog, *, labels: Mapping[str, str], annotations: Mapping[str, str] | None = None,
    guards: Guards | None = None, source: str = "alertmanager", status: str = FIRING,
    actions: ActionSpecs | None = None,
) -> SimulationResult:
    """The plan for one alert: matches, params, target and every step, rendered."""
    annotations = annotations or {}
    guards = guards or _NoGuards()
    shown = SimAlert(source=source, status=status,
                     labels={clip(k, 100): clip(v) for k, v in labels.items()},
                     annotations={clip(k, 100): clip(v) for k, v in annotations.items()})
    matches = catalog.match(labels)
    plans = [_plan(mapping, loaded, labels, annotations, guards, status, actions)
             for mapping, loaded in matches]
    return SimulationResult(alert=shown, matched=bool(plans), runbooks=plans)


def _plan(mapping: CompiledMapping, loaded: LoadedRunbook, labels: Mapping[str, str],
          annotations: Mapping[str, str], guards: Guards, status: str,
          actions: ActionSpecs | None) -> SimRunbook:
    rb = loaded.runbook
    held = guards.holds(rb.id)
    out = SimRunbook(mapping=mapping.name, runbook=rb.id, title=rb.title, version=loaded.version,
                     severity=rb.severity, would_execute=False, reason="", held_by=held,
                     limits=limits_of(rb))
    params: dict[str, Any] | None = None
    try:
        params = resolve_params(rb, labels=labels, annotations=annotations,
                                overrides=mapping.params)
        out.params = params
        out.target = render_target(rb, params)
    except ParamError as exc:
        out.param_errors = [SimParamError(name=p.name, reason=p.reason) for p in exc.problems]
        out.reason = f"no execution: {exc}"
    except (RenderError, ValueError) as exc:
        out.reason = f"no execution: the target does not render: {exc}"
        params = None
    context = None if params is None or out.target is None else _context(rb, params, out.target)
    if not out.reason:
        if status != FIRING:
            out.reason = f"no execution: the alert is {status}"
        else:
            out.would_execute = True
            out.reason = (f"an execution would start, held by a guard ({held})" if held
                          else "an execution would start")
    out.preconditions = [_check(c, context, None, actions) for c in rb.preconditions]
    out.steps = [_step(i, step, rb, context, held, actions) for i, step in enumerate(rb.steps)]
    for sim, step in zip(out.steps, rb.steps, strict=True):
        sim.rate = step_rate(step, rb, context, out.target)
    return out


def _context(rb: Runbook, params: dict[str, Any], target: str) -> dict[str, Any]:
    """What the engine's step_context will hold: params, steps, execution; never the alert."""
    steps = {s.id: Pending(f"step {s.id}") for s in rb.steps}
    execution = {"id": Pending("execution id"), "runbook": rb.id, "target": target,
                 "dry_run": False}
    return make_context(params=params, steps=steps, execution=execution)


def _step(i: int, step: Step, rb: Runbook, context: dict[str, Any] | None, held: str | None,
          actions: ActionSpecs | None) -> SimStep:
    if held:
        decision, reason = "held", f"held: {held}"
    elif step.risk == "risky":
        decision, reason = "needs_approval", "risky: waits for approval"
    else:
        decision, reason = "run", "safe: runs on its own"
    approvals = None
    if step.risk == "risky":
        spec = step.approvals
        approvals = SimApprovals(count=spec.count if spec else 1,
                                 roles=list(spec.roles) if spec else ["approver"],
                                 identities=list(spec.identities) if spec else [])
        who = ", ".join([*approvals.roles, *approvals.identities])
        reason += f" ({approvals.count} of: {who})"
    rendered, errors = _render(step.with_, context)
    errors += _validate(step.action, rendered, actions)
    on_failure, on_success = (policy if isinstance(policy, str) else f"goto {policy.goto}"
                              for policy in (step.on_failure, step.on_success))
    rollback = None
    if step.rollback is not None:
        rollback = _check(CheckSpec(action=step.rollback.action, title=step.rollback.title,
                                    **{"with": step.rollback.with_}), context, None, actions)
    return SimStep(
        position=i + 1, id=step.id, title=step.title, action=step.action, risk=step.risk,
        decision=decision, reason=reason, approvals=approvals, idempotent=step.idempotent,
        timeout=_dur(step.timeout), retries=step.retries, on_failure=on_failure,
        on_success=on_success, with_=rendered, errors=errors, rollback=rollback,
        verify=_check(step.verify, context, step.verify.within, actions) if step.verify else None,
    )


def _check(check: CheckSpec, context: dict[str, Any] | None, within: dt.timedelta | None,
           actions: ActionSpecs | None) -> SimCheck:
    rendered, errors = _render(check.with_, context)
    errors += _validate(check.action, rendered, actions)
    return SimCheck(title=check.title, action=check.action, with_=rendered,
                    within=_dur(within or check.within), errors=errors)


def _render(value: Any, context: dict[str, Any] | None) -> tuple[Any, list[str]]:
    """Render every string; one that fails is shown as written, with the reason."""
    errors: list[str] = []

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            if context is None:
                return item
            try:
                return render_string(item, context)
            except Exception as exc:  # a placeholder in arithmetic raises TypeError, say
                errors.append(f"cannot render {item[:60]!r} yet: {exc}")
                return item
        if isinstance(item, list):
            return [walk(v) for v in item]
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        return item

    # Without valid params nothing renders; the runbook's `reason` already says why.
    return walk(value), errors


def _validate(action: str, rendered: dict[str, Any], actions: ActionSpecs | None) -> list[str]:
    """Check fully rendered parameters against the action's model, as the engine will."""
    model = (actions or {}).get(action)
    text = repr(rendered)
    if model is None or _UNRENDERED.search(text) or PENDING.search(text):
        return []  # a half-known `with:`: only the run can tell
    try:
        model.model_validate(rendered)
    except ValidationError as exc:
        return [f"{action}: {d['field']}: {d['message']}"
                for d in describe_validation_errors(list(exc.errors()))]
    return []


def _dur(value: dt.timedelta | None) -> str | None:
    return format_duration(value) if value is not None else None


def alerts_from_body(body: Any, *, received_at: dt.datetime | None = None) -> list[SimAlert]:
    """The alerts of an Alertmanager, Grafana or PagerDuty V3 body, or of a plain list."""
    now = received_at or dt.datetime.now(dt.UTC)
    alerts = body.get("alerts") if isinstance(body, dict) else body
    if isinstance(alerts, list) and len(alerts) > MAX_ALERTS:
        raise Invalid(f"the body holds {len(alerts)} alerts; simulate takes at most "
                      f"{MAX_ALERTS} at once")
    try:
        if isinstance(body, dict) and "event" in body:
            envelope = from_pagerduty(PagerDutyWebhook.model_validate(body), received_at=now,
                                      webhook_id=None)
        elif isinstance(body, dict) and "alerts" in body:
            grafana = str(body.get("version")) == "1"
            model = GrafanaWebhook if grafana else AlertmanagerWebhook
            envelope = from_alertmanager(model.model_validate(body), received_at=now,
                                         source="grafana" if grafana else "alertmanager")
        elif isinstance(body, list) or (isinstance(body, dict) and "labels" in body):
            items = body if isinstance(body, list) else [body]
            return [_Plain.model_validate(item).as_alert() for item in items]
        else:
            raise Invalid("not an alert: expected an Alertmanager or Grafana body (alerts[]), "
                          "a PagerDuty V3 webhook (event), or {labels, annotations}")
    except ValidationError as exc:
        details = describe_validation_errors(list(exc.errors()))
        raise Invalid("the alert body is not valid", details=details) from None
    return [SimAlert(source=a.source, status=_status(a.status), labels=dict(a.labels),
                     annotations=dict(a.annotations)) for a in envelope.alerts]


def _status(status: str) -> str:
    return FIRING if status == "triggered" else status


class _Plain(BaseModel):
    """An alert as Alertmanager's own API takes it: labels and annotations."""

    model_config = ConfigDict(extra="ignore")
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"

    def as_alert(self) -> SimAlert:
        return SimAlert(source="manual", status=self.status, labels=self.labels,
                        annotations=self.annotations)


def simulate_alerts(catalog: Catalog, alerts: list[SimAlert], *, guards: Guards | None = None,
                    actions: ActionSpecs | None = None) -> SimulationReport:
    """Simulate every alert of one input."""
    results = [simulate(catalog, labels=a.labels, annotations=a.annotations, guards=guards,
                        source=a.source, status=a.status, actions=actions) for a in alerts]
    notes = [] if alerts else ["the input holds no alert that could start an execution"]
    return SimulationReport(results=results, notes=notes)
