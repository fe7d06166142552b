"""clipjobs_aiohttp (in progress)."""
