"""Run the whole clipjobs server inside your program and follow one job to its end.

Runs on its own: ``python examples/follow_a_job_in_process.py``. It starts what
``clipjobs serve`` starts — here in demo mode (no Suno key: the fake Suno runs
in this process), on a throw-away SQLite file and a free port — then starts a
job through the service (as your backend's code would, without HTTP) and
prints every stage the job passes, woken by the store's change feed rather
than by polling.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from clipjobs import JobRequest
from clipjobs.app.config import Settings
from clipjobs_cli import running_server


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            db_url=f"sqlite:///{Path(tmp) / 'clipjobs.db'}",
            port=0,  # any free port
            tokens={"example-token-123": "backend"},
        )
        async with running_server(settings) as server:
            print(f"serving on {server.url} (demo: {server.fake_suno_url is not None})")
            started = await server.service.start_job(
                JobRequest(channel_id="channel_xyz", user_id="backend")
            )
            job = started.job
            print(f"{job.job_id}: {job.stage}")
            while not job.done:
                # Returns as soon as the job has a newer version (or after 30 s).
                await server.store.wait_for_change(job.job_id, job.version, timeout=30)
                newer = await server.store.load(job.job_id)
                assert newer is not None
                if newer.stage != job.stage:
                    print(f"{newer.job_id}: {newer.stage}")
                job = newer
            print(f"audio: {job.audio_url}")


if __name__ == "__main__":
    asyncio.run(main())
