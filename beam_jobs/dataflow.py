"""Dataflow: what a dry run translated, following a submitted job, and what an interrupt leaves of it."""

from __future__ import annotations

import sys
import time
from typing import Any

from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.runner import PipelineState

from beam_jobs import NAMESPACE, progress
from beam_jobs.options import PrepareOptions
from storage.terminal import Progress


def translated(proto: Any) -> dict[str, Any]:
    """What a dry run translated: the job's stages in order, those of its read, its leaf transforms and the worker containers."""
    transforms, environments = proto.components.transforms, proto.components.environments
    (job,) = [t for t in transforms.values() if t.unique_name == "Prepare"]
    leaves, todo = [], list(job.subtransforms)
    while todo:
        t = transforms[todo.pop(0)]
        if t.subtransforms:
            todo[:0] = list(t.subtransforms)
        else:
            leaves.append(t)
    images = set()
    for t in leaves:
        if t.environment_id:
            payload = beam_runner_api_pb2.DockerPayload.FromString(environments[t.environment_id].payload)
            images.add(payload.container_image)
    (read,) = [transforms[tid] for tid in job.subtransforms if transforms[tid].unique_name == "Prepare/ReadAnnotations"]
    return {
        "stages": [transforms[tid].unique_name.removeprefix("Prepare/") for tid in job.subtransforms],
        "read": [transforms[tid].unique_name.removeprefix("Prepare/ReadAnnotations/") for tid in read.subtransforms],
        "transforms": len(leaves),
        "containers": sorted(images),
    }




def follow(result: Any, options: PipelineOptions, line: Progress) -> None:
    """Name the Dataflow job and, on a terminal, show its counters until it ends."""
    gcp = options.view_as(GoogleCloudOptions)
    job = result.job_id()
    print(
        f"Dataflow job {job}: https://console.cloud.google.com/dataflow/jobs/{gcp.region}/{job}?project={gcp.project}",
        file=sys.stderr,
    )
    while line.on and not PipelineState.is_terminal(result.state):
        counters = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]
        line.show(
            progress.dataflow_line({c.key.metric.name: c.committed or c.attempted or 0 for c in counters}, result.state)
        )
        time.sleep(10)
    line.clear()




def goes_on(job: str, options: PipelineOptions) -> str:
    """What an interrupt while following a Dataflow job leaves: the job, still running, and how to stop it."""
    gcp = options.view_as(GoogleCloudOptions)
    return (
        f"the Dataflow job {job} goes on and will write {options.view_as(PrepareOptions).output}; stop it with "
        f"gcloud dataflow jobs cancel {job} --region {gcp.region} --project {gcp.project}"
    )
