"""Server-rendered SVG charts for the stats page: no JavaScript, no CDN, nothing to load.

Pure functions from numbers to markup. Every label is escaped (runbook ids and statuses come
from files and the database), and colours are presentation attributes, not `style=`, which
the pages' Content-Security-Policy would block. Each chart is an `<svg role="img">` with a
title, and each bar carries a `<title>` tooltip with its exact value.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

# One colour per outcome, the same as the status badges (app.css).
STATUS_COLOURS = {
    "succeeded": "#1a7f37", "failed": "#cf222e", "expired": "#e16f24", "rejected": "#8250df",
    "cancelled": "#8c959f", "needs_attention": "#bf8700", "awaiting_approval": "#d4a72c",
    "rate_limited": "#57606a", "paused": "#a0a7b0", "running": "#0a58ca", "pending": "#54aeff",
}
P50, P90, OBJECTIVE = "#0a58ca", "#9ec5fe", "#cf222e"
AUTOMATIC, APPROVED = "#1a7f37", "#bf8700"


def readable(seconds: float | None) -> str:
    """Seconds as people read them: `850 ms`, `42s`, `3m 54s`, `2h 5m`, `3d 4h`."""
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    whole = round(seconds)
    for size, unit, sub_size, sub_unit in ((86400, "d", 3600, "h"), (3600, "h", 60, "m"),
                                           (60, "m", 1, "s")):
        if whole >= size:
            big, rest = divmod(whole, size)
            small = rest // sub_size
            return f"{big}{unit} {small}{sub_unit}" if small else f"{big}{unit}"
    return f"{whole}s"


@dataclass(frozen=True)
class TimingRow:
    """One runbook's p50 and p90 (seconds), and its objective when it has one."""

    label: str
    p50: float | None
    p90: float | None
    count: int
    objective: float | None = None


@dataclass(frozen=True)
class Segment:
    name: str
    value: int
    colour: str


_WIDTH, _LABEL, _ROW, _PAD = 760, 210, 30, 44


def _nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `top` (seconds or counts)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(math.ceil(top / step) + 1)]


# Steps a time axis reads well in: seconds, minutes, hours, days.
_TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
               43200, 86400, 172800, 604800)


def _time_ticks(top: float, count: int = 4) -> list[float]:
    """Tick values in seconds at round times (5m, 10m, 1h…) up to at least `top`."""
    if top <= 1:
        return _nice_ticks(top, count)  # below a second: milliseconds read fine as decimals
    step = next((s for s in _TIME_STEPS if s * count >= top), None)
    if step is None:
        return _nice_ticks(top, count)
    return [float(step * i) for i in range(math.ceil(top / step) + 1)]


def _svg(title: str, width: int, height: int, body: list[str]) -> Markup:
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
            f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'aria-label="{escape(title)}"><title>{escape(title)}</title>')
    return Markup(head + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = 12,
          fill: str = "#1b1f24") -> str:
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'fill="{fill}">{escape(text)}</text>')


def _bar(x: float, y: float, w: float, h: float, colour: str, tip: str, cls: str) -> str:
    return (f'<rect class="{cls}" x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" '
            f'height="{h:.1f}" fill="{colour}"><title>{escape(tip)}</title></rect>')


def _axis(ticks: list[float], top: float, y0: float, y1: float, *, as_time: bool,
          ) -> list[str]:
    """Vertical grid lines with their labels under the rows."""
    out, span = [], _WIDTH - _LABEL - _PAD
    for t in ticks:
        x = _LABEL + span * t / top
        out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y1}" stroke="#d0d7de"/>')
        label = "0" if t == 0 else readable(t) if as_time else f"{t:g}"
        out.append(_text(x, y1 + 14, label, anchor="middle",
                         size=11, fill="#57606a"))
    return out


