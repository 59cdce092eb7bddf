"""Charts as inline SVG, drawn on the server: no JavaScript, no CDN, readable by screen
readers (each chart has a title and a description, and the page gives the numbers as a
table too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from markupsafe import Markup, escape

#: Colour-blind-safe palette (Okabe-Ito).
PALETTE: Final = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
VERDICT_COLOURS: Final = {"block": "#D55E00", "review": "#E69F00", "allow": "#009E73"}


def _svg(width: int, height: int, title: str, desc: str, body: str) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-labelledby="{_id(title)}-t {_id(title)}-d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{_id(title)}-t">{escape(title)}</title>'
        f'<desc id="{_id(title)}-d">{escape(desc)}</desc>{body}</svg>'
    )


def _id(title: str) -> str:
    return "c" + str(abs(hash(title)) % 10**8)


def stacked_bars(
    days: Sequence[str],
    series: Mapping[str, Sequence[int]],
    *,
    title: str,
    desc: str,
    width: int = 640,
    height: int = 220,
) -> Markup:
    """A bar per day, stacked by series (banks), with a legend."""
    left, bottom, top = 36, 28, 10
    legend_h = 18 * ((len(series) + 3) // 4)
    plot_h = height - bottom - top
    total_h = height + legend_h
    totals = [sum(s[i] for s in series.values()) for i in range(len(days))]
    peak = max([1, *totals])
    step = (width - left - 8) / max(1, len(days))
    bar_w = max(2.0, step * 0.7)
    parts = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 4}" y2="{top + plot_h}" '
        'stroke="#888" stroke-width="1"/>',
        f'<text x="{left - 6}" y="{top + 8}" text-anchor="end" class="axis">{peak}</text>',
        f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end" class="axis">0</text>',
    ]
    for i, day in enumerate(days):
        x = left + i * step + (step - bar_w) / 2
        y: float = top + plot_h
        for n, (name, values) in enumerate(series.items()):
            v = values[i]
            if not v:
                continue
            h = plot_h * v / peak
            y -= h
            colour = PALETTE[n % len(PALETTE)]
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(day)} {escape(name)}: {v}</title></rect>'
            )
        if i % max(1, len(days) // 7) == 0 or i == len(days) - 1:
            parts.append(
                f'<text x="{x + bar_w / 2:.1f}" y="{height - 10}" text-anchor="middle" '
                f'class="axis">{escape(day[5:])}</text>'
            )
    for n, name in enumerate(series):
        lx = left + (n % 4) * 150
        ly = height + 4 + 18 * (n // 4)
        parts.append(
            f'<rect x="{lx}" y="{ly}" width="12" height="12" fill="{PALETTE[n % len(PALETTE)]}"/>'
            f'<text x="{lx + 16}" y="{ly + 11}" class="legend">{escape(name[:18])}</text>'
        )
    return _svg(width, total_h, title, desc, "".join(parts))


def hbars(
    rows: Sequence[tuple[str, float, str]],
    *,
    title: str,
    desc: str,
    maximum: float | None = None,
    colours: Mapping[str, str] | None = None,
    width: int = 640,
) -> Markup:
    """Horizontal bars: ``(label, value, shown text)`` per row."""
    row_h, label_w = 26, 150
    height = max(1, len(rows)) * row_h + 8
    peak = maximum if maximum is not None else max([1.0, *(r[1] for r in rows)])
    parts = []
    for i, (label, value, shown) in enumerate(rows):
        y = 4 + i * row_h
        w = (width - label_w - 90) * (value / peak if peak else 0)
        colour = (colours or {}).get(label, PALETTE[i % len(PALETTE)])
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" class="legend">'
            f"{escape(label[:22])}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 0):.1f}" height="{row_h - 8}" '
            f'fill="{colour}"/>'
            f'<text x="{label_w + max(w, 0) + 6:.1f}" y="{y + 16}" class="legend">'
            f"{escape(shown)}</text>"
        )
    if not rows:
        parts.append(f'<text x="{label_w}" y="18" class="legend">—</text>')
    return _svg(width, height, title, desc, "".join(parts))
