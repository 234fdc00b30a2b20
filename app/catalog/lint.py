"""Lint the catalog: every check that can be made without running anything. Pure.

Errors stop a catalog from loading; warnings (an overdue review, a risky-looking regex) do not.

Shadowing rule: a later mapping B can never match when an earlier mapping A without
`continue` matches every alert that B matches. We report it when each matcher of A is
implied by B's matchers: B holds the identical matcher, or B pins the label with
`name="v"` and A's matcher on that name accepts v. An A with no matchers shadows everything
after it. The rule is sound (never a false alarm) but not complete (it does not reason about
two regexes).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2.defaults import DEFAULT_NAMESPACE
from pydantic import AliasChoices, TypeAdapter, ValidationError

from app.actions.base import Waits
from app.actions.handoff import NAME as HANDOFF
from app.catalog.matcher import CompiledMapping, redos_warning, risky_regex, shadows
from app.catalog.params import check_value, spec_problems
from app.catalog.parser import (
    ActionSpecs,
    Issue,
    Loc,
    ParsedRunbook,
    YamlDoc,
    action_specs,
    catalog_files,
    compile_mappings,
    dotted,
    parse_files,
    read_yaml,
)
from app.catalog.schema import (
    CheckSpec,
    MappingsFile,
    ParamSpec,
    Runbook,
    Step,
    StormBrake,
)
from app.catalog.templating import (
    is_template,
    references,
    template_errors,
    unencoded_path_params,
)
from app.durations import format_duration

# Invariant 6: an action's templates (and the target, which actions see as execution.target)
# have no `alert`; alert data reaches them only through typed, validated params.
STEP_SCOPE = frozenset({"params", "steps", "execution"})
TARGET_SCOPE = frozenset({"params"})
# What the postmortem draft is rendered with (see remediations/model-drift.yaml).
POSTMORTEM_SCOPE = frozenset({"runbook", "execution", "params", "alerts", "steps", "timeline",
                              "objectives", "durations"})
_GLOBALS = frozenset(DEFAULT_NAMESPACE)
# `with` keys whose value is a URL or a path; a param in its path must stay one segment.
URL_KEYS = frozenset({"url", "href", "path", "uri"})
# Values that would climb or split a URL path, tried against a param's pattern.
_CLIMBERS = ("..", ".", "/", "a/b", "1/2", "A/B", "a/", "/a", "../a")
# Each template is parsed once per process: `references` walks Jinja's code generator, and
# lint reads every template twice (names, then unused params). Lint must be pre-commit fast.
_references = lru_cache(maxsize=8192)(references)
_path_params = lru_cache(maxsize=8192)(unencoded_path_params)

@dataclass
class Analysis:
    """Everything lint learned: the issues, and the parts that parsed."""

    issues: list[Issue] = field(default_factory=list)
    runbooks: list[ParsedRunbook] = field(default_factory=list)
    mappings: list[CompiledMapping] = field(default_factory=list)
    brake: StormBrake | None = None  # the mappings file's global storm brake


def lint(*paths: Path | str, actions: Iterable[str] | ActionSpecs | None = None,
         today: dt.date | None = None) -> list[Issue]:
    """Lint files and directories; a file holding `mappings:` is a mappings file."""
    runbook_paths: list[Path] = []
    mapping_paths: list[Path] = []
    preread: dict[Path, tuple[YamlDoc | None, list[Issue]]] = {}
    for raw in paths:
        path = Path(raw)
        for file in catalog_files(path) if path.is_dir() else [path]:
            preread[file] = read_yaml(file)
            doc = preread[file][0]
            is_mappings = doc is not None and isinstance(doc.data, dict) and "mappings" in doc.data
            (mapping_paths if is_mappings else runbook_paths).append(file)
    result = analyse(mapping_paths + runbook_paths, actions=actions, today=today,
                     mapping_files=len(mapping_paths), preread=preread)
    return sorted(result.issues)


def analyse(
    paths: Sequence[Path], *, actions: Iterable[str] | ActionSpecs | None,
    today: dt.date | None = None, mapping_files: int = 1,
    preread: dict[Path, tuple[YamlDoc | None, list[Issue]]] | None = None,
) -> Analysis:
    """Parse and check a catalog: the first `mapping_files` paths are mappings files."""
    specs = action_specs(actions)
    today = today or dt.datetime.now(dt.UTC).date()
    out = Analysis()
    issues, out.runbooks, mapping_docs = parse_files(paths, mapping_files=mapping_files,
                                                     preread=preread)
    out.issues += issues
    seen: dict[str, str] = {}
    for parsed in out.runbooks:
        rb = parsed.runbook
        if rb is None:
            continue
        if rb.id in seen:
            out.issues.append(parsed.doc.issue(
                ("id",), f"duplicate runbook id {rb.id!r}: {seen[rb.id]} has it too"))
            continue
        seen[rb.id] = parsed.doc.path
        out.issues += check_runbook(parsed.doc, rb, specs, today=today)
    known = {p.runbook.id: p.runbook for p in out.runbooks if p.runbook is not None}
    # A runbook that failed its schema still has an id: its own errors say what is wrong, so
    # a mapping that names it is not reported as naming a missing runbook.
    broken = {str(p.doc.data.get("id")) for p in out.runbooks
              if p.runbook is None and isinstance(p.doc.data, dict)}
    for doc, parsed_file in mapping_docs:
        compiled, issues = check_mappings(doc, parsed_file, known, broken=broken,
                                          check_runbooks=bool(out.runbooks))
        out.mappings += compiled
        out.issues += issues
        out.brake = out.brake or parsed_file.brake
    for p in out.runbooks:
        if p.runbook is not None and out.brake is not None:
            out.issues += _brake_shadowed(p.doc, p.runbook, out.brake)
    for p in out.runbooks:
        if p.runbook is not None:
            out.issues += _hand_offs(p.doc, p.runbook, known, broken)
    if mapping_docs:
        mapped = {m.runbook for m in out.mappings}
        for p in out.runbooks:
            if p.runbook is not None and p.runbook.id not in mapped:
                out.issues.append(p.doc.issue(("id",), f"no mapping in the mappings file sends "
                                              f"alerts to runbook {p.runbook.id!r}",
                                              severity="warning"))
    return out


def _hand_offs(doc: YamlDoc, rb: Runbook, known: dict[str, Runbook],
               broken: set[str]) -> list[Issue]:
    """A `runbook.start` step must name a runbook of this catalog and only its params."""
    issues = []
    for i, step in enumerate(rb.steps):
        other = step.with_.get("runbook") if step.action == HANDOFF else None
        if not isinstance(other, str) or is_template(other) or other in broken:
            continue
        if other not in known:
            issues.append(doc.issue(("steps", i, "with", "runbook"), f"runbook.start names "
                                    f"runbook {other!r}, which is not in this catalog"))
            continue
        given = step.with_.get("params") or {}
        unknown = sorted(set(given) - set(known[other].params)) if isinstance(given, dict) else []
        if unknown:
            issues.append(doc.issue(("steps", i, "with", "params"), f"runbook {other!r} takes "
                                    f"no parameter {', '.join(map(repr, unknown))}; it takes: "
                                    f"{', '.join(sorted(known[other].params)) or 'nothing'}"))
    return issues


def check_runbook(doc: YamlDoc, rb: Runbook, actions: ActionSpecs | None, *,
                  today: dt.date) -> list[Issue]:
    """Every check of one schema-valid runbook."""
    issues: list[Issue] = []
    add = issues.append
    stem = Path(doc.path).stem
    if stem != rb.id:
        add(doc.issue(("id",), f"the file is named {stem!r} but holds runbook {rb.id!r}",
                      severity="warning"))
    due = rb.reviewed_at + rb.review_every
    if due < today:
        add(doc.issue(("reviewed_at",), f"review overdue: reviewed {rb.reviewed_at}, due every "
                      f"{_fmt(rb.review_every)}, so due on {due}", severity="warning"))
    elif rb.reviewed_at > today:
        add(doc.issue(("reviewed_at",), f"reviewed_at {rb.reviewed_at} is in the future",
                      severity="warning"))
    params = set(rb.params)
    issues += _check_params(doc, rb)
    issues += _templates(doc, ("target",), rb.target, params=params, scope=TARGET_SCOPE)
    if not is_template(rb.target):
        add(doc.issue(("target",), "target is a constant: every alert would share one lock",
                      severity="warning"))
    issues += _templates(doc, ("postmortem",), rb.postmortem, params=None,
                         scope=POSTMORTEM_SCOPE)
    for j, check in enumerate(rb.preconditions):
        issues += _check_check(doc, ("preconditions", j), check, actions, params, set())
        issues += _url_paths(doc, ("preconditions", j, "with"), check.with_, rb)
    ids = {s.id for s in rb.steps}
    earlier: set[str] = set()
    for i, step in enumerate(rb.steps):
        if step.id in earlier:
            add(doc.issue(("steps", i, "id"), f"duplicate step id {step.id!r}"))
        issues += _check_step(doc, i, step, rb, actions, params, earlier, ids)
        earlier.add(step.id)
    for k, item in enumerate(rb.triage):
        c = item.check
        if c not in ids and not c.startswith(("https://", "http://")) and c not in rb.dashboards:
            add(doc.issue(("triage", k, "check"), f"triage check {c!r} is neither a step id, "
                          f"a dashboards entry, nor an http(s) link"))
    afters = [t.after for t in rb.escalation]
    if afters != sorted(afters):
        add(doc.issue(("escalation",), "escalation tiers should be in order of `after`",
                      severity="warning"))
    issues += _check_drill(doc, rb)
    used = _params_used(rb)
    for name in rb.params:
        if name not in used:
            add(doc.issue(("params", name), f"parameter {name!r} is never used",
                          severity="warning", key=True))
    return issues


def _check_drill(doc: YamlDoc, rb: Runbook) -> list[Issue]:
    """A drill runs with its own params (no alert gives any): each must be a parameter of
    the runbook and valid, and every parameter without a default must be given."""
    if rb.drill is None:
        return []
    issues = _mapping_params(doc, ("drill",), rb.drill.params, rb)
    missing = [name for name, spec in rb.params.items()
               if spec.default is None and name not in rb.drill.params]
    if missing:
        example = ", ".join(f"{name}: ..." for name in missing)
        issues.append(doc.issue(("drill",), (
            f"the drill has no value for required parameter{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} (no default): add `params: {{{example}}}` to `drill:`, "
            "naming something that exists on the real systems")))
    return issues


def _check_params(doc: YamlDoc, rb: Runbook) -> list[Issue]:
    issues = []
    for name, spec in rb.params.items():
        if spec.pattern is not None and risky_regex(spec.pattern):
            issues.append(doc.issue(("params", name, "pattern"), redos_warning(spec.pattern),
                                    severity="warning"))
        for where, problem in spec_problems(spec):
            issues.append(doc.issue(("params", name, *where), f"params.{name}: {problem}"))
    return issues


def _check_step(doc: YamlDoc, i: int, step: Step, rb: Runbook, actions: ActionSpecs | None,
                params: set[str], earlier: set[str], ids: set[str]) -> list[Issue]:
    loc: Loc = ("steps", i)
    issues = _check_action(doc, loc, step.action, step.with_, actions)
    issues += _templates(doc, (*loc, "with"), step.with_, params=params, steps=earlier)
    issues += _url_paths(doc, (*loc, "with"), step.with_, rb)
    if step.rate_key is not None:
        # A shared budget is keyed by what the alert is about, never by a step's output.
        issues += _templates(doc, (*loc, "rate_key"), step.rate_key, params=params,
                             scope=TARGET_SCOPE)
    # A verification and a rollback run after the step, so they may read its own output.
    after = earlier | {step.id}
    if step.verify is not None:
        issues += _check_check(doc, (*loc, "verify"), step.verify, actions, params, after)
        issues += _url_paths(doc, (*loc, "verify", "with"), step.verify.with_, rb)
    if step.rollback is not None:
        issues += _url_paths(doc, (*loc, "rollback", "with"), step.rollback.with_, rb)
        issues += _check_action(doc, (*loc, "rollback"), step.rollback.action,
                                step.rollback.with_, actions)
        issues += _templates(doc, (*loc, "rollback", "with"), step.rollback.with_,
                             params=params, steps=after)
    for key in ("on_failure", "on_success"):
        target = getattr(getattr(step, key), "goto", None)
        if target is not None and target not in ids:
            issues.append(doc.issue((*loc, key), f"goto {target!r}: no step has that id"))
        elif target is not None and rb.step_index(target) <= i:
            # The engine only jumps forward, so a loop can never form.
            issues.append(doc.issue((*loc, key), f"goto {target!r} points back (or to "
                                    f"itself); {key} can only go to a later step"))
    # `rollback` undoes this step and the earlier ones that succeeded: one of them needs one.
    if step.on_failure == "rollback" and not any(s.rollback for s in rb.steps[:i + 1]):
        issues.append(doc.issue((*loc, "on_failure"), "on_failure is rollback, but neither "
                                "this step nor an earlier one has a rollback"))
    if step.risk == "risky":
        if step.approvals is None:
            issues.append(doc.issue((*loc, "risk"), f"step {step.id!r} is risky but names no "
                                    f"approvers: add `approvals: 1` (or count/roles/identities)"))
        # Without an explicit timeout the engine waits until the last tier plus 15 minutes.
        wait = step.approval_timeout
        if wait is not None and rb.escalation and wait < rb.escalation[-1].after:
            issues.append(doc.issue(
                (*loc, "approval_timeout"),
                f"approval_timeout {_fmt(wait)} is shorter than the last escalation tier "
                f"({_fmt(rb.escalation[-1].after)}): the approval would expire before the "
                f"last tier is notified"))
    elif step.approvals is not None:
        issues.append(doc.issue((*loc, "approvals"), "approvals on a safe step are ignored; "
                                "mark the step `risk: risky`", severity="warning"))
    if step.retries and step.idempotent is False:
        issues.append(doc.issue((*loc, "retries"), "retries on a step marked idempotent: false "
                                "never happen (only idempotent steps are retried)",
                                severity="warning"))
    issues += _unplanned(doc, loc, step, actions)
    return issues


def _unplanned(doc: YamlDoc, loc: Loc, step: Step, actions: ActionSpecs | None) -> list[Issue]:
    """A risky step whose action has no plan() (a third-party one): nothing resolves the
    change for its approvers. The registry's specs name such actions in `unplanned`."""
    if step.risk != "risky" or step.action not in getattr(actions, "unplanned", ()):
        return []
    return [doc.issue((*loc, "action"), f"risky step {step.id!r} uses action {step.action!r}, "
                      "which has no plan(): its approvers will see only the rendered call, "
                      "not the concrete change, and a change in the world between approval "
                      "and run goes unnoticed", severity="warning")]


