"""clipjobs_suno (in progress)."""
