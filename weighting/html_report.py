"""``report.html``: one standalone page, charts as inline SVG (no script, no CDN, no network)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from schemas.report import SIZE_BUCKETS, bin_labels
from weighting.report import split_items

_W, _H, _PAD_L, _PAD_B, _PAD_T, _PAD_R = 760, 300, 60, 90, 20, 60
_BAR = "#4c78a8"
_WEIGHT = "#e45756"
_SIZES = ("#72b7b2", "#f58518", "#54a24b")
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222;margin:0;background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:18px 0 6px}
.card{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:16px 18px;margin:12px 0}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid #eceef0;text-align:right}th{background:#fafbfc;font-weight:600}
td:first-child,th:first-child,td.name,th.name{text-align:left}
code{background:#f0f1f3;padding:2px 5px;border-radius:4px;font-size:12.5px;word-break:break-all}
.kpis{display:flex;gap:10px;flex-wrap:wrap}.kpi{flex:1;min-width:100px;margin:0}.kpi b{display:block;font-size:20px}
.muted{color:#667}.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg text{font:11px system-ui,sans-serif;fill:#333}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(x: float) -> str:
    if x == 0:
        return "0"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def _svg(title: str, body: str, height: int = _H) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg" '
        f'viewBox="0 0 {_W} {height}" width="100%">{body}</svg>'
    )


def _x_labels(names: Sequence[str], step: float, height: int) -> str:
    out = []
    for i, name in enumerate(names):
        x = _PAD_L + step * (i + 0.5)
        y = height - _PAD_B + 14
        out.append(f'<text x="{x:.1f}" y="{y}" text-anchor="end" transform="rotate(-35 {x:.1f} {y})">{_e(name[:22])}</text>')
    return "".join(out)


def frequency_chart(classes: Sequence[Mapping[str, Any]]) -> str:
    """Boxes per class on a log scale (bars), class weight overlaid (red points, right axis)."""
    classes = sorted(classes, key=lambda c: -c["boxes"])
    names = [c["name"] for c in classes]
    plot_h = _H - _PAD_B - _PAD_T
    step = (_W - _PAD_L - _PAD_R) / max(1, len(classes))
    top = max([c["boxes"] for c in classes] + [1])
    decades = max(1, math.ceil(math.log10(top + 1)))
    wmax = max([c["weight"] for c in classes] + [1e-9])

    def y_log(n: float) -> float:
        return _PAD_T + plot_h * (1 - math.log10(1 + n) / decades)

    parts = []
    for d in range(decades + 1):
        y = y_log(10**d - 1)
        parts.append(f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>')
        parts.append(f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(10**d)}</text>')
    for frac in (0, 0.5, 1):
        y = _PAD_T + plot_h * (1 - frac)
        parts.append(f'<text x="{_W - _PAD_R + 6}" y="{y + 4:.1f}" fill="{_WEIGHT}" style="fill:{_WEIGHT}">{_num(wmax * frac)}</text>')
    points = []
    for i, c in enumerate(classes):
        x = _PAD_L + step * i + step * 0.15
        y = y_log(c["boxes"])
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{_PAD_T + plot_h - y:.1f}" fill="{_BAR}">'
            f'<title>{_e(c["name"])}: {c["boxes"]} boxes, weight {_num(c["weight"])}</title></rect>'
        )
        cx, cy = _PAD_L + step * (i + 0.5), _PAD_T + plot_h * (1 - c["weight"] / wmax)
        points.append(f"{cx:.1f},{cy:.1f}")
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{_WEIGHT}"/>')
    if len(points) > 1:
        parts.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{_WEIGHT}" stroke-width="1.5"/>')
    parts.append(f'<text x="14" y="{_PAD_T + plot_h / 2}" transform="rotate(-90 14 {_PAD_T + plot_h / 2})" text-anchor="middle">boxes (log)</text>')
    parts.append(_x_labels(names, step, _H))
    return _svg("class frequency (log scale) with weights", "".join(parts))


def sizes_chart(classes: Sequence[Mapping[str, Any]]) -> str:
    """Stacked share of COCO size buckets (small/medium/large) per class."""
    classes = sorted(classes, key=lambda c: -c["boxes"])
    plot_h = _H - _PAD_B - _PAD_T
    step = (_W - _PAD_L - _PAD_R) / max(1, len(classes))
    parts = []
    for frac in (0, 0.5, 1):
        y = _PAD_T + plot_h * (1 - frac)
        parts.append(f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e6e6"/>')
        parts.append(f'<text x="{_PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{int(frac * 100)}%</text>')
    for i, c in enumerate(classes):
        total = sum(c["sizes"].values())
        y = _PAD_T + plot_h
        for (bucket, _), color in zip(SIZE_BUCKETS, _SIZES):
            n = c["sizes"].get(bucket, 0)
            h = plot_h * n / total if total else 0
            y -= h
            parts.append(
                f'<rect x="{_PAD_L + step * i + step * 0.15:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" fill="{color}">'
                f'<title>{_e(c["name"])}: {n} {bucket}</title></rect>'
            )
    parts.append(_x_labels([c["name"] for c in classes], step, _H))
    return _svg("box size buckets per class", "".join(parts))


def per_image_chart(histogram: Mapping[str, int]) -> str:
    """Images by number of boxes (histogram bins from schemas.report)."""
    height = 220
    bins = [(label, histogram.get(label, 0)) for label in bin_labels()]  # JSON key order is alphabetical
    plot_h = height - 40 - _PAD_T
    step = (_W - _PAD_L - _PAD_R) / max(1, len(bins))
    top = max([n for _, n in bins] + [1])
    parts = []
    for i, (label, n) in enumerate(bins):
        h = plot_h * n / top
        x = _PAD_L + step * i + step * 0.1
        parts.append(f'<rect x="{x:.1f}" y="{_PAD_T + plot_h - h:.1f}" width="{step * 0.8:.1f}" height="{h:.1f}" fill="{_BAR}"><title>{_e(label)} boxes: {n} images</title></rect>')
        parts.append(f'<text x="{x + step * 0.4:.1f}" y="{_PAD_T + plot_h + 14}" text-anchor="middle">{_e(label)}</text>')
        if n:
            parts.append(f'<text x="{x + step * 0.4:.1f}" y="{_PAD_T + plot_h - h - 4:.1f}" text-anchor="middle">{n}</text>')
    parts.append(f'<text x="{_W / 2}" y="{height - 6}" text-anchor="middle">boxes per image</text>')
    return _svg("boxes per image", "".join(parts), height)


def _class_table(classes: Sequence[Mapping[str, Any]]) -> str:
    head = "<tr><th>id</th><th class='name'>class</th><th>boxes</th><th>share</th><th>images</th><th>weight</th><th>repeat factor</th>" + "".join(f"<th>{b}</th>" for b, _ in SIZE_BUCKETS) + "</tr>"
    rows = []
    for c in sorted(classes, key=lambda c: (-c["boxes"], c["id"])):
        rows.append(
            f"<tr class='class-row'><td>{c['id']}</td><td class='name'>{_e(c['name'])}</td><td>{c['boxes']}</td><td>{100 * c['share']:.2f}%</td>"
            f"<td>{c['images']}</td><td>{_num(c['weight'])}</td><td>{_num(c['repeat_factor'])}</td>"
            + "".join(f"<td>{c['sizes'].get(b, 0)}</td>" for b, _ in SIZE_BUCKETS)
            + "</tr>"
        )
    return f"<table>{head}{''.join(rows)}</table>"


def _reasons(title: str, counts: Mapping[str, int]) -> str:
    if not counts:
        return f"<p class='muted'>{_e(title)}: none</p>"
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"<h3>{_e(title)}</h3><table><tr><th>reason</th><th>count</th></tr>{rows}</table>"


def _class_losses(classes: Mapping[str, Mapping[str, Any]]) -> str:
    lossy = sorted(((n, c) for n, c in classes.items() if c["boxes_dropped"]), key=lambda nc: (-nc[1]["boxes_dropped"], nc[0]))
    if not lossy:
        return "<p class='muted'>No class lost a box.</p>"
    rows = "".join(
        f"<tr><td class='name'>{_e(n)}</td><td>{c['boxes_in']}</td><td>{c['boxes_written']}</td><td>{c['boxes_dropped']}</td>"
        f"<td class='name'>{_e(', '.join(f'{k} {v}' for k, v in c['boxes_dropped_by_reason'].items()))}</td></tr>"
        for n, c in lossy
    )
    head = "<tr><th class='name'>class</th><th>boxes in</th><th>written</th><th>dropped</th><th class='name'>why</th></tr>"
    return f"<h3>Dropped boxes by class</h3><table>{head}{rows}</table>"


def render(doc: Mapping[str, Any]) -> str:
    """The whole page for one ``stats.json`` document."""
    t = doc["totals"]
    scheme = doc["scheme"]
    params = ", ".join(f"{k}={v}" for k, v in sorted(scheme.items()) if k not in ("name", "computed_on") and v is not None)
    sections = []
    for split, entry in split_items(doc):
        ratio = entry["imbalance_ratio"]
        sections.append(
            f"<section class='card split' id='split-{_e(split)}'><h2>{_e(split)}</h2>"
            f"<p>{entry['images']} images ({entry['negative_images']} without boxes), {entry['boxes']} boxes, "
            f"imbalance max/min {'n/a' if ratio is None else _num(ratio)}</p>"
            f"<h3>Class frequency and weights</h3><p class='legend'><span><i class='sw' style='background:{_BAR}'></i>boxes (log scale)</span>"
            f"<span><i class='sw' style='background:{_WEIGHT}'></i>class weight (right axis)</span></p>{frequency_chart(entry['classes'])}"
            f"<h3>Box sizes per class</h3><p class='legend'>"
            + "".join(f"<span><i class='sw' style='background:{c}'></i>{b}</span>" for (b, _), c in zip(SIZE_BUCKETS, _SIZES))
            + f" <span class='muted'>COCO buckets by box area: small &lt; 32², medium &lt; 96², large</span></p>{sizes_chart(entry['classes'])}"
            f"<h3>Boxes per image</h3>{per_image_chart(entry['boxes_per_image'])}"
            f"<h3>Classes</h3>{_class_table(entry['classes'])}</section>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>boxweight report</title><style>{_CSS}</style></head>
<body><main>
<h1>boxweight class statistics</h1>
<p class="muted">scheme <b>{_e(scheme['name'])}</b> ({_e(params)}), weights computed on {_e(scheme.get('computed_on', 'train'))}; input {_e(doc['input'].get('path', ''))} ({_e(doc['input'].get('format', ''))})</p>
<div class="kpis">
<div class="card kpi">images in<b>{t['images_in']}</b></div>
<div class="card kpi">written<b>{t['images_written']}</b></div>
<div class="card kpi">quarantined<b>{t['images_quarantined']}</b></div>
<div class="card kpi">boxes in<b>{t['boxes_in']}</b></div>
<div class="card kpi">boxes written<b>{t['boxes_written']}</b></div>
<div class="card kpi">boxes dropped<b>{t['boxes_dropped']}</b></div>
</div>
{''.join(sections)}
<section class="card" id="rejects"><h2>Rejects</h2>
{_reasons('Images quarantined', t['images_quarantined_by_reason'])}
{_reasons('Boxes dropped', t['boxes_dropped_by_reason'])}
{_reasons('Repairs (kept)', t['repairs'])}
{_class_losses(t['classes'])}
<p class="muted">One line per quarantined image or dropped box in <code>rejects.jsonl</code>.</p></section>
<section class="card" id="command"><h2>Command</h2><code>{_e(doc.get('command', ''))}</code>
<p class="muted">stats version {doc['stats_version']}, record schema version {doc['schema_version']}</p></section>
</main></body></html>
"""