def timing_bars(title: str, rows: Sequence[TimingRow], *, objective_name: str = "objective",
                ) -> Markup:
    """Per row: the p90 bar, the p50 bar inside it, and the objective as a red line."""
    values = [v for r in rows for v in (r.p50, r.p90, r.objective) if v is not None]
    ticks = _time_ticks(max(values, default=0))
    top = ticks[-1]
    height = _ROW * len(rows) + 56
    span = _WIDTH - _LABEL - _PAD
    body = _axis(ticks, top, 4, _ROW * len(rows) + 6, as_time=True)
    for i, r in enumerate(rows):
        y = 8 + i * _ROW
        body.append(_text(_LABEL - 8, y + 15, r.label, anchor="end"))
        if r.p90 is not None:
            body.append(_bar(_LABEL, y, span * r.p90 / top, 20, P90,
                             f"{r.label}: p90 {readable(r.p90)} ({r.count} measured)", "p90"))
        if r.p50 is not None:
            body.append(_bar(_LABEL, y + 5, span * r.p50 / top, 10, P50,
                             f"{r.label}: p50 {readable(r.p50)}", "p50"))
        if r.objective is not None:
            x = _LABEL + span * r.objective / top
            body.append(f'<line class="objective" x1="{x:.1f}" y1="{y - 3}" x2="{x:.1f}" '
                        f'y2="{y + 23}" stroke="{OBJECTIVE}" stroke-width="3">'
                        f'<title>{escape(r.label)}: {escape(objective_name)} '
                        f'{escape(readable(r.objective))}</title></line>')
    legend = [("p50", P50), ("p90", P90)] + ([(objective_name, OBJECTIVE)]
                                             if any(r.objective for r in rows) else [])
    body += _legend(legend, height - 14)
    return _svg(title, _WIDTH, height, body)


def stacked_columns(title: str, columns: Sequence[tuple[dt.datetime, list[Segment]]], *,
                    weekly: bool) -> Markup:
    """One column per day or week, its segments stacked by outcome."""
    height, bottom, left = 260, 200, 44
    most = max((sum(s.value for s in segs) for _, segs in columns), default=0)
    ticks = _nice_ticks(max(most, 1))
    top = ticks[-1]
    width = _WIDTH
    slot = (width - left - _PAD) / max(len(columns), 1)
    body = []
    for t in ticks:
        y = bottom - (bottom - 10) * t / top
        body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - _PAD}" y2="{y:.1f}" '
                    f'stroke="#d0d7de"/>')
        body.append(_text(left - 6, y + 4, f"{t:g}", anchor="end", size=11, fill="#57606a"))
    label_every = max(1, math.ceil(len(columns) / 12))
    for i, (start, segments) in enumerate(columns):
        x, y = left + i * slot + slot * 0.15, float(bottom)
        day = start.strftime("%m-%d")
        for seg in segments:
            if not seg.value:
                continue
            h = (bottom - 10) * seg.value / top
            y -= h
            body.append(_bar(x, y, slot * 0.7, h, seg.colour,
                             f"{'week of ' if weekly else ''}{start:%Y-%m-%d}: {seg.value} "
                             f"{seg.name.replace('_', ' ')}", f"seg s-{seg.name}"))
        if i % label_every == 0:
            body.append(_text(x + slot * 0.35, bottom + 16, day, anchor="middle", size=11,
                              fill="#57606a"))
    names = sorted({s.name for _, segs in columns for s in segs if s.value})
    body += _legend([(n.replace("_", " "), STATUS_COLOURS.get(n, "#8c959f")) for n in names],
                    height - 14, left=left)
    return _svg(title, width, height, body)


def split_bars(title: str, rows: Sequence[tuple[str, list[Segment]]], *,
               legend: Sequence[tuple[str, str]]) -> Markup:
    """Horizontal bars made of segments (automatic and approved, or failures and the rest)."""
    most = max((sum(s.value for s in segs) for _, segs in rows), default=0)
    ticks = _nice_ticks(max(most, 1))
    top = ticks[-1]
    span = _WIDTH - _LABEL - _PAD
    height = _ROW * len(rows) + 56
    body = _axis(ticks, top, 4, _ROW * len(rows) + 6, as_time=False)
    for i, (label, segments) in enumerate(rows):
        y, x = 8 + i * _ROW, float(_LABEL)
        body.append(_text(_LABEL - 8, y + 15, label, anchor="end"))
        for seg in segments:
            w = span * seg.value / top
            if seg.value:
                body.append(_bar(x, y, w, 20, seg.colour, f"{label}: {seg.value} {seg.name}",
                                 f"seg {seg.name.replace(' ', '-')}"))
            x += w
    body += _legend(list(legend), height - 14)
    return _svg(title, _WIDTH, height, body)


def _legend(items: list[tuple[str, str]], y: float, *, left: float = _LABEL) -> list[str]:
    out, x = [], left
    for name, colour in items:
        out.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" '
                   f'fill="{colour}"/>')
        out.append(_text(x + 16, y, name, size=12))
        x += 28 + 7 * len(name)
    return out
