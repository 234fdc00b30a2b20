"""Parse catalog files: YAML with positions, and schema errors mapped back to lines.

Errors name `file:line:col`, taken from the YAML nodes that PyYAML composes (libyaml when it
is installed, for pre-commit speed). Lint and the loader both build on this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from app.catalog.matcher import (
    CompiledMapping,
    Matcher,
    MatcherError,
    parse_matchers,
    redos_warning,
    risky_regex,
)
from app.catalog.schema import MappingsFile, Runbook

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Severity = Literal["error", "warning"]
MAX_NODES = 200_000  # far above any runbook; below what would stall a pre-commit hook
Loc = tuple[str | int, ...]
# Action name -> its Params model (None when only the name is known).
ActionSpecs = Mapping[str, type[BaseModel] | None]


@dataclass(frozen=True, order=True)
class Issue:
    """One finding of lint or of the loader, at a position in a file."""

    file: str
    line: int
    col: int
    severity: Severity
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.severity}: {self.message}"

    def short(self) -> str:
        """`file:line:col: message`, as the loader reports errors."""
        return f"{self.file}:{self.line}:{self.col}: {self.message}"


@dataclass
class YamlDoc:
    """A parsed YAML file with the position of every key and value, by path."""

    path: str
    data: Any
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)

    def at(self, loc: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """The position of `loc`, or of its nearest ancestor that exists in the file."""
        loc = tuple(loc)
        if key and loc in self.keys:
            return self.keys[loc]
        while loc and loc not in self.values:
            loc = loc[:-1]
        return self.values.get(loc, (1, 1))

    def issue(self, loc: Sequence[str | int], message: str, *, severity: Severity = "error",
              key: bool = False) -> Issue:
        line, col = self.at(loc, key=key)
        return Issue(self.path, line, col, severity, message)


def read_yaml(path: Path) -> tuple[YamlDoc | None, list[Issue]]:
    """Parse one file; a syntax error becomes an Issue at the line where YAML noticed it."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Issue(name, 1, 1, "error", "file not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Issue(name, 1, 1, "error", f"cannot read the file: {exc}")]
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        return None, [Issue(name, line, col, "error", f"YAML syntax error: {problem}")]
    except yaml.YAMLError as exc:
        return None, [Issue(name, 1, 1, "error", f"YAML error: {exc}")]
    finally:
        loader.dispose()
    if node is not None and _expanded_size(node, {}) > MAX_NODES:
        # Aliases of aliases ("billion laughs") would make validation walk billions of nodes.
        return None, [Issue(name, 1, 1, "error", f"the file expands to more than {MAX_NODES} "
                                                 f"values through YAML aliases")]
    doc = YamlDoc(name, data)
    issues: list[Issue] = []
    if node is not None:
        _index(doc, node, (), issues, set())
    return doc, issues


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values the document has once every alias is expanded (memoised, so linear)."""
    if id(node) not in memo:
        memo[id(node)] = 1  # a cycle counts once instead of recursing forever
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        memo[id(node)] = 1 + sum(_expanded_size(c, memo) for c in children)
    return memo[id(node)]


def _index(doc: YamlDoc, node: yaml.Node, loc: Loc, issues: list[Issue], seen: set[int],
           ) -> None:
    doc.values[loc] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if id(node) in seen:
        return  # an alias: its positions are those of the anchor, indexed once
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*loc, key)
            position = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in seen:
                # PyYAML keeps the last value silently; a duplicated key is almost always a
                # paste error that hides the first value.
                issues.append(Issue(doc.path, *position, "error", f"duplicate key {key!r}"))
            seen.add(key)
            doc.keys[child] = position
            _index(doc, value_node, child, issues, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(doc, item, (*loc, i), issues, seen)


def dotted(loc: Sequence[str | int]) -> str:
    """`('steps', 2, 'with')` as `steps[2].with`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def schema_issues(doc: YamlDoc, exc: ValidationError) -> list[Issue]:
    """Pydantic's errors as Issues at the YAML position each one points at."""
    found: dict[tuple[int, int, str], Issue] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(err.get("loc", ()))
        kind = err.get("type", "")
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        if kind == "extra_forbidden":
            issue = doc.issue(loc, f"{_where(loc[:-1])}unknown key {loc[-1]!r}", key=True)
        elif kind == "missing":
            issue = doc.issue(loc, f"{_where(loc[:-1])}missing required key {loc[-1]!r}")
        else:
            issue = doc.issue(loc, f"{_where(_yaml_part(doc, loc))}{message}")
        found.setdefault((issue.line, issue.col, issue.message), issue)
    return list(found.values())


def _where(loc: Loc) -> str:
    return f"{dotted(loc)}: " if loc else ""


