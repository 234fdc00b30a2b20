"""Alertmanager label matchers, and first-match-wins mapping selection. Pure.

The syntax is Alertmanager's: `name=value`, `!=`, `=~`, `!~`, written as a YAML list of
matchers or as one `{a="b", c!="d"}` string. Values follow the classic parser's rules
(OpenMetrics escapes `\\"`, `\\n` and `\\\\` inside double quotes; any other backslash is a
literal one, so `"\\d+"` is the regex `\\d+`), which is what existing Alertmanager
configurations rely on. Label names may also be double-quoted, as in the UTF-8 parser.

Regexes are fully anchored (`^(?:re)$`) and a missing label equals the empty string, so
`team=""` matches an alert without a `team` label and `team!=""` one that has it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

Op = Literal["=", "!=", "=~", "!~"]
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_OPS: tuple[Op, ...] = ("=~", "!=", "!~", "=")  # `=~` before `=`: the longest operator wins
# The longest matcher text worth reading; anything longer is a mistake, not a matcher.
MAX_MATCHER_TEXT = 8192
# A group with a quantifier inside that is itself quantified: `(a+)+`, `(.*x)*`. Python's
# regex engine backtracks, so such a pattern can spin on a long hostile label.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[+*](?:[^()\\]|\\.)*\)[+*{]")


class MatcherError(ValueError):
    """A matcher that cannot be parsed; the message quotes it and says what is wrong."""


@dataclass(frozen=True)
class Matcher:
    """One label matcher; `matches` is a pure function of a label set."""

    name: str
    op: Op
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def build(cls, name: str, op: Op, value: str) -> Matcher:
        """A matcher with its regex compiled, fully anchored as Alertmanager does."""
        regex = None
        if op in ("=~", "!~"):
            try:
                # fullmatch of a group is `^(?:re)$` without Python's `$`-before-newline quirk.
                regex = re.compile(f"(?:{value})")
            except re.error as exc:
                raise MatcherError(f"bad regex in {name}{op}{quote(value)}: {exc}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label set satisfies this matcher (a missing label is the empty string)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        name = self.name if _NAME.fullmatch(self.name) else quote(self.name)
        return f"{name}{self.op}{quote(self.value)}"


def quote(value: str) -> str:
    """A value as a double-quoted matcher string, escaped so that it parses back unchanged."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def parse_matchers(spec: str | Sequence[str]) -> list[Matcher]:
    """Parse the list form (each item may itself hold several) or the `{...}` string form."""
    items = [spec] if isinstance(spec, str) else list(spec)
    out: list[Matcher] = []
    for item in items:
        if not isinstance(item, str):
            raise MatcherError(f"a matcher must be a string, not {type(item).__name__}")
        out.extend(parse_group(item))
    return out


def parse_group(text: str) -> list[Matcher]:
    """Parse one string of comma-separated matchers, with optional (paired) braces."""
    if len(text) > MAX_MATCHER_TEXT:
        raise MatcherError(f"matcher text is {len(text)} characters; the limit is "
                           f"{MAX_MATCHER_TEXT}")
    body = text.strip()
    opened, closed = body.startswith("{"), body.endswith("}")
    if opened != closed:
        raise MatcherError(f"unbalanced braces in {text!r}: write both {{ and }} or neither")
    if opened:
        body = body[1:-1]
        if body.lstrip().startswith("{") or body.rstrip().endswith("}"):
            raise MatcherError(f"duplicate braces in {text!r}")
    parts = _split_commas(body)
    if parts and not parts[-1].strip():
        parts.pop()  # a single trailing comma is allowed
    matchers = []
    for part in parts:
        if not part.strip():
            raise MatcherError(f"empty matcher between commas in {text!r}")
        matchers.append(parse_one(part))
    return matchers


def _split_commas(body: str) -> list[str]:
    """Split on commas outside double quotes; a backslash escapes the next character."""
    parts, start, inside, escaped = [], 0, False, False
    for i, ch in enumerate(body):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            inside = not inside
        elif ch == "," and not inside:
            parts.append(body[start:i])
            start = i + 1
    # An odd quote is left for parse_one, which can say which matcher holds it.
    parts.append(body[start:])
    return parts


