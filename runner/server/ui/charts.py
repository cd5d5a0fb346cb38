"""Charts drawn on the server as small inline SVG (no JavaScript): a sparkline of sends per
day and grouped bars of one automation's daily counts. Every chart carries a text label for
screen readers; the numbers are also in a table next to it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from markupsafe import Markup, escape


def days_until(last: date, count: int) -> list[str]:
    """`count` days ending with `last`, as `YYYY-MM-DD`, oldest first."""
    return [(last - timedelta(days=count - 1 - n)).isoformat() for n in range(count)]


def sparkline(values: Sequence[int], label: str, width: int = 120, height: int = 24) -> Markup:
    """A line of `values` (one per day), scaled to its own maximum."""
    top = max(values, default=0) or 1
    step = width / max(len(values) - 1, 1)
    points = " ".join(
        f"{n * step:.1f},{height - 2 - (value / top) * (height - 4):.1f}"
        for n, value in enumerate(values)
    )
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}"'
        f' role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/>'
        "</svg>"
    )


def bars(
    days: Sequence[str], series: Sequence[tuple[str, str, Sequence[int]]], label: str
) -> Markup:
    """Grouped bars per day: `series` are (name, css class, one value per day)."""
    width, height, gap = 640, 160, 2
    top = max((max(values, default=0) for _, _, values in series), default=0) or 1
    slot = width / max(len(days), 1)
    bar = max((slot - gap * 2) / max(len(series), 1), 1)
    parts = []
    for n, day in enumerate(days):
        for k, (name, css, values) in enumerate(series):
            value = values[n]
            tall = (value / top) * (height - 10)
            x = n * slot + gap + k * bar
            parts.append(
                f'<rect class="{css}" x="{x:.1f}" y="{height - tall:.1f}" width="{bar:.1f}"'
                f' height="{tall:.1f}"><title>{escape(day)}: {value} {escape(name)}</title></rect>'
            )
    return Markup(
        f'<svg class="bars" viewBox="0 0 {width} {height}" preserveAspectRatio="none"'
        f' role="img" aria-label="{escape(label)}"><title>{escape(label)}</title>'
        + "".join(parts)
        + "</svg>"
    )
