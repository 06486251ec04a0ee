"""Tiny dependency-free SVG charts for the self-contained HTML report."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf")


def _esc(s: object) -> str:
    return html.escape(str(s), quote=True)


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        return [lo]
    step = (hi - lo) / n
    return [lo + i * step for i in range(n + 1)]


def _frame(width: int, height: int, body: str, title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(title)}">'
            f'<text x="{width / 2}" y="14" text-anchor="middle" font-size="12" font-weight="bold">{_esc(title)}</text>'
            f"{body}</svg>")


def line_chart(series: Mapping[str, Sequence[tuple[float, float]]], *, title: str, width: int = 460,
               height: int = 240, x_label: str = "step") -> str:
    """Lines (one per named series of (x, y) points) with axes and a legend."""
    pts = [p for s in series.values() for p in s if all(math.isfinite(v) for v in p)]
    if not pts:
        return _frame(width, height, '<text x="20" y="60" font-size="12">no data</text>', title)
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    left, right, top, bottom = 50, 110, 24, 30
    w, h = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * w

    def sy(y: float) -> float:
        return top + h - (y - y0) / (y1 - y0) * h

    body = [f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for yt in _ticks(y0, y1):
        body.append(f'<text x="{left - 4}" y="{sy(yt) + 4:.1f}" font-size="10" text-anchor="end">{yt:.3g}</text>')
    for xt in _ticks(x0, x1):
        body.append(f'<text x="{sx(xt):.1f}" y="{top + h + 14}" font-size="10" text-anchor="middle">{xt:.3g}</text>')
    body.append(f'<text x="{left + w / 2}" y="{height - 2}" font-size="10" text-anchor="middle">{_esc(x_label)}</text>')
    for i, (name, s) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        good = [p for p in s if all(math.isfinite(v) for v in p)]
        if not good:
            continue
        path = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(good))
        body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        body.append(f'<rect x="{left + w + 8}" y="{top + 14 * i}" width="10" height="10" fill="{color}"/>'
                    f'<text x="{left + w + 22}" y="{top + 14 * i + 9}" font-size="10">{_esc(name)}</text>')
    return _frame(width, height, "".join(body), title)


def histogram(groups: Mapping[str, Sequence[float]], *, title: str, lo: float = -6.0, hi: float = 10.0,
              bins: int = 16, width: int = 460, height: int = 240) -> str:
    """Overlaid histograms (one per named group) on a shared [lo, hi] axis."""
    left, right, top, bottom = 40, 110, 24, 30
    w, h = width - left - right, height - top - bottom
    counts = {}
    for name, values in groups.items():
        c = [0] * bins
        for v in values:
            if math.isfinite(v):
                c[min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))] += 1
        counts[name] = c
    peak = max([max(c) for c in counts.values()] + [1])
    body = [f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    bw = w / bins
    for i, (name, c) in enumerate(counts.items()):
        color = PALETTE[i % len(PALETTE)]
        for b, n in enumerate(c):
            if n:
                bh = n / peak * h
                body.append(f'<rect x="{left + b * bw:.1f}" y="{top + h - bh:.1f}" width="{bw:.1f}" '
                            f'height="{bh:.1f}" fill="{color}" fill-opacity="0.45"/>')
        body.append(f'<rect x="{left + w + 8}" y="{top + 14 * i}" width="10" height="10" fill="{color}"/>'
                    f'<text x="{left + w + 22}" y="{top + 14 * i + 9}" font-size="10">'
                    f'{_esc(name)} ({sum(c)})</text>')
    for t in _ticks(lo, hi):
        x = left + (t - lo) / (hi - lo) * w
        body.append(f'<text x="{x:.1f}" y="{top + h + 14}" font-size="10" text-anchor="middle">{t:.3g}</text>')
    body.append(f'<text x="{left - 4}" y="{top + 8}" font-size="10" text-anchor="end">{peak}</text>')
    return _frame(width, height, "".join(body), title)


def funnel(stages: Sequence[tuple[str, int]], *, title: str, width: int = 460) -> str:
    """Horizontal bars, one per stage, widths proportional to counts."""
    height = 30 + 24 * len(stages)
    peak = max([n for _, n in stages] + [1])
    body = []
    for i, (name, n) in enumerate(stages):
        y = 24 + 24 * i
        bw = (width - 220) * n / peak
        body.append(f'<text x="150" y="{y + 13}" font-size="11" text-anchor="end">{_esc(name)}</text>'
                    f'<rect x="156" y="{y}" width="{bw:.1f}" height="18" fill="{PALETTE[0]}"/>'
                    f'<text x="{160 + bw:.1f}" y="{y + 13}" font-size="11">{n}</text>')
    return _frame(width, height, "".join(body), title)
