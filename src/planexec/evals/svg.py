"""Charts as inline SVG, written by hand: grouped bars and a labelled scatter plot.

Each function returns one `<svg>` element as text, well-formed XML with every label
escaped, ready to embed in HTML.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#9d755d")
WIDTH, HEIGHT = 700, 360
LEFT, RIGHT, TOP, BOTTOM = 84, 36, 52, 72

Format = Callable[[float], str]


def color(index: int) -> str:
    """The colour of the index-th series."""
    return PALETTE[index % len(PALETTE)]


def ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least `top`."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return [step * i for i in range(math.ceil(top / step - 1e-9) + 1)]


def _text(x: float, y: float, body: str, **attrs: str) -> str:
    extra = "".join(f" {k.replace('_', '-')}={quoteattr(v)}" for k, v in attrs.items())
    return f'<text x="{x:.1f}" y="{y:.1f}"{extra}>{escape(body)}</text>'


def _frame(title: str, parts: list[str]) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label={quoteattr(title)} '
        'font-family="sans-serif" font-size="11">'
    )
    heading = _text(WIDTH / 2, 20, title, text_anchor="middle", font_size="14", font_weight="bold")
    return "\n".join([head, f"<title>{escape(title)}</title>", heading, *parts, "</svg>"])


def _y_axis(
    scale: list[float], fmt: Format, label: str
) -> tuple[list[str], Callable[[float], float]]:
    plot_h = HEIGHT - TOP - BOTTOM
    top = scale[-1] or 1.0

    def y_of(value: float) -> float:
        return TOP + plot_h * (1 - value / top)

    parts = []
    for value in scale:
        y = y_of(value)
        parts.append(
            f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(_text(LEFT - 6, y + 4, fmt(value), text_anchor="end"))
    parts.append(
        _text(
            14,
            TOP + plot_h / 2,
            label,
            text_anchor="middle",
            transform=f"rotate(-90 14 {TOP + plot_h / 2:.1f})",
        )
    )
    return parts, y_of


def _legend(names: Sequence[str]) -> list[str]:
    parts = []
    x = LEFT
    for index, name in enumerate(names):
        parts.append(
            f'<rect x="{x}" y="{HEIGHT - 18}" width="10" height="10" fill="{color(index)}"/>'
        )
        parts.append(_text(x + 14, HEIGHT - 9, name))
        x += 24 + 7 * len(name)
    return parts


@dataclass(frozen=True)
class Series:
    """A named list of values, one per group."""

    name: str
    values: Sequence[float]


def bar_chart(
    title: str,
    groups: Sequence[str],
    series: Sequence[Series],
    *,
    fmt: Format = lambda v: f"{v:g}",
    axis_label: str = "",
    top: float | None = None,
) -> str:
    """Bars grouped by `groups` (x axis), one bar per series in each group."""
    highest = max([v for s in series for v in s.values] + [0.0])
    scale = ticks(top if top is not None else highest)
    parts, y_of = _y_axis(scale, fmt, axis_label)
    plot_w = WIDTH - LEFT - RIGHT
    slot = plot_w / max(1, len(groups))
    bar = slot * 0.8 / max(1, len(series))
    for g, group in enumerate(groups):
        x0 = LEFT + slot * g + slot * 0.1
        for s, item in enumerate(series):
            value = item.values[g] if g < len(item.values) else 0.0
            y = y_of(value)
            tip = f"{item.name}, {group}: {fmt(value)}"
            parts.append(
                f'<rect x="{x0 + s * bar:.1f}" y="{y:.1f}" width="{max(bar - 2, 1):.1f}" '
                f'height="{HEIGHT - BOTTOM - y:.1f}" fill="{color(s)}">'
                f"<title>{escape(tip)}</title></rect>"
            )
        parts.append(
            _text(LEFT + slot * (g + 0.5), HEIGHT - BOTTOM + 16, group, text_anchor="middle")
        )
    base = HEIGHT - BOTTOM
    parts.append(f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#333"/>')
    return _frame(title, parts + _legend([s.name for s in series]))


@dataclass(frozen=True)
class Point:
    """One point of a scatter plot."""

    x: float
    y: float
    label: str
    series: int
    """Which series (colour) the point belongs to."""
    major: bool = True
    """Large and labelled, or small and labelled only in its tooltip."""


def scatter(
    title: str,
    points: Sequence[Point],
    names: Sequence[str],
    *,
    x_label: str,
    y_label: str,
    x_fmt: Format = lambda v: f"{v:g}",
    y_fmt: Format = lambda v: f"{v:g}",
    y_top: float | None = None,
) -> str:
    """Points on x/y axes from 0, coloured by series, the major ones labelled."""
    y_scale = ticks(y_top if y_top is not None else max([p.y for p in points] + [0.0]))
    x_scale = ticks(max([p.x for p in points] + [0.0]))
    parts, y_of = _y_axis(y_scale, y_fmt, y_label)
    plot_w = WIDTH - LEFT - RIGHT
    x_top = x_scale[-1] or 1.0

    def x_of(value: float) -> float:
        return LEFT + plot_w * value / x_top

    base = HEIGHT - BOTTOM
    for value in x_scale:
        parts.append(_text(x_of(value), base + 16, x_fmt(value), text_anchor="middle"))
    parts.append(f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#333"/>')
    parts.append(_text(LEFT + plot_w / 2, base + 34, x_label, text_anchor="middle"))
    for point in sorted(points, key=lambda p: p.major):
        cx, cy = x_of(point.x), y_of(point.y)
        radius = 7 if point.major else 3.5
        tip = f"{point.label}: {x_fmt(point.x)}, {y_fmt(point.y)}"
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{radius}" fill="{color(point.series)}" '
            f'fill-opacity="{0.9 if point.major else 0.55}"><title>{escape(tip)}</title></circle>'
        )
        if point.major:
            parts.append(_text(cx + 10, cy - 8, point.label, font_weight="bold"))
    return _frame(title, parts + _legend(names))
