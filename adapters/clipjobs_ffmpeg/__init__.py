"""clipjobs_ffmpeg (in progress)."""
