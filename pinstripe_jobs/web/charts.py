"""Inline SVG charts (no JavaScript, no external assets): a sparkline and a duration chart."""
from __future__ import annotations

from html import escape


def _points(values: list[float | None], width: float, height: float, pad: float) -> list[tuple[float, float]]:
    known = [v for v in values if v is not None]
    top = max(known, default=0) or 1.0
    step = (width - 2 * pad) / max(len(values) - 1, 1)
    return [(pad + i * step, height - pad - (v / top) * (height - 2 * pad)) for i, v in enumerate(values)
            if v is not None]


def sparkline(values: list[float | None], width: int = 120, height: int = 24, label: str = "durations") -> str:
    """Oldest to newest, left to right."""
    points = _points(values, width, height, 2)
    if not points:
        return ""
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{escape(label)}"><polyline fill="none" stroke="currentColor" stroke-width="1.5" '
            f'points="{path}"/></svg>')


def duration_chart(series: dict[str, list[float | None]], labels: list[str], width: int = 640,
                   height: int = 180) -> str:
    """One line per series (p50, p95, max in milliseconds), oldest to newest; y axis from 0 to the max."""
    known = [v for values in series.values() for v in values if v is not None]
    if not known:
        return '<p class="muted">No finished invocations yet.</p>'
    top = max(known) or 1.0
    pad = 30
    parts = [f'<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="durations over time">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - 70}" y2="{height - pad}" class="axis"/>',
             f'<line x1="{pad}" y1="4" x2="{pad}" y2="{height - pad}" class="axis"/>',
             f'<text x="2" y="12" class="tick">{escape(_ms(top))}</text>',
             f'<text x="2" y="{height - pad}" class="tick">0</text>']
    for index, (name, values) in enumerate(series.items()):
        scaled = [None if v is None else v / top * 1.0 for v in values]
        step = (width - pad - 74) / max(len(values) - 1, 1)
        coords = [(pad + i * step, (height - pad) - v * (height - pad - 8)) for i, v in enumerate(scaled)
                  if v is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        parts.append(f'<polyline class="series s{index}" fill="none" points="{path}"><title>{escape(name)}</title>'
                     f'</polyline>')
        parts.extend(f'<circle class="s{index}" cx="{x:.1f}" cy="{y:.1f}" r="2.2"/>' for x, y in coords)
        parts.append(f'<text x="{width - 56}" y="{14 + 12 * index}" class="legend s{index}">{escape(name)}</text>')
    if labels:
        parts.append(f'<text x="{pad}" y="{height - 8}" class="tick">{escape(labels[0])}</text>')
        parts.append(f'<text x="{width - 70}" y="{height - 8}" class="tick" text-anchor="end">{escape(labels[-1])}'
                     f'</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ms(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 1000:
        return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"
    return f"{value / 1000:.2f} s" if value < 60000 else f"{value / 60000:.1f} min"


ms = _ms
