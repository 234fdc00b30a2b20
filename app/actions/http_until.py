"""`until:` of `http.request`: a small JSON path and the condition that ends a poll. Pure.

A path is `$` followed by `.key`, `["key"]` or `[index]` segments (`$.dag_runs[0].state`,
`$.metadata.labels["app.kubernetes.io/name"]`); the leading `$` may be left out. There are no
filters, wildcards or expressions: a path names one value, and nothing in it is evaluated.

Values compare as JSON values: `"3"` is not `3`, and `true` is not `1`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.durations import Duration, format_duration

MAX_PATH = 256
MAX_SEGMENTS = 32
MAX_WITHIN = dt.timedelta(days=1)
MIN_INTERVAL = dt.timedelta(milliseconds=100)
SHOWN_VALUE = 200  # characters of a value shown in a message; an answer may be large

_KEY = r"[A-Za-z0-9_-]+"
_SEGMENT = re.compile(rf'\.({_KEY})|\[(-?\d+)\]|\["([^"\\]*)"\]|\[\'([^\'\\]*)\'\]')
_FIRST_KEY = re.compile(_KEY)


def parse_path(text: str) -> tuple[str | int, ...]:
    """`$.runs[0].state` to `("runs", 0, "state")`; ValueError says what is wrong."""
    if len(text) > MAX_PATH:
        raise ValueError(f"the path is longer than {MAX_PATH} characters")
    rest = text.strip()
    segments: list[str | int] = []
    if rest.startswith("$"):
        rest = rest[1:]
    elif (first := _FIRST_KEY.match(rest)) is not None:
        segments.append(first.group(0))  # `state.name` for `$.state.name`
        rest = rest[first.end():]
    elif rest and not rest.startswith("["):
        raise ValueError(_syntax(text, rest))
    while rest:
        match = _SEGMENT.match(rest)
        if match is None:
            raise ValueError(_syntax(text, rest))
        key, index, double, single = match.groups()
        if index is not None:
            segments.append(int(index))
        else:
            segments.append(next(k for k in (key, double, single) if k is not None))
        rest = rest[match.end():]
    if len(segments) > MAX_SEGMENTS:
        raise ValueError(f"the path has more than {MAX_SEGMENTS} segments")
    return tuple(segments)


def _syntax(text: str, rest: str) -> str:
    return (f"{text!r} is not a JSON path this action reads: it stops at {rest[:40]!r}; write "
            "it like $.state, $.dag_runs[0].state or $.labels[\"app.kubernetes.io/name\"] "
            "(keys, quoted keys and list indexes only)")


def show_path(segments: tuple[str | int, ...]) -> str:
    """The canonical spelling of a parsed path."""
    out = "$"
    for segment in segments:
        if isinstance(segment, int):
            out += f"[{segment}]"
        elif re.fullmatch(_KEY, segment):
            out += f".{segment}"
        else:
            out += f"[{json.dumps(segment)}]"
    return out


@dataclass(frozen=True)
class Lookup:
    """What a path found in a document: the value, or why there is none."""

    found: bool
    value: Any = None
    missing: str = ""


def lookup(document: Any, segments: tuple[str | int, ...]) -> Lookup:
    """The value at `segments` in a parsed JSON document."""
    here: Any = document
    for depth, segment in enumerate(segments):
        where = show_path(segments[:depth])
        if isinstance(segment, int):
            if not isinstance(here, list):
                return Lookup(False, missing=f"{where} is {_kind(here)}, not a list")
            if not -len(here) <= segment < len(here):
                return Lookup(False, missing=f"{where} has {len(here)} item(s), no [{segment}]")
            here = here[segment]
        else:
            if not isinstance(here, dict):
                return Lookup(False, missing=f"{where} is {_kind(here)}, not an object")
            if segment not in here:
                return Lookup(False, missing=f"{where} has no key {json.dumps(segment)}")
            here = here[segment]
    return Lookup(True, here)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def same(a: Any, b: Any) -> bool:
    """JSON equality: a boolean equals only a boolean; 1 equals 1.0; "3" is not 3."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return bool(a == b)


def show_value(value: Any) -> str:
    """A value as JSON, cut to a length a message can carry."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOWN_VALUE else text[:SHOWN_VALUE] + "…"


class UntilSpec(BaseModel):
    """Re-send a GET every `interval` until the value at `path` equals `equals` (or is one of
    `in`), for at most `within`; a value in `fail_on` ends the wait as a failure at once."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    path: str = Field(min_length=1, max_length=MAX_PATH)
    equals: Any = None
    in_: list[Any] | None = Field(default=None, alias="in", min_length=1, max_length=50)
    fail_on: list[Any] = Field(default_factory=list, max_length=50)
    interval: Duration = dt.timedelta(seconds=5)
    within: Duration

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        parse_path(value)
        return value

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: dt.timedelta) -> dt.timedelta:
        if value < MIN_INTERVAL:
            raise ValueError(f"interval must be at least {format_duration(MIN_INTERVAL)}")
        return value

    @field_validator("within")
    @classmethod
    def _within(cls, value: dt.timedelta) -> dt.timedelta:
        if not dt.timedelta(0) < value <= MAX_WITHIN:
            raise ValueError(f"within must be more than 0s and at most "
                             f"{format_duration(MAX_WITHIN)}")
        return value

    @model_validator(mode="after")
    def _one_condition(self) -> UntilSpec:
        # `equals: null` is a real condition (wait until an error field is cleared), so
        # presence is what counts, not the value.
        given = {"equals", "in_"} & self.model_fields_set
        if len(given) != 1:
            raise ValueError("until needs exactly one of `equals` (one value) or `in` "
                             "(a list of values) to say which value ends the wait")
        clash = [v for v in self.wanted if any(same(v, f) for f in self.fail_on)]
        if clash:
            raise ValueError(f"{show_value(clash[0])} is both awaited and in fail_on")
        return self

    @property
    def segments(self) -> tuple[str | int, ...]:
        return parse_path(self.path)

    @property
    def wanted(self) -> list[Any]:
        """The values that end the wait with success."""
        return list(self.in_) if "in_" in self.model_fields_set and self.in_ else [self.equals]

    def matches(self, value: Any) -> bool:
        return any(same(value, w) for w in self.wanted)

    def fails(self, value: Any) -> bool:
        return any(same(value, f) for f in self.fail_on)

    def describe_wanted(self) -> str:
        """`"success"`, or `one of ["a", "b"]`."""
        if "in_" in self.model_fields_set:
            return "one of " + show_value(self.wanted)
        return show_value(self.equals)

    def describe(self) -> str:
        """One line for plans and drills: the condition, the pace and the bound."""
        verb = "is" if "in_" in self.model_fields_set else "equals"
        text = (f"until {show_path(self.segments)} {verb} {self.describe_wanted()} "
                f"(every {format_duration(self.interval)}, for up to "
                f"{format_duration(self.within)}")
        if self.fail_on:
            text += f"; fails at once on {', '.join(show_value(v) for v in self.fail_on)}"
        return text + ")"

    def as_resolved(self) -> dict[str, Any]:
        """What a plan compares: the path, the values and the bounds."""
        return {"path": show_path(self.segments), "wanted": self.wanted,
                "fail_on": self.fail_on, "interval": self.interval.total_seconds(),
                "within": self.within.total_seconds()}
