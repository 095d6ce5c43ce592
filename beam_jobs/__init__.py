"""Apache Beam jobs; ``beam_jobs.prepare`` is the main one, composed of one module per stage."""

#: The namespace of the job's Beam metrics (counters of images and boxes read, written, dropped).
NAMESPACE = "boxweight"
#: The counter of annotation files a worker could not read at all: the launcher refuses an output where it is not 0.
UNREADABLE_FILES = "annotation_files_unreadable"