def _check_check(doc: YamlDoc, loc: Loc, check: CheckSpec, actions: ActionSpecs | None,
                 params: set[str], steps: set[str]) -> list[Issue]:
    return (_check_action(doc, loc, check.action, check.with_, actions)
            + _templates(doc, (*loc, "with"), check.with_, params=params, steps=steps)
            + _cannot_pass(doc, loc, check, actions))


def _cannot_pass(doc: YamlDoc, loc: Loc, check: CheckSpec,
                 actions: ActionSpecs | None) -> list[Issue]:
    """A check whose action must hold longer than the check may run never passes, and a
    verification that never passes rolls a good fix back."""
    model = actions.get(check.action) if actions is not None else None
    if model is None or check.within is None:
        return []
    waits = _literal_waits(model, check.with_)
    if waits is None or waits.at_least <= check.within.total_seconds():
        return []
    need = format_duration(dt.timedelta(seconds=waits.at_least))
    return [doc.issue((*loc, "within"), f"this check can never pass: its action must hold "
                      f"for {need}, but `within` ends the check after "
                      f"{_fmt(check.within)}; raise `within` above {need} or shorten the hold")]


def _literal_waits(model: Any, with_: dict[str, Any]) -> Waits | None:
    """The action's own waiting, from the literal values of `with` (templated ones keep their
    defaults); None when a literal does not validate (reported elsewhere)."""
    values: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        for key in _input_keys(model, only=name) & set(with_):
            if isinstance(with_[key], str) and is_template(with_[key]):
                continue
            try:
                values[name] = TypeAdapter(info.rebuild_annotation()).validate_python(
                    with_[key])
            except ValidationError:
                return None
    waits = getattr(model.model_construct(**values), "waits", None)
    return waits() if callable(waits) else None


