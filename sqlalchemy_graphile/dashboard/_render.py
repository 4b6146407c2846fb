"""HTML rendering: the Jinja environment (every value escaped), the formatting filters
the templates use, and the geometry of the throughput chart (an inline SVG, drawn on the
server so the page needs no script)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jinja2

from ._sampler import MinuteRate

#: The longest pretty-printed payload a page shows (the API returns all of it).
MAX_SHOWN_PAYLOAD = 200_000


def timestamp(when: datetime | None) -> str:
    """``2030-01-02 03:04:05 UTC``, or ``-``."""
    if when is None:
        return "-"
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(when: datetime | None) -> str:
    """ISO 8601 in UTC, for ``<time datetime=...>`` and the API."""
    return "" if when is None else when.astimezone(UTC).isoformat()


def duration(seconds: float) -> str:
    """A rough length of time: ``12 s``, ``4 min``, ``3 h 5 min``, ``2 d 4 h``, ``3 years``."""
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    if days >= 365:
        years = days // 365
        return "1 year" if years == 1 else f"{years} years"
    return f"{days} d {hours} h" if hours else f"{days} d"


def relative(when: datetime | None, now: datetime) -> str:
    """``3 min ago`` or ``in 2 h``, measured from ``now`` (the database's time)."""
    if when is None:
        return ""
    seconds = (when - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    return f"in {duration(seconds)}" if seconds > 0 else f"{duration(seconds)} ago"


def pretty_json(text: str | None) -> str:
    """JSON text indented for reading (non-ASCII kept), cut at :data:`MAX_SHOWN_PAYLOAD`
    characters."""
    if text is None:
        return "null"
    try:
        pretty = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        pretty = text
    if len(pretty) > MAX_SHOWN_PAYLOAD:
        return pretty[:MAX_SHOWN_PAYLOAD] + "\n… (cut here; the API returns the whole payload)"
    return pretty


def number(value: int) -> str:
    """An integer with thousands separated: ``1,234,567``."""
    return f"{value:,}"


def flags_text(flags: Mapping[str, Any] | None) -> str:
    """The flags of a job, comma-separated, or ``-``."""
    return ", ".join(sorted(flags)) if flags else "-"


@dataclass(frozen=True, slots=True)
class Bar:
    """One minute of the chart: its bar, the line point of jobs added, and its tooltip."""

    x: float
    y: float
    height: float
    line_y: float | None
    label: str


@dataclass(frozen=True, slots=True)
class Chart:
    """Everything the chart template draws, in SVG user units."""

    width: int
    height: int
    bar_width: float
    bars: list[Bar]
    line: str
    peak: int
    has_data: bool
    first_label: str
    last_label: str
    total_completed: int
    total_added: int


def chart(rates: Sequence[MinuteRate], width: int = 720, height: int = 160) -> Chart:
    """Bars of jobs completed per minute, and a line of jobs added per minute."""
    top = 10.0
    usable = height - top
    values = [r.completed or 0.0 for r in rates] + [r.added or 0.0 for r in rates]
    peak = max([1, *(round(v + 0.4999) for v in values)])
    slot = width / max(1, len(rates))
    bars = []
    points = []
    for i, rate in enumerate(rates):
        done = rate.completed or 0.0
        bar_height = usable * done / peak
        line_y = None if rate.added is None else top + usable * (1 - rate.added / peak)
        if line_y is not None:
            points.append(f"{i * slot + slot / 2:.1f},{line_y:.1f}")
        label = f"{rate.start:%H:%M} UTC: " + (
            "no samples"
            if rate.completed is None
            else f"{rate.completed:.0f} completed, {rate.added or 0:.0f} added"
        )
        bars.append(Bar(i * slot + 1, height - bar_height, bar_height, line_y, label))
    covered = [r for r in rates if r.completed is not None]
    return Chart(
        width=width,
        height=height,
        bar_width=max(1.0, slot - 2),
        bars=bars,
        line=" ".join(points),
        peak=peak,
        has_data=bool(covered),
        first_label=f"{rates[0].start:%H:%M}" if rates else "",
        last_label=f"{rates[-1].start + timedelta(minutes=1):%H:%M}" if rates else "",
        total_completed=round(sum(r.completed or 0.0 for r in covered)),
        total_added=round(sum(r.added or 0.0 for r in covered)),
    )


class Renderer:
    """Renders the package's templates with autoescaping on for every value."""

    def __init__(self) -> None:
        self._env = jinja2.Environment(
            loader=jinja2.PackageLoader("sqlalchemy_graphile.dashboard", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self._env.filters.update(
            timestamp=timestamp,
            iso=iso,
            relative=relative,
            duration=duration,
            pretty_json=pretty_json,
            flags_text=flags_text,
            number=number,
        )

    def render(self, template: str, context: Mapping[str, Any]) -> str:
        """The HTML of ``template`` with ``context``."""
        return self._env.get_template(template).render(**context)


def link(base: str, path: str, params: Mapping[str, object] | None = None) -> str:
    """A URL inside the dashboard: ``base`` (where it is mounted) + ``path`` + the query."""
    query = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
    return f"{base}{path}" + (f"?{urlencode(query, doseq=True)}" if query else "")
