"""The class statistics report: ``stats.json`` and ``report.csv`` (:mod:`.document`), ``report.html`` (:mod:`.page`).

Built from the job's statistics and weight plan; :func:`load` reads a job's
output back (through :class:`storage.job_output.JobOutput`, the one
validating loader of ``stats.json``).
"""

from weighting.report.document import (
    SPLIT_ORDER,
    build_stats,
    dumps,
    load,
    render_compare,
    render_table,
    rows,
    scheme_params,
    split_items,
    split_lines,
    to_csv,
    to_frame,
)

__all__ = [
    "SPLIT_ORDER",
    "build_stats",
    "dumps",
    "load",
    "render_compare",
    "render_table",
    "rows",
    "scheme_params",
    "split_items",
    "split_lines",
    "to_csv",
    "to_frame",
]