def _check_action(doc: YamlDoc, loc: Loc, action: str, with_: dict[str, Any],
                  actions: ActionSpecs | None) -> list[Issue]:
    if actions is None:
        return []
    if action not in actions:
        close = difflib.get_close_matches(action, list(actions), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else \
            f"; known actions: {', '.join(sorted(actions))}"
        return [doc.issue((*loc, "action"), f"unknown action {action!r}{hint}")]
    model = actions[action]
    if model is None:
        return []
    fields = model.model_fields
    accepted = _input_keys(model)
    issues = []
    for key in with_:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f"did you mean {close[0]!r}?" if close else \
                f"it takes: {', '.join(sorted(fields)) or 'nothing'}"
            issues.append(doc.issue((*loc, "with", key), f"action {action!r} takes no parameter "
                                    f"{key!r}; {hint}", key=True))
    for name, info in fields.items():
        keys = _input_keys(model, only=name)
        if info.is_required() and not keys & set(with_):
            issues.append(doc.issue((*loc, "action"), f"action {action!r} needs the parameter "
                                    f"{info.alias or name!r} under `with:`"))
    return issues


def _input_keys(model: Any, only: str | None = None) -> set[str]:
    """The keys a Params model accepts as input: aliases, alias choices, or field names."""
    keys: set[str] = set()
    by_name = model.model_config.get("populate_by_name") or \
        model.model_config.get("validate_by_name")
    for name, info in model.model_fields.items():
        if only is not None and name != only:
            continue
        aliases = [info.alias] if info.alias else []
        choice = info.validation_alias
        if isinstance(choice, str):
            aliases.append(choice)
        elif isinstance(choice, AliasChoices):
            aliases += [c for c in choice.choices if isinstance(c, str)]
        keys |= set(aliases)
        if not aliases or by_name:
            keys.add(name)
    return keys


def _templates(doc: YamlDoc, loc: Loc, value: Any, *, params: set[str] | None,
               steps: set[str] | None = None, scope: frozenset[str] = STEP_SCOPE) -> list[Issue]:
    """Compile every template string in `value` and check the names it uses."""
    issues: list[Issue] = []
    for where, text in _strings(value, loc):
        if not is_template(text):
            continue
        error = template_errors(text)
        if error is not None:
            issues.append(doc.issue(where, f"{dotted(where)}: {error}"))
            continue
        names, attrs = _references(text)
        for name in sorted(names - scope - _GLOBALS):
            if name == "alert" and scope is not POSTMORTEM_SCOPE:
                issues.append(doc.issue(where, f"{dotted(where)}: reads `alert`, which is not in "
                                        f"an action's template context: an action never uses "
                                        f"alert labels or annotations directly; declare a typed "
                                        f"parameter (from: labels.x, with a pattern or an "
                                        f"allowed list) and use params.x"))
                continue
            issues.append(doc.issue(where, f"{dotted(where)}: unknown name {name!r}; a template "
                                    f"sees only {', '.join(sorted(scope))}"))
        issues += _attr_issues(doc, where, attrs, params=params, steps=steps, scope=scope)
    return issues


def _attr_issues(doc: YamlDoc, where: Loc, attrs: set[tuple[str, str]], *,
                 params: set[str] | None, steps: set[str] | None,
                 scope: frozenset[str]) -> list[Issue]:
    issues = []
    at = dotted(where)
    for base, attr in sorted(attrs):
        if base == "params" and params is not None and attr not in params:
            issues.append(doc.issue(where, f"{at}: params.{attr} is not a declared parameter"))
        elif base == "steps" and steps is not None and scope is not POSTMORTEM_SCOPE \
                and attr not in steps:
            issues.append(doc.issue(where, f"{at}: steps.{attr} is not an earlier step, so its "
                                    f"output does not exist yet"))
    return issues


def _url_paths(doc: YamlDoc, loc: Loc, value: Any, rb: Runbook) -> list[Issue]:
    """Warn when a URL path takes a param that could be `/`, `.` or `..`, unencoded."""
    issues = []
    for where, text in _strings(value, loc):
        if where[-1] not in URL_KEYS or not is_template(text):
            continue
        for name in sorted(_path_params(text)):
            spec = rb.params.get(name)
            climber = _climber(spec) if spec is not None else None
            if spec is not None and climber is not None:
                judged = "allowed list" if spec.allowed is not None else "pattern"
                issues.append(doc.issue(where, (
                    f"{dotted(where)}: params.{name} goes into a URL path, and its {judged} "
                    f"accepts {climber!r}, which would send the request elsewhere: write "
                    f"{{{{ params.{name} | path_segment }}}}, or narrow the {judged}"),
                    severity="warning"))
    return issues


def _climber(spec: ParamSpec) -> str | None:
    """A value the spec accepts that would climb or split a URL path (a heuristic: the
    allowed list, or a few probes tried against the pattern), or None."""
    if spec.type != "str":
        return None
    candidates = [str(a) for a in spec.allowed] if spec.allowed is not None else _CLIMBERS
    return next((c for c in candidates
                 if (c in (".", "..") or "/" in c) and len(c) <= spec.max_length
                 and (spec.pattern is None or re.fullmatch(spec.pattern, c) is not None)),
                None)


def _strings(value: Any, loc: Loc) -> Iterable[tuple[Loc, str]]:
    if isinstance(value, str):
        yield loc, value
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*loc, key))