def parse_one(text: str) -> Matcher:
    """Parse a single matcher such as `severity=~"warning|critical"`."""
    rest = text.strip()
    if rest.startswith('"'):
        name, rest = _quoted_prefix(rest, text)
        if not name:
            raise MatcherError(f"empty label name in {text!r}")
    else:
        found = _NAME.match(rest)
        if not found:
            raise MatcherError(
                f"bad matcher {text.strip()!r}: expected a label name such as severity, then "
                f"=, !=, =~ or !~, then a value")
        name, rest = found.group(), rest[found.end():]
    rest = rest.lstrip()
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if op is None:
        raise MatcherError(f"bad matcher {text.strip()!r}: expected =, !=, =~ or !~ after "
                           f"the label name {name!r}")
    raw = rest[len(op):].strip()
    if not raw:
        raise MatcherError(f"bad matcher {text.strip()!r}: the value is missing; write "
                           f'{name}{op}"" to match an empty or missing label')
    return Matcher.build(name, op, _unescape(raw, text))


def _quoted_prefix(rest: str, text: str) -> tuple[str, str]:
    """A leading double-quoted string (a UTF-8 label name) and what follows it."""
    escaped = False
    for i, ch in enumerate(rest[1:], start=1):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            return _unescape(rest[: i + 1], text), rest[i + 1:]
    raise MatcherError(f"unterminated double quote in {text!r}")


def _unescape(raw: str, text: str) -> str:
    """The classic parser's value rules: optional surrounding quotes, OpenMetrics escapes."""
    quoted = raw.startswith('"')
    if quoted:
        raw = raw[1:]
    out: list[str] = []
    escaped = False
    last = len(raw) - 1
    for i, ch in enumerate(raw):
        if escaped:
            escaped = False
            if ch == "n":
                out.append("\n")
            elif ch in '"\\':
                out.append(ch)
            else:  # a spurious escape is a literal backslash, as in Alertmanager
                out.append("\\" + ch)
        elif ch == "\\":
            if i < last:
                escaped = True
            else:
                out.append("\\")
        elif ch == '"':
            if not quoted or i < last:
                raise MatcherError(f"unescaped double quote in the value of {text.strip()!r}; "
                                   'write \\" inside a quoted value')
            quoted = False
        else:
            out.append(ch)
    if quoted:
        raise MatcherError(f"unterminated double quote in {text.strip()!r}")
    return "".join(out)


def risky_regex(pattern: str) -> bool:
    """True for a regex with nested quantifiers, which may backtrack for a long time."""
    return _NESTED_QUANTIFIER.search(pattern) is not None


def redos_warning(pattern: str) -> str:
    """The lint message for a risky regex."""
    return (f"regex {pattern[:60]!r} nests quantifiers; it can backtrack for a long time on a "
            f"long hostile label; simplify it")


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher holds (an empty list matches every alert)."""
    return all(m.matches(labels) for m in matchers)


def implies(premises: Sequence[Matcher], conclusion: Matcher) -> bool:
    """True if every label set satisfying all `premises` surely satisfies `conclusion`.

    Sound but incomplete, as lint needs: an identical matcher implies itself, and an
    equality `name="v"` pins the label, so it implies any matcher on `name` that accepts v.
    """
    for m in premises:
        if m.name != conclusion.name:
            continue
        if m == conclusion:
            return True
        if m.op == "=" and conclusion.matches({m.name: m.value}):
            return True
    return False


def shadows(earlier: Sequence[Matcher], later: Sequence[Matcher]) -> bool:
    """True if every alert that `later` matches is matched by `earlier` too."""
    return all(implies(later, m) for m in earlier)


@dataclass(frozen=True)
class CompiledMapping:
    """A mapping from alert_mappings.yaml with its matchers parsed."""

    index: int
    name: str
    runbook: str
    continue_: bool
    params: Mapping[str, Any]
    matchers: tuple[Matcher, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return matches_all(self.matchers, labels)

    def describe(self) -> list[str]:
        return [str(m) for m in self.matchers]


class _Routable(Protocol):
    continue_: bool

    def matches(self, labels: Mapping[str, str]) -> bool: ...


R = TypeVar("R", bound=_Routable)


def match_mappings(mappings: Iterable[R], labels: Mapping[str, str]) -> list[R]:
    """The mappings that take this alert: the first match wins, unless it says `continue`."""
    chosen: list[R] = []
    for mapping in mappings:
        if mapping.matches(labels):
            chosen.append(mapping)
            if not mapping.continue_:
                break
    return chosen
