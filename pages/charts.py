"""Small server-side SVG charts: readable without any chart library or script."""
from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 640, 220, 36
COLORS = ("#2fc6f6", "#ff5752", "#9dcf00", "#ffa900")


def bars(title: str, labels: list[str], series: list[tuple[str, list[int]]],
         value_text=str) -> Markup:
    """Grouped bars: one group per label, one bar per series; values are integers."""
    if not any(v for _, values in series for v in values):
        return Markup(f'<p class="lp-hint lp-chart-empty">{escape(title)}: нет данных.</p>')
    top = max(v for _, values in series for v in values)
    group_w = (WIDTH - 2 * PAD) / max(len(labels), 1)
    bar_w = max(group_w / (len(series) + 1), 2)
    parts = [f'<svg class="lp-chart" viewBox="0 0 {WIDTH} {HEIGHT + 40}" role="img" '
             f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<title>{escape(title)}</title>',
             f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH - PAD}" y2="{HEIGHT}" stroke="#c6cdd3"/>']
    for i, label in enumerate(labels):
        x0 = PAD + i * group_w
        for j, (name, values) in enumerate(series):
            value = values[i]
            h = (HEIGHT - PAD) * value / top
            x = x0 + (j + 0.5) * bar_w
            parts.append(f'<rect x="{x:.1f}" y="{HEIGHT - h:.1f}" width="{bar_w * 0.9:.1f}" '
                         f'height="{h:.1f}" fill="{COLORS[j % len(COLORS)]}">'
                         f'<title>{escape(name)} {escape(label)}: {escape(value_text(value))}</title></rect>')
        parts.append(f'<text x="{x0 + group_w / 2:.1f}" y="{HEIGHT + 14}" font-size="10" '
                      f'text-anchor="middle" fill="#525c69">{escape(label)}</text>')
    for j, (name, _) in enumerate(series):
        parts.append(f'<rect x="{PAD + j * 150}" y="{HEIGHT + 24}" width="10" height="10" '
                     f'fill="{COLORS[j % len(COLORS)]}"/><text x="{PAD + j * 150 + 14}" '
                     f'y="{HEIGHT + 33}" font-size="11" fill="#333">{escape(name)}</text>')
    parts.append(f'<text x="{PAD}" y="14" font-size="11" fill="#525c69">max {escape(value_text(top))}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
