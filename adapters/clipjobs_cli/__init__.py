"""clipjobs_cli (in progress)."""
