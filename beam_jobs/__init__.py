"""Apache Beam jobs; ``beam_jobs.prepare`` is the main one, composed of one module per stage."""

#: The namespace of the job's Beam metrics (counters of images and boxes read, written, dropped).
NAMESPACE = "boxweight"
