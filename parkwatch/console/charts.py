"""Server-side SVG charts for the dashboard: no JavaScript, no inline ``style``.

Every chart is built with :meth:`markupsafe.Markup.format`, which escapes each argument, so a
label taken from the store (an enterprise id, a category) is always text inside the SVG.
Colours are SVG presentation attributes (allowed by the console's CSP); sizes come from the
``viewBox`` and the ``chart`` class in ``console.css``. Each chart sits beside a table of
the same numbers, so the page reads without graphics.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup

PALETTE = ("#1f5fa8", "#d9480f", "#2b8a3e", "#862e9c", "#b08900", "#0b7285", "#a4161a",
           "#5c940d")
"""Series colours, in order."""
SEVERITY_FILL = {"critical": "#a4161a", "high": "#d9480f", "medium": "#b08900",
                 "low": "#2b8a3e", "informational": "#5b6474"}
_W, _H = 640, 260
_L, _R, _T, _B = 48, 150, 14, 44


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def line_chart(
    title: str, x_labels: Sequence[str], series: dict[str, Sequence[float | None]]
) -> Markup:
    """Ratios in [0, 1] per x position, one polyline per series through its known values
    (None: no attack with a verdict in that period), y axis in percent, legend on the right."""
    pw, ph = _W - _L - _R, _H - _T - _B
    n = len(x_labels)

    def x(k: int) -> float:
        return _L + (pw / 2 if n == 1 else pw * k / (n - 1))

    def y(v: float) -> float:
        return _T + ph * (1 - v)

    parts = [Markup('<svg class="chart" viewBox="0 0 {} {}" role="img" '
                    'xmlns="http://www.w3.org/2000/svg"><title>{}</title>').format(_W, _H, title)]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(Markup(
            '<line x1="{l}" x2="{r}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d9dde4"/>'
            '<text x="{tx}" y="{ty:.1f}" font-size="11" text-anchor="end" fill="#5b6474">'
            '{p}%</text>'
        ).format(l=_L, r=_L + pw, y=y(tick), tx=_L - 6, ty=y(tick) + 4, p=int(tick * 100)))
    step = max(1, -(-n // 8))
    for k, label in enumerate(x_labels):
        if k % step == 0 or k == n - 1:
            parts.append(Markup(
                '<text x="{:.1f}" y="{}" font-size="11" text-anchor="middle" fill="#5b6474">'
                '{}</text>'
            ).format(x(k), _T + ph + 18, label))
    lines: list[Markup] = []
    under = len(parts)  # lines go above the grid, below the points
    for s, (name, values) in enumerate(series.items()):
        c = colour(s)
        run: list[str] = []
        for k, v in enumerate(values):
            if v is None:  # no attack with a verdict in that period: no point, line goes on
                continue
            run.append(f"{x(k):.1f},{y(v):.1f}")
            parts.append(Markup(
                '<circle cx="{:.1f}" cy="{:.1f}" r="3.5" fill="{}"><title>{}: {}: {}%</title>'
                '</circle>'
            ).format(x(k), y(v), c, name, x_labels[k], round(v * 100, 1)))
        if len(run) > 1:
            lines.append(Markup(
                '<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>'
            ).format(" ".join(run), c))
        ly = _T + 14 + 18 * s
        parts.append(Markup(
            '<rect x="{}" y="{}" width="12" height="12" fill="{}"/>'
            '<text x="{}" y="{}" font-size="12" fill="#1d2433">{}</text>'
        ).format(_W - _R + 16, ly - 10, c, _W - _R + 34, ly, name))
    parts[under:under] = lines
    if not x_labels:
        parts.append(Markup('<text x="{}" y="{}" font-size="13" fill="#5b6474">no attacks in '
                            'this scope</text>').format(_L + 10, _T + ph / 2))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def bar_chart(
    title: str, items: Sequence[tuple[str, int]], fills: dict[str, str] | None = None
) -> Markup:
    """Horizontal bars, one per (label, count), labels left and counts right of each bar."""
    label_w, bar_h, gap = 180, 18, 6
    width = 520
    height = _T + max(1, len(items)) * (bar_h + gap) + 8
    top = max((v for _, v in items), default=0) or 1
    parts = [Markup('<svg class="chart chart-bar" viewBox="0 0 {} {}" role="img" '
                    'xmlns="http://www.w3.org/2000/svg"><title>{}</title>').format(
        width, height, title)]
    span = width - label_w - 60
    for k, (label, value) in enumerate(items):
        yy = _T + k * (bar_h + gap)
        fill = (fills or {}).get(label, colour(0))
        parts.append(Markup(
            '<text x="{lx}" y="{ty}" font-size="12" text-anchor="end" fill="#1d2433">{label}'
            '</text><rect x="{bx}" y="{y}" width="{w:.1f}" height="{h}" fill="{fill}"/>'
            '<text x="{vx:.1f}" y="{ty}" font-size="12" fill="#1d2433">{value}</text>'
        ).format(lx=label_w - 8, ty=yy + 13, label=label, bx=label_w, y=yy,
                 w=max(1.0, span * value / top), h=bar_h, fill=fill,
                 vx=label_w + span * value / top + 6, value=value))
    if not items:
        parts.append(Markup('<text x="10" y="{}" font-size="13" fill="#5b6474">none</text>')
                     .format(_T + 12))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
