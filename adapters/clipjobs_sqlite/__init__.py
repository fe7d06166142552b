"""clipjobs_sqlite (in progress)."""
