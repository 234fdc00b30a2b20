"""Sandboxed rendering of runbook templates. Pure.

Only the runbook's own strings are template source. Values enter as data in the context
(`params`, `steps`, `execution`) and are never compiled, so `{{ 7*7 }}` in a label stays the
five characters it is. There is no `alert` in that context (invariant 6): alert data reaches
an action only through typed, validated params. The sandbox blocks attribute tricks, and
StrictUndefined turns a typo into an error instead of an empty string.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from jinja2 import StrictUndefined, TemplateError, TemplateRuntimeError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

DOT_SEGMENTS = frozenset({"", ".", ".."})


def path_segment(value: Any) -> str:
    """`value` as exactly one URL path segment: everything outside RFC 3986's unreserved
    characters is percent-encoded, `/` included; `.`, `..` and "" are refused, because a
    client or a proxy would remove or collapse them and the request would go elsewhere."""
    text = str(value)
    if text in DOT_SEGMENTS:
        raise TemplateRuntimeError(f"path_segment: {text!r} is not a usable path segment "
                                   f"(it would climb or vanish from the URL)")
    return quote(text, safe="")


_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
)
_ENV.filters["path_segment"] = path_segment
# A rendered value longer than this is refused: it would only carry alert junk onwards.
MAX_RENDERED = 65_536


class RenderError(Exception):
    """A template failed to compile or to render; the message names the template."""


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    try:
        return _ENV.from_string(source)
    except TemplateError as exc:
        raise RenderError(f"template {source[:60]!r} does not compile: {exc}") from None


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value or "{#" in value


def render_string(source: str, context: Mapping[str, Any]) -> str:
    """Render one template string."""
    if not is_template(source):
        return source
    template = _compile(source)
    try:
        out = template.render(**context)
    except TemplateError as exc:
        raise RenderError(f"template {source[:60]!r} failed: {exc}") from None
    if len(out) > MAX_RENDERED:
        raise RenderError(f"template {source[:60]!r} rendered {len(out)} characters, "
                          f"over the limit of {MAX_RENDERED}")
    return out


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every string inside a JSON-like value; keys and other types are kept."""
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    return value


def freeze(value: Any) -> Any:
    """A read-only view of a JSON-like value, so templates cannot mutate their inputs."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


def make_context(
    *, params: Mapping[str, Any], steps: Mapping[str, Any] | None = None,
    execution: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole scope an action's template (and the target) can see; no `alert`, by design."""
    return {
        "params": freeze(dict(params)),
        "steps": freeze(dict(steps or {})),
        "execution": freeze(dict(execution or {})),
    }


def template_errors(source: str) -> str | None:
    """The compile error of a template, or None."""
    try:
        _compile(source)
    except RenderError as exc:
        return str(exc)
    return None


def references(source: str) -> tuple[set[str], set[tuple[str, str]]]:
    """Top-level names a template uses, and its `name.attr` references (for lint)."""
    try:
        ast = _ENV.parse(source)
    except TemplateError:
        return set(), set()
    names = meta.find_undeclared_variables(ast)
    attrs: set[tuple[str, str]] = set()
    for node in ast.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name):
            attrs.add((node.node.name, node.attr))
    for node in ast.find_all(nodes.Getitem):
        if isinstance(node.node, nodes.Name) and isinstance(node.arg, nodes.Const):
            attrs.add((node.node.name, str(node.arg.value)))
    return names, attrs


def unencoded_path_params(source: str) -> set[str]:
    """Params a URL template puts into its path without `| path_segment` (for lint).

    The path is what follows `scheme://host/` (or the whole text when it has no scheme) and
    comes before `?` or `#`; literal text is read in source order, statement blocks included.
    """
    try:
        ast = _ENV.parse(source)
    except TemplateError:
        return set()
    found: set[str] = set()
    seen = [""]  # the literal text before the current expression

    def in_path() -> bool:
        text = seen[0]
        _, scheme, rest = text.partition("://")
        return "?" not in text and "#" not in text and (not scheme or "/" in rest)

    def visit(node: nodes.Node) -> None:
        if isinstance(node, nodes.TemplateData):
            seen[0] += node.data
        elif isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    visit(child)
                elif in_path():
                    found.update(_raw_params(child))
        else:  # a statement: its blocks, in order; its own expressions print nothing
            for child in node.iter_child_nodes():
                if isinstance(child, nodes.Stmt | nodes.Template):
                    visit(child)

    visit(ast)
    return found


def _raw_params(node: nodes.Node) -> set[str]:
    if isinstance(node, nodes.Filter) and node.name == "path_segment":
        return set()
    out: set[str] = set()
    if isinstance(node, nodes.Getattr | nodes.Getitem) and isinstance(node.node, nodes.Name) \
            and node.node.name == "params":
        if isinstance(node, nodes.Getattr):
            out.add(node.attr)
        elif isinstance(node.arg, nodes.Const):
            out.add(str(node.arg.value))
    for child in node.iter_child_nodes():
        out |= _raw_params(child)
    return out


def strings_in(value: Any) -> list[str]:
    """Every string inside a JSON-like value, for lint."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    return []
