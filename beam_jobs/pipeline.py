"""The job as one transform, :class:`Prepare`: one labelled line per stage, in data-flow order."""

from __future__ import annotations

import dataclasses
from typing import Any

import apache_beam as beam
from apache_beam.typehints.decorators import no_annotations

import readers
import validation
from beam_jobs.combine import Merge
from beam_jobs.options import PrepareOptions
from beam_jobs.read import ReadAnnotations
from beam_jobs.rejects import WriteSortedParts, reject_line
from beam_jobs.report_sink import REJECT_PARTS, WriteReport
from beam_jobs.shards import WriteShards
from beam_jobs.split import SplitTrainVal
from beam_jobs.statistics import ClassStatistics
from beam_jobs.thumbnails import Thumbnails
from beam_jobs.validate import ACCOUNTS, REJECTS, Validate
from schemas.label_map import LabelMap
from storage import fs
from weighting.apply import WeightPlan
from weighting.schemes import BoxMultipliers
from weighting.stats import SplitStats


class Prepare(beam.PTransform):
    """The whole job: annotations -> validated records -> statistics -> weights -> shards, rejects and report."""

    def __init__(
        self,
        opts: PrepareOptions,
        read_plan: readers.ReadPlan,
        command: str,
        scheme_params: dict[str, Any],
        target: str,
        progress_dir: str | None = None,
    ) -> None:
        """Args: the job's flags; the read plan (format, label map, the parts to read) and the
        scheme parameters as values, resolved on the launcher; the command line for the report; the
        folder the pipeline writes into (the staging folder of a local output); the
        scratch folder of the progress line (see :mod:`beam_jobs.progress`), or None."""
        super().__init__()
        self.opts, self.read_plan, self.target, self.progress_dir = opts, read_plan, target, progress_dir
        self.weights_from = WeightsFromStatistics(opts, read_plan.label_map, scheme_params)
        self.write_report = WriteReport(opts, read_plan.label_map, command, target)

    @no_annotations  # returns no single PCollection: Beam 2.78 warns of any other annotation
    def expand(self, pbegin: beam.pvalue.PBegin) -> None:
        o, progress_dir = self.opts, self.progress_dir
        read = pbegin | "ReadAnnotations" >> ReadAnnotations(self.read_plan, progress_dir)
        checked = read | "Validate" >> Validate(
            self.read_plan.label_map, o.max_image_mb << 20, progress_dir,
            decode=o.pixel_check == "decode", max_boxes=o.max_boxes_per_image,
        )
        split = checked.records | "SplitTrainVal" >> SplitTrainVal(o.val_fraction)
        records = split.chunks
        stats = records | "ClassStatistics" >> ClassStatistics()
        weight_plan = stats | "WeightsFromStatistics" >> beam.combiners.ToList() | beam.Map(self.weights_from)
        # weights attach after the shard shuffle, on the writing worker (see WriteShards)
        shards = records | "AttachWeightsEncodeAndWriteShards" >> WriteShards(
            self.target, o.num_shards, o.compression, o.max_side or None,
            plan=beam.pvalue.AsSingleton(weight_plan), progress_dir=progress_dir,
        )
        pictures = records | "Thumbnails" >> Thumbnails()
        reject_parts = (
            checked[REJECTS]
            | "RejectLines" >> beam.Map(reject_line)
            | "WriteRejectParts" >> WriteSortedParts(fs.join(self.target, REJECT_PARTS))
        )
        accounting = checked[ACCOUNTS] | "Account" >> beam.CombineGlobally(Merge(validation.Accounting))
        _ = (
            pbegin
            | "ReportSeed" >> beam.Create([None])
            | "WriteReport" >> beam.Map(
                self.write_report,
                beam.pvalue.AsList(stats),
                beam.pvalue.AsSingleton(weight_plan),
                beam.pvalue.AsSingleton(accounting),
                beam.pvalue.AsList(reject_parts),
                beam.pvalue.AsList(shards),
                beam.pvalue.AsDict(pictures),
                beam.pvalue.AsSingleton(split.summary),
            )
        )


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: called as a Beam function, never compared
class WeightsFromStatistics:
    """The train split's class statistics -> the weight plan every shard writer applies."""

    opts: PrepareOptions
    label_map: LabelMap
    scheme_params: dict[str, Any]

    def __call__(self, stats: list[tuple[str, SplitStats]]) -> WeightPlan:
        o = self.opts
        train = dict(stats).get("train") or SplitStats()
        return WeightPlan.from_stats(
            train,
            self.label_map.names,
            o.scheme,
            normalize=o.normalize,
            max_weight=o.max_weight,
            repeat_threshold=o.repeat_threshold,
            multipliers=BoxMultipliers(o.difficult_weight, o.crowd_weight, o.truncated_weight),
            **self.scheme_params,
        )
