"""Apache Beam jobs; ``beam_jobs.prepare`` is the main one."""
