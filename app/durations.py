"""Durations as runbook authors write them: `30s`, `15m`, `2h`, `7d`, `1h30m`, `2w`."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> dt.timedelta:
    """`"1h30m"` to a timedelta; a bare number is seconds."""
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    text = str(value).strip().lower()
    if not _WHOLE.match(text):
        raise ValueError(f"{value!r} is not a duration; write it like 30s, 15m, 2h, 7d or 1h30m")
    return dt.timedelta(seconds=sum(float(n) * _SECONDS[u] for n, u in _PART.findall(text)))


def format_duration(value: dt.timedelta) -> str:
    """The shortest exact form: 5400s -> 1h30m."""
    seconds = value.total_seconds()
    if seconds == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s"):
        size = _SECONDS[unit]
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{int(count)}{unit}")
    if seconds:
        out.append(f"{round(seconds * 1000)}ms")
    return "".join(out)


Duration = Annotated[
    dt.timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
