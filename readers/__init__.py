"""Annotation readers: a dataset on disk -> raw images and the rejects found reading it.

``open_source(path, format)`` returns a source: a parser with a ``label_map``
and an iterator of :class:`~readers.raw.RawImage` or
:class:`~schemas.annotations.Reject` (:mod:`readers.formats`; the format is
detected by :mod:`readers.detect`). :func:`unique` applies the one
duplicate-image rule (:mod:`readers.unique`); :func:`plan` resolves what the
Beam job's workers read apart (:mod:`readers.read_plan`). Validating what a
reader gives is the next layer's work (:mod:`validation`).
"""

from __future__ import annotations

from readers.detect import detect_format
from readers.formats import FORMATS, ItemizedSource, Source, open_source
from readers.raw import RawBox, RawImage, SourceError
from readers.read_plan import ReadPlan, plan
from readers.unique import duplicate, image_claims, unique

__all__ = [
    "FORMATS",
    "ItemizedSource",
    "RawBox",
    "RawImage",
    "ReadPlan",
    "Source",
    "SourceError",
    "detect_format",
    "duplicate",
    "image_claims",
    "open_source",
    "plan",
    "unique",
]
