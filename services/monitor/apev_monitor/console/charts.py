"""Inline SVG charts (no script, nothing fetched): lines over a shared x axis, an optional dashed limit line.

    line_chart(title, labels, {"p50": [...], "p95": [...]}, unit="ms", limit=None) -> markup

Values may be None (a gap). Text is escaped; the result is marked safe for Jinja.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from markupsafe import Markup

COLORS = ["#2563eb", "#d97706", "#dc2626", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d"]
W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 240, 56, 12, 28, 44


def _fmt(v: float) -> str:
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 1:
        return f"{v:,.2f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def line_chart(
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str = "",
    limit: float | None = None,
    limit_label: str = "budget",
    bars: bool = False,
) -> Markup:
    values = [v for s in series.values() for v in s if v is not None]
    top = max([*values, limit or 0.0, 0.0]) or 1.0
    top *= 1.1
    n = max(len(labels), 1)
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    step = plot_w / n

    def x(i: int) -> float:
        return LEFT + step * (i + 0.5)

    def y(v: float) -> float:
        return TOP + plot_h - (v / top) * plot_h

    out = [
        f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<text x="{LEFT}" y="16" class="chart-title">{escape(title)}</text>',
    ]
    for k in range(5):
        tick = top / 1.1 * k / 4
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end" class="tick">{_fmt(tick)}</text>')
    every = max(1, n // 8)
    for i, label in enumerate(labels):
        if i % every == 0:
            out.append(
                f'<text x="{x(i):.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" class="tick">{escape(label)}</text>'
            )
    if not values:
        out.append(f'<text x="{W / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" class="empty">no data yet</text>')
    names = list(series)
    for si, name in enumerate(names):
        color = COLORS[si % len(COLORS)]
        points = series[name]
        if bars:
            width = step * 0.8 / max(len(names), 1)
            for i, v in enumerate(points):
                if v is None:
                    continue
                bx = LEFT + step * i + step * 0.1 + width * si
                out.append(
                    f'<rect x="{bx:.1f}" y="{y(v):.1f}" width="{width:.1f}" height="{TOP + plot_h - y(v):.1f}" '
                    f'fill="{color}"><title>{escape(name)} {escape(labels[i])}: {_fmt(v)} {escape(unit)}</title></rect>'
                )
        else:
            path, pen = [], "M"
            for i, v in enumerate(points):
                if v is None:
                    pen = "M"
                    continue
                path.append(f"{pen}{x(i):.1f},{y(v):.1f}")
                pen = "L"
                out.append(
                    f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="{color}">'
                    f"<title>{escape(name)} {escape(labels[i])}: {_fmt(v)} {escape(unit)}</title></circle>"
                )
            if path:
                out.append(f'<path d="{" ".join(path)}" fill="none" stroke="{color}" stroke-width="2"/>')
        out.append(
            f'<rect x="{LEFT + si * 110}" y="{H - 18}" width="10" height="10" fill="{color}"/>'
            f'<text x="{LEFT + si * 110 + 14}" y="{H - 9}" class="legend">{escape(name)}</text>'
        )
    if limit is not None:
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" class="limit"/>')
        out.append(f'<text x="{W - RIGHT}" y="{y(limit) - 4:.1f}" text-anchor="end" class="tick">'
                   f"{escape(limit_label)} {_fmt(limit)} {escape(unit)}</text>")  # fmt: skip
    out.append(f'<text x="{LEFT - 6}" y="{TOP - 10}" text-anchor="end" class="tick">{escape(unit)}</text>')
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every piece of text above is escaped
