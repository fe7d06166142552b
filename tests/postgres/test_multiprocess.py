"""Three ``clipjobs serve`` processes on one PostgreSQL schema, one SIGKILLed mid-run.

300 jobs are started across the three; the fake Suno sends every callback
twice and calls each job back at the process that sent it, so the killed
process's callbacks fail and the survivors must finish its jobs: by polling
those it sent, at once for those it held (a survivor reaps the dead worker
within a heartbeat and frees its leases), and by sending again those it left
uncertain. Every job succeeds. An SSE client on a surviving process follows
jobs created on all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _pg_harness import DSN, StoreFactory

from _procs import HEADERS, SUNO_KEY, Serve, free_port, process_env, run_once, running
from clipjobs import fold
from clipjobs.domain.events import SunoRequestSent, SunoTaskCreated
from clipjobs.domain.stages import Stage
from clipjobs.domain.state import JobState
from clipjobs_postgres import PostgresEventStore
from clipjobs_suno.fake import running_fake_suno

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

JOBS = 300
WATCHED_PER_PROCESS = 10
#: Only so a broken build fails with a diagnosis instead of hanging CI; every
#: job ends by CLIPJOBS_JOB_TIMEOUT_S (60 s) plus a sweep.
FINISH_LIMIT_S = 150.0


@contextlib.asynccontextmanager
async def three_servers(schema: str, suno_url: str, tmp_path: Path) -> AsyncIterator[list[Serve]]:
    urls = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    servers = [
        Serve(
            process_env(
                url,
                suno_url,
                DSN,
                CLIPJOBS_PG_SCHEMA=schema,
                CLIPJOBS_WORKER_ID=f"mp-worker-{i}",
                CLIPJOBS_SUNO_MAX_RPS="500",
                CLIPJOBS_MAX_ACTIVE_PER_USER="1000",
                CLIPJOBS_POLL_AFTER_S="2",
                CLIPJOBS_POLL_INTERVAL_S="1",
                # A send the dead process left uncertain is sent again after 5 s
                # (no callback can name it: its callback URL was the dead one's).
                CLIPJOBS_RESEND_UNCERTAIN_AFTER_S="5",
                CLIPJOBS_JOB_TIMEOUT_S="60",
                CLIPJOBS_MEDIA_DIR=str(tmp_path / f"media-{i}"),
            ),
            tmp_path,
            f"mp-worker-{i}",
        )
        for i, url in enumerate(urls)
    ]
    async with running(servers):
        assert [server.url for server in servers] == urls
        yield servers


async def _follow(session: aiohttp.ClientSession, url: str) -> list[tuple[int, dict[str, Any]]]:
    """Every ``job`` event of one SSE stream, until the server ends it."""
    seen: list[tuple[int, dict[str, Any]]] = []
    event_id, kind = 0, ""
    async with session.get(url, headers=HEADERS, timeout=aiohttp.ClientTimeout(total=None)) as r:
        assert r.status == 200, await r.text()
        async for raw in r.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                assert kind == "job", line
                seen.append((event_id, json.loads(line[6:])))
    return seen


async def _stuck(store: PostgresEventStore, job_ids: list[str]) -> str:
    """What the unfinished jobs look like, for the failure message."""
    lines = []
    for job in job_ids:
        state = await store.load(job)
        if state is not None and not state.done:
            lines.append(
                f"{job} {state.stage.value} work={state.work} due={state.due_at}"
                f" v={state.version} send={state.send_state}"
            )
    return f"{len(lines)}:\n" + "\n".join(lines[:15])


async def test_three_processes_one_killed_every_job_ends_exactly_once(
    stores: StoreFactory, tmp_path: Path
) -> None:
    """300 jobs on 3 processes, one SIGKILLed: each ends once, logs contiguous, SSE saw it all."""
    store = await stores()  # migrates the schema and lets the test read what the processes wrote
    async with (
        running_fake_suno(
            api_key=SUNO_KEY,
            scenario="duplicate-callbacks",
            credits=1_000_000,
            rate_limit=1_000_000,
            text_after_s=0.3,
            first_after_s=0.6,
            complete_after_s=1.0,
            callback_retries=1,
            callback_retry_delay_s=0.2,
            callback_timeout_s=5.0,
        ) as (suno_url, fake),
        three_servers(store.schema, suno_url, tmp_path) as servers,
        aiohttp.ClientSession() as session,
    ):
        survivor, other, victim = servers

        streams: dict[str, asyncio.Task[list[tuple[int, dict[str, Any]]]]] = {}

        async def start(i: int) -> str:
            job = await run_once(session, servers[i % 3].url, f"mp-ch-{i:03d}")
            if i < 3 * WATCHED_PER_PROCESS:
                # Followed on the survivor whichever process created it.
                events = f"{survivor.url}/api/music-clips/jobs/{job}/events"
                streams[job] = asyncio.create_task(_follow(session, events))
            return job

        job_ids = await asyncio.gather(*(start(i) for i in range(JOBS)))
        assert len(set(job_ids)) == JOBS
        # Mid-run: jobs are being sent and called back when the process dies.
        await asyncio.sleep(0.5)
        assert await store.count_active() > 0
        assert await victim.kill() == -signal.SIGKILL

        async def all_done() -> None:
            while await store.count_active() > 0:
                await asyncio.sleep(0.5)

        try:
            await asyncio.wait_for(all_done(), FINISH_LIMIT_S)
        except TimeoutError:
            pytest.fail(f"jobs left unfinished: {await _stuck(store, job_ids)}")
        sse = {job: await asyncio.wait_for(task, 30) for job, task in streams.items()}
        assert survivor.proc.returncode is None and other.proc.returncode is None

    stages: dict[str, int] = {}
    resent = 0
    for job in job_ids:
        log = await store.read(job)
        final = await store.load(job)
        assert final is not None and final.done
        # Versions contiguous, and the projection row is the fold of the log.
        assert [r.version for r in log] == list(range(1, final.version + 1))
        assert fold([r.event for r in log]) == final
        # Exactly one event ends the job; nothing after it changes the stage.
        states: list[JobState] = []
        state: JobState | None = None
        for r in log:
            state = fold([r.event], state)
            states.append(state)
        endings = [
            v for v, s in enumerate(states, 1) if s.done and (v == 1 or not states[v - 2].done)
        ]
        assert len(endings) == 1, (job, [type(r.event).__name__ for r in log])
        assert {s.stage for s in states[endings[0] - 1 :]} == {final.stage}
        assert sum(isinstance(r.event, SunoTaskCreated) for r in log) <= 1
        sends = [r.event for r in log if isinstance(r.event, SunoRequestSent)]
        assert len(sends) <= 2 and all(s.reason for s in sends[1:])
        resent += len(sends) - 1
        stages[final.stage.value] = stages.get(final.stage.value, 0) + 1

        if job in sse:
            seen = sse[job]
            ids = [v for v, _ in seen]
            # Increasing, ending once the job ended (ignored duplicate callbacks
            # may append after that), each body the job as it was at that version;
            # an id is sent again only while the job waits for Suno, when its place
            # in the queue moved.
            assert ids == sorted(ids), (job, ids)
            for (v1, b1), (v2, b2) in itertools.pairwise(seen):
                if v1 == v2:
                    assert b1["queue"] != b2["queue"] and b1["stage"] == b2["stage"], (job, ids)
            assert endings[0] <= ids[-1] <= final.version, (job, ids, endings)
            for version, body in seen:
                assert body["jobId"] == job and body["version"] == version
                assert body["stage"] == states[version - 1].stage.value
            assert seen[-1][1]["done"] is True
            # The stream shows the job's stages in the order it passed them,
            # whichever process wrote them; commits that land between two wake-ups
            # of the stream share one event (the latest), so a stage held only
            # for an instant (REQUEST_SENT, then TASK_CREATED) may be skipped.
            passed = [s.stage.value for s in states]
            shown = [body["stage"] for i, (v, body) in enumerate(seen) if ids.index(v) == i]
            rest = iter(passed)
            assert all(stage in rest for stage in shown), (job, shown, passed)

    assert sum(stages.values()) == JOBS
    # At most two Suno tasks per job (a send left uncertain by the kill is sent once more),
    # and only for jobs whose first send was uncertain.
    assert len(fake.tasks()) <= JOBS + resent
    # Nothing is stranded: the dead process's jobs are taken over, and every job succeeds.
    assert stages == {Stage.SUNO_SUCCESS.value: JOBS}, stages
    print(f"final stages: {stages}; fake Suno tasks: {len(fake.tasks())}")
