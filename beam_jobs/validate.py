"""Validation: each image probed, each box checked; failures go to a tagged dead-letter output."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.typehints.decorators import no_annotations

import validation
from beam_jobs import NAMESPACE, UNREADABLE_FILES, progress
from beam_jobs.chunks import RawChunk
from schemas.annotations import ImageRecord
from schemas.label_map import LabelMap

REJECTS = "rejects"
ACCOUNTS = "accounts"


class _ValidateFn(beam.DoFn):
    def __init__(
        self, label_map: LabelMap, max_bytes: int, progress_dir: str | None = None, decode: bool = True, max_boxes: int = validation.MAX_BOXES_PER_IMAGE
    ) -> None:
        self.label_map, self.max_bytes, self.decode, self.max_boxes = label_map, max_bytes, decode, max_boxes
        self.tally = progress.Tally(progress_dir)
        self.validated = Metrics.counter(NAMESPACE, "images_validated")
        self.quarantined = Metrics.counter(NAMESPACE, "images_quarantined")
        self.boxes_dropped = Metrics.counter(NAMESPACE, "boxes_dropped")

    def start_bundle(self) -> None:
        validation.forget_folders()

    def process(self, chunk: RawChunk) -> Iterator[Any]:
        records: list[ImageRecord] = []
        acc = validation.Accounting()
        for item in chunk:
            for out in validation.check(item, self.label_map, acc, self.max_bytes, self.decode, self.max_boxes):
                if isinstance(out, ImageRecord):
                    records.append(out)
                    continue
                if out.is_image:
                    Metrics.counter(NAMESPACE, f"images_quarantined_{out.reason.value}").inc()
                elif out.reason.is_file_level:  # the launcher refuses the output (report_sink.refuse_unreadable)
                    Metrics.counter(NAMESPACE, UNREADABLE_FILES).inc()
                if out.boxes:
                    reason = "image_quarantined" if out.is_image else out.reason.value
                    Metrics.counter(NAMESPACE, f"boxes_dropped_{reason}").inc(out.boxes)
                yield beam.pvalue.TaggedOutput(REJECTS, out)
        self.validated.inc(acc.images_in)
        self.quarantined.inc(acc.images_quarantined)
        self.boxes_dropped.inc(acc.boxes_dropped)
        for repair, n in acc.repairs.items():
            Metrics.counter(NAMESPACE, f"repaired_{repair}").inc(n)
        yield beam.pvalue.TaggedOutput(ACCOUNTS, acc)
        self.tally.add(progress.ACCEPTED, acc.images_written)
        self.tally.add(progress.VALIDATED, acc.images_in)
        if records:
            yield records

    def finish_bundle(self) -> None:
        self.tally.add(progress.VALIDATED, 0, flush=True)


class Validate(beam.PTransform):
    """Probe each image and check its boxes.

    With ``decode`` False (``--pixel-check header``) the pixels are not decoded.

    Outputs: ``records`` (chunks of valid records), ``rejects`` (the
    dead-letter output: one Reject per quarantined image or dropped box)
    and ``accounts`` (one :class:`validation.Accounting` per chunk: images and
    boxes in, written, dropped by reason, repairs).
    """

    def __init__(
        self,
        label_map: LabelMap,
        max_bytes: int = validation.MAX_IMAGE_BYTES,
        progress_dir: str | None = None,
        decode: bool = True,
        max_boxes: int = validation.MAX_BOXES_PER_IMAGE,
    ) -> None:
        super().__init__()
        self.label_map, self.max_bytes, self.progress_dir, self.decode = label_map, max_bytes, progress_dir, decode
        self.max_boxes = max_boxes

    @no_annotations  # returns no single PCollection: Beam 2.78 warns of any other annotation
    def expand(self, raw: beam.PCollection) -> beam.pvalue.DoOutputsTuple:
        check = _ValidateFn(self.label_map, self.max_bytes, self.progress_dir, self.decode, self.max_boxes)
        return raw | "Check" >> beam.ParDo(check).with_outputs(REJECTS, ACCOUNTS, main="records")