def _params_used(rb: Runbook) -> set[str]:
    texts = [rb.target, rb.postmortem]
    for check in rb.preconditions:
        texts += [s for _, s in _strings(check.with_, ())]
    for step in rb.steps:
        for part in (step.with_, step.verify and step.verify.with_,
                     step.rollback and step.rollback.with_):
            texts += [s for _, s in _strings(part or {}, ())]
    used: set[str] = set()
    for text in texts:
        if is_template(text):
            names, attrs = _references(text)
            named = {a for b, a in attrs if b == "params"}
            if "params" in names and not named:
                return set(rb.params)  # the whole dict is used, e.g. in a loop
            used |= named
    return used


def check_mappings(doc: YamlDoc, parsed: MappingsFile, runbooks: dict[str, Runbook], *,
                   check_runbooks: bool = True, broken: frozenset[str] | set[str] = frozenset(),
                   ) -> tuple[list[CompiledMapping], list[Issue]]:
    """Compile the mappings and check the runbooks they name, their params and shadowing."""
    compiled, issues = compile_mappings(doc, parsed)
    for i, mapping in enumerate(parsed.mappings):
        loc: Loc = ("mappings", i)
        rb = runbooks.get(mapping.runbook)
        if rb is None and check_runbooks and mapping.runbook not in broken:
            close = difflib.get_close_matches(mapping.runbook, list(runbooks), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            issues.append(doc.issue((*loc, "runbook"), f"mapping {mapping.name!r} names runbook "
                                    f"{mapping.runbook!r}, which does not exist{hint}"))
        if rb is not None:
            issues += _mapping_params(doc, loc, mapping.params, rb)
    issues += _shadowed(doc, compiled)
    return compiled, issues


def _brake_shadowed(doc: YamlDoc, rb: Runbook, global_brake: StormBrake) -> list[Issue]:
    """A runbook's own brake that the global one always beats is a brake that never acts."""
    own = rb.limits.brake
    if own is None or own.targets < global_brake.targets or own.within > global_brake.within:
        return []
    return [doc.issue(("limits", "brake"), (
        f"this brake ({own.targets} targets within {_fmt(own.within)}) never engages: the "
        f"mappings file's global brake ({global_brake.targets} within "
        f"{_fmt(global_brake.within)}) counts this runbook's targets too and engages first; "
        f"lower `targets` or widen `within`, or remove it"), severity="warning")]


def _mapping_params(doc: YamlDoc, loc: Loc, values: dict[str, Any], rb: Runbook) -> list[Issue]:
    issues = []
    for name, value in values.items():
        spec = rb.params.get(name)
        if spec is None:
            issues.append(doc.issue((*loc, "params", name), f"runbook {rb.id!r} declares no "
                                    f"parameter {name!r}", key=True))
            continue
        try:
            check_value(spec, value, origin="the mapping")
        except ValueError as exc:
            issues.append(doc.issue((*loc, "params", name), f"params.{name}: {exc}"))
    return issues


def _shadowed(doc: YamlDoc, compiled: list[CompiledMapping]) -> list[Issue]:
    issues = []
    for j, later in enumerate(compiled):
        for earlier in compiled[:j]:
            if not earlier.continue_ and shadows(earlier.matchers, later.matchers):
                line = doc.at(("mappings", earlier.index))[0]
                issues.append(doc.issue(
                    ("mappings", later.index, "matchers"),
                    f"mapping {later.name!r} can never match: the earlier mapping "
                    f"{earlier.name!r} (line {line}) matches every alert it would, and has no "
                    f"`continue: true`; move it above, or narrow {earlier.name!r}"))
                break
    return issues


def _fmt(value: dt.timedelta) -> str:
    return format_duration(value)
