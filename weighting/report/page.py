"""``report.html``: one standalone page, charts as inline SVG (no script, no CDN, no network)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

from schemas.report import ASPECT_BUCKETS, BOXES_PER_IMAGE_BINS, POSITION_GRID, SIZE_BUCKETS, bin_labels
from weighting.report import scheme_params, split_items, split_lines
from weighting.report.thumbnails import Thumbnail

_W, _H, _PAD_L, _PAD_B, _PAD_T, _PAD_R = 760, 300, 60, 90, 20, 60
_BAR = "#4c78a8"
_WEIGHT = "#e45756"
_SIZES = ("#72b7b2", "#f58518", "#54a24b")
_ASPECTS = ("#b279a2", "#d4a6c8", "#bab0ac", "#9ecae9", "#4c78a8")
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222;margin:0;background:#f6f7f9}
main{max-width:980px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:18px 0 6px}
.card{background:#fff;border:1px solid #e3e5e8;border-radius:8px;padding:16px 18px;margin:12px 0}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:4px 8px;border-bottom:1px solid #eceef0;text-align:right}th{background:#fafbfc;font-weight:600}
td:first-child,th:first-child,td.name,th.name{text-align:left}
code{background:#f0f1f3;padding:2px 5px;border-radius:4px;font-size:12.5px;white-space:pre-wrap;overflow-wrap:anywhere}
.scroll{overflow-x:auto}#command code{display:block;padding:8px;word-spacing:2px}td.detail{font-size:12.5px;overflow-wrap:anywhere}
.kpis{display:flex;gap:10px;flex-wrap:wrap}.kpi{flex:1;min-width:100px;margin:0}.kpi b{display:block;font-size:20px}
.muted{color:#667}.warn{color:#8a4b00;background:#fff4e0;padding:6px 10px;border-radius:4px}.legend span{display:inline-block;margin-right:14px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
svg text{font:11px system-ui,sans-serif;fill:#333}
.strip{display:flex;align-items:center;gap:6px;margin:4px 0;flex-wrap:wrap}.strip .name{width:160px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.strip img{height:72px;border-radius:3px;border:1px solid #ddd}
@media (max-width:600px){.strip .name{flex-basis:100%;width:auto}}
.maps{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-end}.maps figure{margin:0;width:min-content}
figcaption{font-size:11px;color:#555;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:100%}
.maps figure:first-child figcaption{max-width:none}
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


_ROW, _NAME_CHARS, _CHAR_W = 20, 40, 6.6  # bar chart row height; longest label shown whole; px per label character


def _label(name: str) -> str:
    return name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "\u2026"


def _ticks(top: float, log: bool) -> list[float]:
    if log:
        return [10.0**d for d in range(0, math.ceil(math.log10(top + 1)) + 1)]
    step = 10 ** math.floor(math.log10(top)) if top > 0 else 1
    while top / step > 5:
        step *= 2
    return [step * k for k in range(0, int(top // step) + 2)]


def bar_chart(
    title: str,
    rows: Sequence[tuple[str, float, str]],
    log: bool = False,
    reference: float | None = None,
    color: str = _BAR,
) -> str:
    """Horizontal bars, one row per class: the name in a column wide enough for it, the value's text at the bar's end.

    ``rows``: (name, value, text). ``log``: a log10(1 + value) axis, said in the title.
    ``reference``: a dashed vertical line at that value (weight 1).
    """
    label_w = 12 + _CHAR_W * max([len(_label(n)) for n, _, _ in rows] + [4])
    left, right, top_pad = label_w, _W - 70, 8
    height = top_pad + _ROW * len(rows) + 30
    values = [v for _, v, _ in rows] + ([reference] if reference is not None else [])
    top = max(values + [1e-9])
    ticks = _ticks(top, log)
    end = ticks[-1] if ticks else top

    def x(v: float) -> float:
        frac = math.log10(1 + v) / math.log10(1 + end) if log else v / end
        return left + (right - left) * frac

    parts = []
    for t in ticks:
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top_pad}" y2="{height - 24}" stroke="#e6e6e6"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{height - 10}" text-anchor="middle">{_num(t)}</text>')
    for i, (name, value, text) in enumerate(rows):
        y = top_pad + _ROW * i
        parts.append(
            f'<text x="{left - 8:.1f}" y="{y + _ROW * 0.68:.1f}" text-anchor="end"><title>{_e(name)}</title>{_e(_label(name))}</text>'
        )
        parts.append(
            f'<rect x="{left}" y="{y + 3}" width="{max(x(value) - left, 0):.1f}" height="{_ROW - 6}" fill="{color}">'
            f"<title>{_e(name)}: {_e(text)}</title></rect>"
        )
        parts.append(f'<text x="{x(value) + 4:.1f}" y="{y + _ROW * 0.68:.1f}">{_e(text)}</text>')
    if reference is not None:
        rx = x(reference)
        parts.append(
            f'<line x1="{rx:.1f}" x2="{rx:.1f}" y1="{top_pad - 4}" y2="{height - 24}" stroke="#333" stroke-dasharray="4 3"/>'
        )
    return _svg(title, "".join(parts), height)


def count_charts(classes: Sequence[Mapping[str, Any]]) -> str:
    """Boxes per class on a linear axis, counts on the bars; a second, log view when the counts span over 100x."""
    classes = sorted(classes, key=lambda c: (-c["boxes"], c["id"]))
    rows = [(c["name"], c["boxes"], f"{c['boxes']} ({100 * c['share']:.1f}%)") for c in classes]
    out = bar_chart("boxes per class", rows)
    counts = [c["boxes"] for c in classes if c["boxes"]]
    if counts and max(counts) / min(counts) > 100:
        out += "<p class='muted'>The same counts on a log scale, where the rare classes are visible:</p>"
        out += bar_chart("boxes per class, log scale", rows, log=True)
    return out


def weight_charts(classes: Sequence[Mapping[str, Any]]) -> str:
    """Class weights with a weight = 1 line; repeat factors too where any is not 1."""
    classes = sorted(classes, key=lambda c: (-c["boxes"], c["id"]))
    out = bar_chart(
        "class weight", [(c["name"], c["weight"], _num(c["weight"])) for c in classes], reference=1.0, color=_WEIGHT
    )
    if any(c["repeat_factor"] != 1 for c in classes):
        out += "<h3>Repeat factors</h3>" + bar_chart(
            "repeat factor",
            [(c["name"], c["repeat_factor"], _num(c["repeat_factor"])) for c in classes],
            reference=1.0,
            color=_SIZES[0],
        )
    return out


def stacked_chart(
    title: str, classes: Sequence[Mapping[str, Any]], key: str, buckets: Sequence[str], colors: Sequence[str]
) -> str:
    """Per class, the share of each bucket of ``c[key]`` as one stacked horizontal bar."""
    classes = sorted(classes, key=lambda c: (-c["boxes"], c["id"]))
    label_w = 12 + _CHAR_W * max([len(_label(c["name"])) for c in classes] + [4])
    left, right, top_pad = label_w, _W - 20, 8
    height = top_pad + _ROW * len(classes) + 30
    parts = []
    for frac in (0, 0.5, 1):
        x = left + (right - left) * frac
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top_pad}" y2="{height - 24}" stroke="#e6e6e6"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">{int(frac * 100)}%</text>')
    for i, c in enumerate(classes):
        y = top_pad + _ROW * i
        parts.append(
            f'<text x="{left - 8:.1f}" y="{y + _ROW * 0.68:.1f}" text-anchor="end"><title>{_e(c["name"])}</title>{_e(_label(c["name"]))}</text>'
        )
        counts = c.get(key, {})
        total = sum(counts.values())
        x = float(left)
        for bucket, color in zip(buckets, colors):
            n = counts.get(bucket, 0)
            w = (right - left) * n / total if total else 0
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{_ROW - 6}" fill="{color}"><title>{_e(c["name"])}: {n} {bucket}</title></rect>'
            )
            x += w
    return _svg(title, "".join(parts), height)


def _legend(buckets: Sequence[str], colors: Sequence[str], note: str) -> str:
    swatches = "".join(
        f"<span><i class='sw' style='background:{c}'></i>{_e(b)}</span>" for b, c in zip(buckets, colors)
    )
    return f"<p class='legend'>{swatches} <span class='muted'>{note}</span></p>"


def heatmap(title: str, cells: Sequence[int], size: int) -> str:
    """Box centres on the POSITION_GRID grid over the image: darker is more boxes; the count in each cell."""
    n = POSITION_GRID
    top = max(cells) if cells else 0
    step = size / n
    parts = [f'<rect width="{size}" height="{size}" fill="#fff" stroke="#ccc"/>']
    for i, count in enumerate(cells):
        row, col = divmod(i, n)
        alpha = count / top if top else 0
        parts.append(
            f'<rect x="{col * step:.1f}" y="{row * step:.1f}" width="{step:.1f}" height="{step:.1f}" fill="{_BAR}" fill-opacity="{alpha:.3f}">'
            f"<title>{_e(title)}: {count} box centres</title></rect>"
        )
        if size >= 150 and count:
            color = "#fff" if alpha > 0.55 else "#333"
            parts.append(
                f'<text x="{(col + 0.5) * step:.1f}" y="{(row + 0.5) * step + 4:.1f}" text-anchor="middle" style="fill:{color}">{count}</text>'
            )
    return (
        f'<svg class="heat" role="img" aria-label="{_e(title)}" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" '
        f'width="{size}" height="{size}">{"".join(parts)}</svg>'
    )


POSITION_CLASSES = 40  # classes with their own position map, rarest first


def position_maps(classes: Sequence[Mapping[str, Any]]) -> str:
    """Where box centres fall: all classes together, then one small map per class, rarest first."""
    present = [c for c in classes if c["boxes"] and "positions" in c]
    if not present:
        return "<p class='muted'>No boxes.</p>"
    total = [sum(cells) for cells in zip(*(c["positions"] for c in present))]
    rarest = sorted(present, key=lambda c: (c["boxes"], c["id"]))[:POSITION_CLASSES]
    small = "".join(
        f"<figure>{heatmap(c['name'], c['positions'], 72)}<figcaption title='{_e(c['name'])}'>{_e(c['name'])} ({c['boxes']})</figcaption></figure>"
        for c in rarest
    )
    more = (
        f"<p class='muted'>The {len(present) - len(rarest)} most frequent classes are only in the map of all classes.</p>"
        if len(present) > len(rarest)
        else ""
    )
    return f"<div class='maps'><figure>{heatmap('all classes', total, 180)}<figcaption>all classes</figcaption></figure>{small}</div>{more}"


def splits_table(doc: Mapping[str, Any]) -> str:
    """Per class, its boxes and share in every split, side by side."""
    splits = split_items(doc)
    by_split = {split: {c["name"]: c for c in entry["classes"]} for split, entry in splits}
    order: dict[str, int] = {}
    for _, entry in splits:
        for c in sorted(entry["classes"], key=lambda c: (-c["boxes"], c["id"])):
            order.setdefault(c["name"], len(order))
    head = (
        "<tr><th class='name'>class</th>"
        + "".join(f"<th>{_e(s)} boxes</th><th>{_e(s)} share</th>" for s, _ in splits)
        + "</tr>"
    )
    rows = []
    for name in order:
        cells = []
        for split, _ in splits:
            c = by_split[split].get(name)
            cells.append(f"<td>{c['boxes']}</td><td>{100 * c['share']:.1f}%</td>" if c else "<td>-</td><td>-</td>")
        rows.append(f"<tr class='split-row'><td class='name'>{_e(name)}</td>{''.join(cells)}</tr>")
    return f"<div class='scroll'><table>{head}{''.join(rows)}</table></div>"


def per_image_chart(histogram: Mapping[str, int]) -> str:
    """Images by number of boxes, as a histogram: each bin as wide as the counts it holds, its height images per count.

    The bins of ``schemas.report`` widen from 6 boxes up (6-7, 8-9, 10-14, 15-19); drawn at equal width
    they would make the tail look heavier than it is. The open last bin (20+) is drawn 5 wide, hatched.
    The axis ends one bin after the last bin with images.
    """
    height, bins = 220, BOXES_PER_IMAGE_BINS
    spans = [(lo, hi) for lo, hi in zip(bins, bins[1:])] + [(bins[-1], bins[-1] + 5)]
    counts = [histogram.get(label, 0) for label in bin_labels()]  # JSON key order is alphabetical
    shown = min(len(spans), max([i for i, n in enumerate(counts) if n] + [0]) + 2)  # up to one empty bin past the last
    spans, counts = spans[:shown], counts[:shown]
    plot_h = height - 40 - _PAD_T
    unit = (_W - _PAD_L - _PAD_R) / spans[-1][1]
    top = max([n / (hi - lo) for n, (lo, hi) in zip(counts, spans)] + [1e-9])
    parts = [
        '<defs><pattern id="open" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        f'<rect width="3" height="6" fill="{_BAR}"/></pattern></defs>'
    ]
    for (lo, hi), label, n in zip(spans, bin_labels(), counts):
        h = plot_h * n / (hi - lo) / top
        x, w = _PAD_L + unit * lo, unit * (hi - lo)
        fill = "url(#open)" if lo == bins[-1] else _BAR
        parts.append(
            f'<rect x="{x + 0.5:.1f}" y="{_PAD_T + plot_h - h:.1f}" width="{w - 1:.1f}" height="{h:.1f}" fill="{fill}">'
            f"<title>{_e(label)} boxes: {n} images</title></rect>"
        )
        parts.append(f'<text x="{x + w / 2:.1f}" y="{_PAD_T + plot_h + 14}" text-anchor="middle">{_e(label)}</text>')
        if n:
            parts.append(f'<text x="{x + w / 2:.1f}" y="{_PAD_T + plot_h - h - 4:.1f}" text-anchor="middle">{n}</text>')
    parts.append(
        f'<text x="{_W / 2}" y="{height - 6}" text-anchor="middle">boxes per image (bar area = images; wide bins hold several counts)</text>'
    )
    return _svg("boxes per image", "".join(parts), height)


def _class_table(classes: Sequence[Mapping[str, Any]]) -> str:
    head = (
        "<tr><th>id</th><th class='name'>class</th><th>boxes</th><th>share</th><th>images</th><th>weight</th><th>repeat factor</th>"
        + "".join(f"<th>{b}</th>" for b, _ in SIZE_BUCKETS)
        + "</tr>"
    )
    rows = []
    for c in sorted(classes, key=lambda c: (-c["boxes"], c["id"])):
        rows.append(
            f"<tr class='class-row'><td>{c['id']}</td><td class='name'>{_e(c['name'])}</td><td>{c['boxes']}</td><td>{100 * c['share']:.2f}%</td>"
            f"<td>{c['images']}</td><td>{_num(c['weight'])}</td><td>{_num(c['repeat_factor'])}</td>"
            + "".join(f"<td>{c['sizes'].get(b, 0)}</td>" for b, _ in SIZE_BUCKETS)
            + "</tr>"
        )
    return f"<div class='scroll'><table>{head}{''.join(rows)}</table></div>"


def _reasons(title: str, counts: Mapping[str, int]) -> str:
    if not counts:
        return f"<p class='muted'>{_e(title)}: none</p>"
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"<h3>{_e(title)}</h3><div class='scroll'><table><tr><th>reason</th><th>count</th></tr>{rows}</table></div>"


def _class_losses(classes: Mapping[str, Mapping[str, Any]]) -> str:
    lossy = sorted(
        ((n, c) for n, c in classes.items() if c["boxes_dropped"]), key=lambda nc: (-nc[1]["boxes_dropped"], nc[0])
    )
    if not lossy:
        return "<p class='muted'>No class lost a box.</p>"
    rows = "".join(
        f"<tr><td class='name'>{_e(n)}</td><td>{c['boxes_in']}</td><td>{c['boxes_written']}</td><td>{c['boxes_dropped']}</td>"
        f"<td class='name'>{_e(', '.join(f'{k} {v}' for k, v in c['boxes_dropped_by_reason'].items()))}</td></tr>"
        for n, c in lossy
    )
    head = (
        "<tr><th class='name'>class</th><th>boxes in</th><th>written</th><th>dropped</th><th class='name'>why</th></tr>"
    )
    return f"<h3>Dropped boxes by class</h3><div class='scroll'><table>{head}{rows}</table></div>"


REJECTS_SHOWN = 100


def _reject_list(rejects: Sequence[Mapping[str, Any]] | None, total: int) -> str:
    if rejects is None:
        return ""
    if not total:
        return "<p class='muted'>Nothing was rejected.</p>"
    rows = "".join(
        f"<tr><td class='name'>{_e(r.get('image') or r.get('source', ''))}</td><td class='name'>{_e(r.get('kind', ''))}</td>"
        f"<td class='name'>{_e(r.get('reason', ''))}</td><td class='name detail'>{_e(r.get('detail', ''))}</td></tr>"
        for r in rejects[:REJECTS_SHOWN]
    )
    shown = min(len(rejects), REJECTS_SHOWN)
    more = f"<p class='muted'>The other {total - shown} are in <code>rejects.jsonl</code>.</p>" if total > shown else ""
    head = "<tr><th class='name'>file</th><th class='name'>kind</th><th class='name'>reason</th><th class='name'>detail</th></tr>"
    return f"<h3>The first {shown} of {total}</h3><div class='scroll'><table class='rejects'>{head}{rows}</table></div>{more}"


THUMBNAIL_BYTES = 1 << 20  # the strips stop at about this many bytes of embedded JPEG


def thumbnail_strips(doc: Mapping[str, Any], pictures: Mapping[str, Sequence[Thumbnail]]) -> str:
    """One row per class, rarest first (boxes over all splits): its name and count, then its images."""
    boxes: dict[str, int] = {}
    for _, entry in split_items(doc):
        for c in entry["classes"]:
            boxes[c["name"]] = boxes.get(c["name"], 0) + c["boxes"]
    rows, used, shown = [], 0, 0
    for name in sorted((n for n in boxes if pictures.get(n)), key=lambda n: (boxes[n], n)):
        if used > THUMBNAIL_BYTES:
            break
        images = "".join(
            f"<img src='{t.uri}' alt='{_e(t.image)}' title='{_e(t.image)}: {t.boxes} {_e(name)}'>"
            for t in pictures[name]
        )
        used += sum(len(t.uri) for t in pictures[name])
        shown += 1
        rows.append(
            f"<div class='strip'><div class='name' title='{_e(name)}'>{_e(name)} <span class='muted'>{boxes[name]}</span></div>{images}</div>"
        )
    if not rows:
        return "<p class='muted'>No image has a box.</p>"
    rest = len([n for n in boxes if pictures.get(n)]) - shown
    more = (
        f"<p class='muted'>The {rest} most frequent classes are left out to keep this page small.</p>" if rest else ""
    )
    return "".join(rows) + more


def render(
    doc: Mapping[str, Any],
    rejects: Sequence[Mapping[str, Any]] | None = None,
    total_rejects: int = 0,
    pictures: Mapping[str, Sequence[Thumbnail]] | None = None,
) -> str:
    """The whole page for one ``stats.json`` document.

    ``rejects``: the first lines of ``rejects.jsonl`` (as dicts, in file order; the first
    :data:`REJECTS_SHOWN` are listed with their files) and ``total_rejects`` the number of
    its lines; None leaves the list out. ``pictures``: class name -> thumbnails with
    the boxes drawn (:mod:`weighting.report.thumbnails`); None leaves the strips out.
    """
    t = doc["totals"]
    scheme = doc["scheme"]
    params = scheme_params(doc)
    examples = (
        ""
        if pictures is None
        else "<section class='card' id='examples'><h2>Examples per class, rarest first</h2>"
        "<p class='muted'>A few images of each class as written to the shards: its boxes in red, other classes' in white.</p>"
        f"{thumbnail_strips(doc, pictures)}</section>"
    )
    sections = []
    for split, entry in split_items(doc):
        ratio = entry["imbalance_ratio"]
        sections.append(
            f"<section class='card split' id='split-{_e(split)}'><h2>{_e(split)}</h2>"
            f"<p>{entry['images']} images ({entry['negative_images']} without boxes), {entry['boxes']} boxes, "
            f"imbalance max/min {'n/a' if ratio is None else _num(ratio)}</p>"
            f"<h3>Boxes per class</h3>{count_charts(entry['classes'])}"
            f"<h3>Class weights</h3><p class='muted'>The dashed line is weight 1, a background anchor's weight in most trainers.</p>"
            f"{weight_charts(entry['classes'])}"
            f"<h3>Box sizes per class</h3>"
            + _legend(
                [b for b, _ in SIZE_BUCKETS], _SIZES, "COCO buckets by box area: small &lt; 32², medium &lt; 96², large"
            )
            + stacked_chart(
                "box size buckets per class", entry["classes"], "sizes", [b for b, _ in SIZE_BUCKETS], _SIZES
            )
            + (
                "<h3>Box shapes per class</h3>"
                + _legend(
                    [b for b, _ in ASPECT_BUCKETS],
                    _ASPECTS,
                    "width : height in pixels: tall &lt; 1:2, portrait &lt; 4:5, square &lt; 5:4, landscape &lt; 2:1, wide",
                )
                + stacked_chart(
                    "box aspect ratio per class", entry["classes"], "aspects", [b for b, _ in ASPECT_BUCKETS], _ASPECTS
                )
                + "<h3>Where the boxes are</h3><p class='muted'>Box centres on a 5 x 5 grid over the image; darker cells hold more.</p>"
                + position_maps(entry["classes"])
                if doc["stats_version"] >= 3
                else ""
            )
            + f"<h3>Boxes per image</h3>{per_image_chart(entry['boxes_per_image'])}"
            f"<h3>Classes</h3>{_class_table(entry['classes'])}</section>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>boxweight report</title><style>{_CSS}</style></head>
<body><main>
<h1>boxweight class statistics</h1>
<p class="muted">scheme <b>{_e(scheme["name"])}</b> ({_e(params)}), weights computed on {_e(scheme.get("computed_on", "train"))}; input {_e(doc["input"].get("path", ""))} ({_e(doc["input"].get("format", ""))}){_pixel_note(doc)}</p>
<div class="kpis">
<div class="card kpi">images in<b>{t["images_in"]}</b></div>
<div class="card kpi">written<b>{t["images_written"]}</b></div>
<div class="card kpi">quarantined<b>{t["images_quarantined"]}</b></div>
<div class="card kpi">boxes in<b>{t["boxes_in"]}</b></div>
<div class="card kpi">boxes written<b>{t["boxes_written"]}</b></div>
<div class="card kpi">boxes dropped<b>{t["boxes_dropped"]}</b></div>
</div>
<section class="card" id="splits"><h2>Splits side by side</h2>{_split_notes(doc)}{splits_table(doc)}</section>
{examples}
{"".join(sections)}
<section class="card" id="rejects"><h2>Rejects</h2>
{_reject_list(rejects, total_rejects)}
{_reasons("Images quarantined", t["images_quarantined_by_reason"])}
{_reasons("Boxes dropped", t["boxes_dropped_by_reason"])}
{_reasons("Repairs (kept)", t["repairs"])}
{_class_losses(t["classes"])}
<p class="muted">One line per quarantined image or dropped box in <code>rejects.jsonl</code>.</p></section>
<section class="card" id="command"><h2>Command</h2><code>{_e(doc.get("command", ""))}</code>
<p class="muted">stats version {doc["stats_version"]}, record schema version {doc["schema_version"]}</p></section>
</main></body></html>
"""


def _pixel_note(doc: Mapping[str, Any]) -> str:
    if doc["input"].get("pixel_check") != "header":
        return ""
    return "; <b>pixels not decoded (--pixel-check header)</b>: an image whose pixel data is corrupt was written"


def _split_notes(doc: Mapping[str, Any]) -> str:
    """The carve and the warnings of :func:`document.split_lines`, warnings marked as such."""
    notes = []
    for line in split_lines(doc):
        text = _e(line.removeprefix("warning: "))
        notes.append(f'<p class="warn"><b>Warning:</b> {text}</p>' if line.startswith("warning: ") else f'<p class="muted">{text}</p>')
    return "".join(notes)