def _yaml_part(doc: YamlDoc, loc: Loc) -> Loc:
    # Union errors add member tags (`literal['stop',...]`, `Goto`) that are not in the file.
    while loc and loc not in doc.values:
        loc = loc[:-1]
    return loc


def catalog_files(remediations_dir: Path) -> list[Path]:
    """The runbook files of a directory, in a stable order; hidden files (editor locks and
    backups such as `.#drift.yaml`) are not runbooks."""
    found = [*remediations_dir.glob("*.yaml"), *remediations_dir.glob("*.yml")]
    return sorted(p for p in found if not p.name.startswith("."))


def compile_mappings(doc: YamlDoc, parsed: MappingsFile,
                     ) -> tuple[list[CompiledMapping], list[Issue]]:
    """Parse every mapping's matchers, at the position of each; a broken one is left out."""
    issues: list[Issue] = []
    compiled: list[CompiledMapping] = []
    names: dict[str, int] = {}
    for i, mapping in enumerate(parsed.mappings):
        loc: Loc = ("mappings", i)
        if mapping.name in names:
            issues.append(doc.issue((*loc, "name"), f"duplicate mapping name {mapping.name!r} "
                                    f"(also mappings[{names[mapping.name]}])"))
        names.setdefault(mapping.name, i)
        single = isinstance(mapping.matchers, str)
        items = [mapping.matchers] if single else mapping.matchers
        matchers: list[Matcher] = []
        ok = True
        for j, item in enumerate(items):
            where = (*loc, "matchers") if single else (*loc, "matchers", j)
            try:
                found = parse_matchers(item)
            except MatcherError as exc:
                issues.append(doc.issue(where, f"mapping {mapping.name!r}: {exc}"))
                ok = False
                continue
            matchers += found
            issues += [doc.issue(where, redos_warning(m.value), severity="warning")
                       for m in found if m.regex is not None and risky_regex(m.value)]
        if ok and not matchers:
            issues.append(doc.issue((*loc, "matchers"), f"mapping {mapping.name!r} has no "
                                    f"matchers: it takes every alert", severity="warning"))
        if ok:
            compiled.append(CompiledMapping(i, mapping.name, mapping.runbook, mapping.continue_,
                                            dict(mapping.params), tuple(matchers)))
    return compiled, issues


@dataclass
class ParsedRunbook:
    doc: YamlDoc
    runbook: Runbook | None


Preread = dict[Path, tuple[YamlDoc | None, list[Issue]]]


def parse_files(paths: Sequence[Path], *, mapping_files: int, preread: Preread | None = None,
                ) -> tuple[list[Issue], list[ParsedRunbook], list[tuple[YamlDoc, MappingsFile]]]:
    """Read and schema-check files: the first `mapping_files` are mappings, the rest runbooks."""
    issues: list[Issue] = []
    runbooks: list[ParsedRunbook] = []
    mappings: list[tuple[YamlDoc, MappingsFile]] = []
    for n, path in enumerate(paths):
        doc, found = (preread or {}).get(path) or read_yaml(path)
        issues += found
        if doc is None:
            continue
        if n < mapping_files:
            parsed, found = _parse_as(doc, MappingsFile, "a mappings file holds `mappings:`, a "
                                                         "list of {name, matchers, runbook}")
            issues += found
            if parsed is not None:
                mappings.append((doc, parsed))
        else:
            runbook, found = _parse_as(doc, Runbook, "a runbook file holds one mapping with id, "
                                                     "title, owner, steps and the other fields")
            issues += found
            runbooks.append(ParsedRunbook(doc, runbook))
    return issues, runbooks, mappings


def _parse_as(doc: YamlDoc, model: type[BaseModel], expected: str) -> tuple[Any, list[Issue]]:
    if not isinstance(doc.data, dict):
        what = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
        return None, [doc.issue((), f"the file is {what}; {expected}")]
    return parse_model(doc, model)


def action_specs(actions: Iterable[str] | ActionSpecs | None) -> ActionSpecs | None:
    """Names or a name -> Params mapping, as a mapping (None: do not check actions)."""
    if actions is None or isinstance(actions, dict):
        return actions
    return dict.fromkeys(actions)


def registry_specs(registry: Any) -> dict[str, Any]:
    """Action name to Params model, from an ActionRegistry (as it returns them: its
    `unplanned` attribute tells lint which actions have no plan())."""
    if hasattr(registry, "specs"):
        return registry.specs()
    return {name: registry.get(name).Params for name in registry.names()}


def parse_model(doc: YamlDoc, model: type[BaseModel]) -> tuple[Any, list[Issue]]:
    """Validate a document against a schema model; None and Issues when it fails."""
    try:
        return model.model_validate(doc.data), []
    except ValidationError as exc:
        return None, schema_issues(doc, exc)
