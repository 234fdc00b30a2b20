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

from jinja2 import StrictUndefined, TemplateError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
)
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


def strings_in(value: Any) -> list[str]:
    """Every string inside a JSON-like value, for lint."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    return []
