"""CSV in the TF OD API tutorial layout: ``filename,width,height,class,xmin,ymin,xmax,ymax``.

Header-driven (column order free, extra columns ignored), one row per box,
pixel corners. A CSV's split is named in its file name (``train_labels.csv``)
or by its folder (``valid/_annotations.csv``), else train. Images are looked
up in ``--image-root``, else in the folder named like the CSV's first word
(``train_labels.csv`` -> ``train/``), else beside the CSV. An image annotated in two CSVs is kept from the first (CSVs that
name a split come first) and the other's rows are rejected as a duplicate. Rows are grouped by file name in order of first appearance.
"""

from __future__ import annotations

import csv
import posixpath
from collections.abc import Iterator

from readers.raw import RawBox, RawImage, SourceError, declared_size
from readers.splits import split_in_name, split_name
from schemas.annotations import Reject
from schemas.label_map import LabelMap
from schemas.reasons import RejectReason
from storage import fs

COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")


class CsvSource:
    """Images and boxes from one or more tutorial-layout CSV files."""

    format = "csv"

    def __init__(self, path: str, image_root: str | None = None, label_map: LabelMap | None = None) -> None:
        self.files = [path] if path.lower().endswith(".csv") else fs.list_files(path, (".csv",))
        if not self.files:
            raise SourceError(f"{path}: no *.csv files found")
        self.image_root = image_root
        read = {f: self._read(f) for f in self.files}
        self._unreadable = [r for r in read.values() if isinstance(r, Reject)]
        self._rows = {f: rows for f, rows in read.items() if not isinstance(rows, Reject)}
        if label_map is None:
            names = sorted({row["class"] for rows in self._rows.values() for _, row in rows if row.get("class") and "_bad" not in row})
            if not names:
                raise SourceError(f"{path}: no class names in the 'class' column")
            label_map = LabelMap.from_names(names)
        self.label_map = label_map

    @staticmethod
    def _read(path: str) -> list[tuple[int, dict[str, str]]] | Reject:
        """(line, row) pairs, each physical line parsed on its own: a detection CSV never holds a line
        break inside a field, so a stray quote costs its own line (the row gets the key ``_bad``
        with the parser's complaint), not every line after it. A file that is not UTF-8 is one reject."""
        try:
            lines = fs.read_text(path).split("\n")
        except UnicodeDecodeError as exc:
            return Reject(path, RejectReason.ANNOTATION_MALFORMED, f"unreadable CSV (not UTF-8: {exc}); none of its rows were read")
        header = [h.strip() for h in _fields(lines[0].rstrip("\r"))] if lines else []
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise SourceError(f"{path}: CSV header {header} lacks columns {missing}")
        rows = []
        for lineno, line in enumerate(lines[1:], 2):
            line = line.rstrip("\r")
            if not line.strip():
                continue
            try:
                values = _fields(line)
            except csv.Error as exc:  # an unbalanced quote, a NUL byte, a field over the size limit
                rows.append((lineno, {"_bad": str(exc), "filename": line.split(",", 1)[0].strip('" ')}))
                continue
            rows.append((lineno, {k: (v or "").strip() for k, v in zip(header, values) if k}
                         | {k: "" for k in header[len(values):] if k}))
        return rows

    def _root_for(self, csv_path: str) -> tuple[str, str]:
        stem = posixpath.splitext(posixpath.basename(csv_path))[0]
        here = posixpath.dirname(csv_path)
        # the CSV's own name (train_labels.csv), else its folder (Roboflow's valid/_annotations.csv)
        split = split_in_name(stem) or split_name(posixpath.basename(here), default="train")
        if self.image_root:
            return self.image_root, split
        split_dir = fs.join(here, stem.split("_")[0])
        return (split_dir if fs.exists(split_dir) else here), split

    def _declares_split(self, csv_path: str) -> bool:
        stem = posixpath.splitext(posixpath.basename(csv_path))[0]
        return bool(split_in_name(stem) or split_name(posixpath.basename(posixpath.dirname(csv_path)), default=""))

    def images_hint(self) -> int:
        """Rows (one per box): an upper bound of the images."""
        return sum(len(rows) for rows in self._rows.values())

    def __iter__(self) -> Iterator[RawImage | Reject]:
        yield from self._unreadable
        # CSVs that name a split first: the tutorial's full raccoon_labels.csv beside
        # train_labels.csv and test_labels.csv repeats their images, which keep their split
        ordered = sorted(self._rows, key=lambda f: (not self._declares_split(f), f))
        first_in: dict[str, str] = {}  # image path -> the CSV that annotated it
        for csv_path in ordered:
            rows = self._rows[csv_path]
            root, split = self._root_for(csv_path)
            grouped: dict[str, list[tuple[int, dict[str, str]]]] = {}
            for lineno, row in rows:
                if "_bad" in row:  # the line was meant as a row: one box, dropped with the parser's reason
                    detail = f"line {lineno} cannot be parsed as CSV ({row['_bad']}; an unbalanced quote?)"
                    yield Reject(f"{csv_path}:{lineno}", RejectReason.BOX_MALFORMED, detail, image=row["filename"][:80], boxes=1)
                    continue
                grouped.setdefault(row["filename"], []).append((lineno, row))
            for name, image_rows in grouped.items():
                image_path = posixpath.normpath(fs.join(root, name))
                if image_path in first_in:
                    where = f"{csv_path}:{image_rows[0][0]}"
                    detail = f"{name} is already annotated in {first_in[image_path]}; the first is kept"
                    yield Reject(where, RejectReason.DUPLICATE_IMAGE, detail, image=name, boxes=len(image_rows), classes=tuple(r["class"] for _, r in image_rows))
                    continue
                first_in[image_path] = csv_path
                boxes, rejects = [], []
                for lineno, row in image_rows:
                    where = f"{csv_path}:{lineno}"
                    try:
                        coords = [float(row[k]) for k in ("xmin", "ymin", "xmax", "ymax")]
                    except ValueError as exc:
                        rejects.append(Reject(where, RejectReason.BOX_MALFORMED, f"{exc}", image=name, boxes=1, classes=(row["class"],)))
                        continue
                    cls = row["class"]
                    boxes.append(RawBox(coords[0], coords[1], coords[2], coords[3], class_name=cls if self.label_map.id_of(cls) else None, class_ref=repr(cls), source=where))
                yield from rejects
                first = image_rows[0][1]
                yield RawImage(
                    key=name,
                    file_name=name,
                    image_root=root,
                    source=f"{csv_path}:{image_rows[0][0]}",
                    split=split,
                    boxes=tuple(boxes),
                    declared_width=declared_size(first["width"]),
                    declared_height=declared_size(first["height"]),
                )


def _fields(line: str) -> list[str]:
    # strict: a quote left open at the line's end is an error, not a field that swallows the rest
    return next(csv.reader([line], strict=True), [])
