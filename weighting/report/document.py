"""The class statistics report: build ``stats.json``, render it, load it.

``build_stats`` assembles the document declared in :mod:`schemas.report`;
``render_table`` is the terminal view, ``to_frame``/``load`` the pandas view
(``report.csv`` is that frame).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from schemas.features import SCHEMA_VERSION
from schemas.label_map import LabelMap
from schemas.report import ASPECT_BUCKETS, POSITION_GRID, SIZE_BUCKETS, STATS_VERSION, Stats, bin_labels, check_stats
from schemas.splits import SPLITS, split_sort_key
from weighting.apply import WeightPlan
from weighting.schemes import class_repeat_factors
from weighting.stats import SplitStats

SPLIT_ORDER = SPLITS  # the report's name for it, kept for readers of weighting.report
_split_key = split_sort_key


def split_items(doc: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``doc["splits"]`` in reading order: train, val, test, then others by name (stats.json keeps keys sorted)."""
    return sorted(doc["splits"].items(), key=lambda kv: _split_key(kv[0]))


def build_stats(
    splits: Mapping[str, SplitStats],
    plan: WeightPlan,
    label_map: LabelMap,
    totals: Mapping[str, Any],
    *,
    command: str = "",
    input_info: Mapping[str, Any] | None = None,
) -> Stats:
    """The ``stats.json`` document: per split and class, totals and the scheme used."""
    threshold = float(plan.params.get("repeat_threshold", 0.001))
    out_splits: dict[str, Any] = {}
    for split in sorted(splits, key=_split_key):
        st = splits[split]
        total = st.boxes
        factors = class_repeat_factors(
            SplitStats(
                images=st.images,
                class_boxes=Counter({n: st.class_boxes.get(n, 0) for _, n in label_map}),
                class_images=st.class_images,
            ),
            threshold,
        )
        classes: list[dict[str, Any]] = []
        for label, name in label_map:
            n = st.class_boxes.get(name, 0)
            sizes: Mapping[str, int] = st.class_sizes.get(name, {})
            aspects: Mapping[str, int] = st.class_aspects.get(name, {})
            classes.append(
                {
                    "id": label,
                    "name": name,
                    "boxes": n,
                    "images": st.class_images.get(name, 0),
                    "boxes_in_images": st.boxes_in_images_with.get(name, 0),
                    "share": n / total if total else 0.0,
                    "weight": float(plan.class_weights.get(name, 1.0)),
                    "repeat_factor": factors.get(name, 1.0),
                    "sizes": {bucket: sizes.get(bucket, 0) for bucket, _ in SIZE_BUCKETS},
                    "aspects": {bucket: aspects.get(bucket, 0) for bucket, _ in ASPECT_BUCKETS},
                    "positions": list(st.class_positions.get(name, [0] * POSITION_GRID**2)),
                }
            )
        present: list[int] = [c["boxes"] for c in classes if c["boxes"] > 0]
        out_splits[split] = {
            "images": st.images,
            "negative_images": st.negative_images,
            "boxes": total,
            "imbalance_ratio": max(present) / min(present) if present else None,
            "boxes_per_image": {b: st.boxes_per_image.get(b, 0) for b in bin_labels()},
            "classes": classes,
        }
    doc = {
        "stats_version": STATS_VERSION,
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "input": dict(input_info or {}),
        "scheme": {
            "name": plan.scheme,
            "computed_on": "train",
            **{k: v for k, v in plan.params.items() if k != "weights"},
        },
        "label_map": [{"id": i, "name": n} for i, n in label_map],
        "splits": out_splits,
        "totals": dict(totals),
    }
    return check_stats(doc)


