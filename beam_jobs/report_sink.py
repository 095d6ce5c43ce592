"""The job's last step: the report, the merged rejects, the label map, the TFDS metadata and the manifest.

:class:`WriteReport` runs once, on one worker, after every shard is written: it merges the sorted
rejects parts into ``rejects.jsonl`` as a stream, writes the report files through the checksummed
writer (:mod:`storage.checksummed`), and writes ``manifest.json`` last: it makes the folder complete.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterator
from typing import Any

from apache_beam.metrics.metric import MetricsFilter

from beam_jobs import NAMESPACE, UNREADABLE_FILES
from beam_jobs.options import JobError, PrepareOptions
from beam_jobs.rejects import merge_parts
from schemas import tfds_metadata
from schemas.features import SCHEMA_VERSION
from schemas.label_map import LabelMap
from schemas.manifest import MANIFEST_NAME, FileEntry, build_manifest
from schemas.reasons import RejectReason
from storage import fs
from storage.checksummed import write_lines, write_text
from validation import Accounting
from weighting import report
from weighting.apply import WeightPlan
from weighting.report import page
from weighting.report.thumbnails import Thumbnail

REJECT_PARTS = "_rejects-parts"  # sorted parts of rejects.jsonl, merged and removed before the manifest


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: called as a Beam function, never compared
class WriteReport:
    """Everything but the shards, from the job's side inputs; ``manifest.json`` last."""

    opts: PrepareOptions
    label_map: LabelMap
    command: str
    target: str

    def __call__(
        self,
        _: Any,
        stats: list,
        plan: WeightPlan,
        acc: Accounting,
        reject_parts: list[tuple[str, int]],
        shards: list[FileEntry],
        pictures: dict[str, list[Thumbnail]],
        carve: dict[str, Any] | None,
    ) -> None:
        o = self.opts
        doc = report.build_stats(
            dict(stats),
            plan,
            self.label_map,
            acc.totals(),
            command=self.command,
            input_info={
                "path": o.input,
                "format": o.format,
                "image_root": o.image_root,
                "pixel_check": o.pixel_check,
                "shards": sorted(s.name for s in shards),
                "val_carve": carve,  # None: the source's own splits (or --val-fraction 0)
            },
        )
        parts = sorted(path for path, _ in reject_parts)
        shown: list[dict[str, Any]] = []

        def rejects() -> Iterator[str]:  # merged and written as a stream; the first lines kept for the page
            for line in merge_parts(parts):
                if len(shown) < page.REJECTS_SHOWN:
                    shown.append(json.loads(line))
                yield line

        files = [write_lines(self.target, "rejects.jsonl", rejects())]
        if parts:
            fs.delete(parts)
        fs.remove_empty_folder(fs.join(self.target, REJECT_PARTS))
        texts = {
            "stats.json": report.dumps(doc),
            "report.csv": report.to_csv(doc),
            "label_map.pbtxt": self.label_map.to_pbtxt(),
            "report.html": page.render(doc, shown, sum(n for _, n in reject_parts), pictures),
            **tfds_metadata.metadata_files(shards, self.label_map, f"boxweight output; {self.command}"),
        }
        files += [write_text(self.target, name, text) for name, text in texts.items()]
        manifest = build_manifest(shards, files, SCHEMA_VERSION, self.label_map)
        write_text(self.target, MANIFEST_NAME, manifest.to_json())  # last: it makes the folder complete


def refuse_unreadable(result: Any, target: str) -> None:
    """Raise JobError with the details of the annotation files the job could not read, if its counter says
    there were any: a job that lost whole files cannot account for their images, so its output is refused."""
    counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE).with_name(UNREADABLE_FILES))["counters"]
    if not sum(c.committed or c.attempted or 0 for c in counters):
        return
    reason = f'"{RejectReason.ANNOTATION_FILE_UNREADABLE.value}"'
    with fs.open_binary(fs.join(target, "rejects.jsonl")) as f:
        details = [json.loads(line)["detail"] for line in io.TextIOWrapper(f, encoding="utf-8") if reason in line]
    raise JobError("; ".join(details), exit_code=1)
