"""clipjobs_postgres (in progress)."""