def dumps(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per split and class: the layout of ``report.csv``."""
    out = []
    for split, entry in split_items(doc):
        for c in entry["classes"]:
            row = {"split": split, **{k: v for k, v in c.items() if k not in ("sizes", "aspects", "positions")}}
            row.update({f"size_{k}": v for k, v in c["sizes"].items()})
            row.update({f"aspect_{k}": v for k, v in c.get("aspects", {}).items()})
            out.append(row)
    return out


def to_frame(doc: Mapping[str, Any]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows(doc))


def load(directory: str) -> Any:
    """``stats.json`` of a job output as a pandas DataFrame, one row per split and class.

    The whole document is in ``frame.attrs['stats']``.

    Raises:
        DataError: ``directory`` is not a complete job output (no manifest).
    """
    from storage.job_output import JobOutput

    doc = JobOutput.open(directory).stats()
    frame = to_frame(doc)
    frame.attrs["stats"] = doc
    return frame


def to_csv(doc: Mapping[str, Any]) -> str:
    return str(to_frame(doc).to_csv(index=False, lineterminator="\n"))


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:,.0f}"


def render_table(doc: Mapping[str, Any]) -> str:
    """The terminal report: per split, classes by frequency with weights beside counts."""
    lines = []
    scheme = doc["scheme"]
    lines.append(
        f"scheme: {scheme['name']} (normalize={scheme.get('normalize')}, computed on {scheme.get('computed_on')})"
    )
    for split, entry in split_items(doc):
        ratio = entry["imbalance_ratio"]
        lines.append("")
        lines.append(
            f"[{split}] {entry['images']} images ({entry['negative_images']} without boxes), {entry['boxes']} boxes, "
            f"imbalance max/min {'n/a' if ratio is None else _fmt(ratio)}"
        )
        w = _name_width(c["name"] for c in entry["classes"])
        header = f"  {'id':>3}  {'class':<{w}} {'boxes':>8} {'share':>7} {'images':>7} {'weight':>8} {'repeat':>7}"
        lines.append(header)
        lines.append("  " + "-" * (len(header) - 2))
        for c in sorted(entry["classes"], key=lambda c: (-c["boxes"], c["id"])):
            lines.append(
                f"  {c['id']:>3}  {c['name']:<{w}} {c['boxes']:>8} {100 * c['share']:>6.2f}% {c['images']:>7} "
                f"{_fmt(c['weight']):>8} {_fmt(c['repeat_factor']):>7}"
            )
    t = doc["totals"]
    lines.append("")
    lines.extend(split_lines(doc))
    lines.append(f"images: {t['images_in']} in = {t['images_written']} written + {t['images_quarantined']} quarantined")
    lines.append(f"boxes:  {t['boxes_in']} in = {t['boxes_written']} written + {t['boxes_dropped']} dropped")
    for title, key in (
        ("quarantined", "images_quarantined_by_reason"),
        ("dropped", "boxes_dropped_by_reason"),
        ("repaired", "repairs"),
    ):
        if t[key]:
            lines.append(f"  {title}: " + ", ".join(f"{k} {v}" for k, v in t[key].items()))
    lossy = sorted(
        ((name, c) for name, c in t["classes"].items() if c["boxes_dropped"]),
        key=lambda nc: (-nc[1]["boxes_dropped"], nc[0]),
    )
    if lossy:
        lines.append("  dropped by class:")
        w = _name_width(name for name, _ in lossy)
        for name, c in lossy:
            reasons = ", ".join(f"{k} {v}" for k, v in c["boxes_dropped_by_reason"].items())
            lines.append(
                f"    {name:<{w}} {c['boxes_in']:>7} in = {c['boxes_written']:>7} written + {c['boxes_dropped']:>6} dropped ({reasons})"
            )
    return "\n".join(lines) + "\n"


def split_lines(doc: Mapping[str, Any]) -> list[str]:
    """How the splits came about, and what the user should know before training (console and report page).

    The carve of a val split out of train, with its size against the asked
    fraction; a warning when it is far from it, or when a class in two or
    more images has none in val; and the classes no train box reaches,
    which keep their place (and the largest weight) in the label map but
    that a model trained on these records will never learn.
    """
    lines = []
    carve = doc["input"].get("val_carve")
    if carve:
        n, k = carve["train_images_before"], carve["val_images"]
        share = 100 * carve["fraction"]
        if k == 0:
            lines.append(f"val: none carved from train ({n} images: too few to give val any and keep every class in train)")
        else:
            lines.append(
                f"val: carved from train, {k} of {n} images ({share:.1f}%; asked {100 * carve['asked_fraction']:g}%), "
                "stratified, every class in two or more images in both splits where it can be"
            )
        if carve["far_from_asked"]:
            lines.append(
                f"warning: the carved val split is {share:.1f}% of train, far from the asked "
                f"{100 * carve['asked_fraction']:g}%: each class in two or more images keeps one image in val, "
                "and no class loses its last train image; give the source a val split to choose it yourself"
            )
        short = [c for c in carve["classes_train_only"] if _images(doc, c) >= 2]
        if short:
            lines.append(f"warning: in two or more images but none in val (their images cannot move): {', '.join(short)}")
    train = dict(split_items(doc)).get("train")
    if train is not None:
        unlearned = [c["name"] for c in train["classes"] if c["boxes"] == 0]
        if unlearned:
            lines.append(
                f"warning: {len(unlearned)} of {len(train['classes'])} classes have no train box and will never be "
                f"learned, though they keep their id and a weight: {', '.join(unlearned)}"
            )
    return lines


def _images(doc: Mapping[str, Any], name: str) -> int:
    return sum(c["images"] for _, entry in split_items(doc) for c in entry["classes"] if c["name"] == name)


def scheme_params(doc: Mapping[str, Any]) -> str:
    """The scheme's parameters as ``k=v, ...`` (those set), for the reports."""
    return ", ".join(
        f"{k}={v}" for k, v in sorted(doc["scheme"].items()) if k not in ("name", "computed_on") and v is not None
    )


def _scheme_text(doc: Mapping[str, Any]) -> str:
    params = scheme_params(doc)
    return f"{doc['scheme']['name']} ({params})" if params else str(doc["scheme"]["name"])


def render_compare(a: Mapping[str, Any], b: Mapping[str, Any], name_a: str = "A", name_b: str = "B") -> str:
    """Two reports side by side, per split and class: boxes, share and weight of each, and the differences.

    The share difference is in percentage points (B - A); the weight column
    is B's weight over A's. Classes that only one report has are named first.
    """
    lines = [f"A = {name_a}: scheme {_scheme_text(a)}", f"B = {name_b}: scheme {_scheme_text(b)}"]
    names_a = {c["name"] for e in a["splits"].values() for c in e["classes"]}
    names_b = {c["name"] for e in b["splits"].values() for c in e["classes"]}
    if names_a != names_b:
        only_a, only_b = sorted(names_a - names_b), sorted(names_b - names_a)
        lines.append(
            "the class sets differ: "
            + "; ".join(
                f"only in {side}: {', '.join(names)}" for side, names in (("A", only_a), ("B", only_b)) if names
            )
        )
    w = _name_width([c["name"] for d in (a, b) for entry in d["splits"].values() for c in entry.get("classes", [])])
    header = (
        f"  {'class':<{w}} {'A boxes':>8} {'A share':>8} {'A weight':>9} {'B boxes':>8} {'B share':>8} {'B weight':>9}"
        f" {'share B-A':>10} {'weight B/A':>11}"
    )
    for split in sorted(set(a["splits"]) | set(b["splits"]), key=_split_key):
        ca = {c["name"]: c for c in a["splits"].get(split, {}).get("classes", [])}
        cb = {c["name"]: c for c in b["splits"].get(split, {}).get("classes", [])}
        lines += [
            "",
            f"[{split}]"
            + ("" if split in a["splits"] else "  (only in B)")
            + ("" if split in b["splits"] else "  (only in A)"),
            header,
        ]
        for name in sorted(
            set(ca) | set(cb), key=lambda n: (-(ca.get(n, {}).get("boxes", 0) + cb.get(n, {}).get("boxes", 0)), n)
        ):
            x, y = ca.get(name), cb.get(name)
            share = f"{100 * (y['share'] - x['share']):>+8.2f}pp" if x and y else f"{'-':>10}"
            ratio = f"{y['weight'] / x['weight']:>10.2f}x" if x and y and x["weight"] else f"{'-':>11}"
            lines.append(f"  {name:<{w}} {_side(x)} {_side(y)} {share} {ratio}")
    return "\n".join(lines) + "\n"


def _side(c: Mapping[str, Any] | None) -> str:
    if c is None:
        return f"{'-':>8} {'-':>8} {'-':>9}"
    return f"{c['boxes']:>8} {100 * c['share']:>7.2f}% {_fmt(c['weight']):>9}"


def _name_width(names: Iterable[str]) -> int:
    """The class column's width: 24, or the longest name, which is never cut (two may share a long prefix)."""
    return max([24, *(len(n) for n in names)])
