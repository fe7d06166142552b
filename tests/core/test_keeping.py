"""The media copy step (SPEC 10.4) and retention on the in-memory store, with a scripted keeper."""

from __future__ import annotations

from datetime import timedelta

import pytest

from clipjobs import (
    ChannelDefaults,
    FakeClock,
    InMemoryEventStore,
    JobPolicy,
    JobRequest,
    JobService,
    MediaCopyFailed,
    MediaKind,
    Observation,
    ProviderStatus,
    RecordObservation,
    ServiceConfig,
    Source,
    Stage,
    Track,
    WebhookSigner,
    Work,
)
from clipjobs.app.keeping import KeepConfig, KeptFile
from clipjobs.app.retention import prune_once
from clipjobs.domain.commands import FailJob
from clipjobs.domain.errors import PostProcessError
from clipjobs.domain.state import JobState
from clipjobs.testing import ScriptedSuno

TRACKS = (
    Track("a", audio_url="https://cdn/a.mp3", image_url="https://cdn/a.jpg"),
    Track("b", audio_url="https://cdn/b.mp3"),
)


class Keeper:
    """Answers each URL from a script: a code to raise, else a kept file."""

    def __init__(self, script: dict[str, list[str]] | None = None) -> None:
        self.script = script or {}
        self.calls: list[str] = []

    async def keep(self, url: str, kind: MediaKind, *, job_id: str) -> KeptFile:
        self.calls.append(url)
        outcomes = self.script.get(url, [])
        if outcomes:
            raise PostProcessError(outcomes.pop(0), f"{url}: {outcomes}")
        return KeptFile(f"{abs(hash(url)):064x}"[:64], 10, f"{kind.value}/x")


async def _succeeded(
    keeper: Keeper, clip_render: bool = False, **config: object
) -> tuple[JobService, FakeClock, JobState]:
    clock = FakeClock()
    service = JobService(
        InMemoryEventStore(),
        ScriptedSuno(),
        ChannelDefaults(),
        WebhookSigner("secret-for-tests"),
        clock=clock,
        config=ServiceConfig(
            callback_base_url="https://clips.example",
            policy=JobPolicy(keep_media=True, clip_render=clip_render),
        ),
        media_keeper=keeper,
        keep_config=KeepConfig(**config),  # type: ignore[arg-type]
    )
    job = (await service.start_job(JobRequest("channel_k", "u1"))).job
    sent = await service.send(job.job_id)
    assert sent.task_id is not None
    seen = Observation(sent.task_id, ProviderStatus.SUCCESS, TRACKS)
    state, _ = await service.execute(
        job.job_id, lambda at: RecordObservation(seen, Source.CALLBACK, at)
    )
    assert state.work is Work.MEDIA
    return service, clock, state


@pytest.mark.asyncio
async def test_every_file_is_kept_once_and_the_job_then_waits_for_nothing() -> None:
    """Three files (two audios, one cover): three MediaStored, stage unchanged, no more work."""
    keeper = Keeper()
    service, _, job = await _succeeded(keeper)
    state = await service.keep_media(job.job_id)
    assert [(m.track_id, m.kind) for m in state.media] == [
        ("a", MediaKind.AUDIO),
        ("a", MediaKind.IMAGE),
        ("b", MediaKind.AUDIO),
    ]
    assert state.stage is Stage.SUNO_SUCCESS and state.work is None
    assert await service.keep_media(job.job_id) == state  # nothing left: nothing recorded
    assert len(keeper.calls) == 3


@pytest.mark.asyncio
async def test_a_failure_waits_longer_each_time_then_the_file_is_given_up() -> None:
    """Failures are retried after 5, 10, 20 s…; at max_attempts the file is given up and the
    next one is copied; mediaError stays since a file was given up.
    """
    keeper = Keeper({"https://cdn/a.mp3": ["CLIP_DOWNLOAD_FAILED"] * 3})
    service, clock, job = await _succeeded(keeper, max_attempts=3)
    waits = []
    for _ in range(2):
        state = await service.keep_media(job.job_id)
        assert state.work is Work.MEDIA and state.media_retry_at is not None
        waits.append(state.media_retry_at - clock.now())
        await clock.advance((state.media_retry_at - clock.now()).total_seconds())
    assert waits == [timedelta(seconds=5), timedelta(seconds=10)]
    state = await service.keep_media(job.job_id)
    assert state.media_skipped == ("a/audio",)
    assert [(m.track_id, m.kind) for m in state.media] == [
        ("a", MediaKind.IMAGE),
        ("b", MediaKind.AUDIO),
    ]
    assert state.media_error_code == "CLIP_DOWNLOAD_FAILED" and state.work is None
    log = [r.event for r in await service.store.read(job.job_id)]
    failed = [e for e in log if isinstance(e, MediaCopyFailed)]
    assert [f.attempt for f in failed] == [1, 2, 3] and failed[-1].retry_at is None


@pytest.mark.asyncio
async def test_a_refusal_gives_the_file_up_at_once() -> None:
    """A host not allowed, a file too large, HTML for audio: no retry, the rest still kept."""
    keeper = Keeper(
        {
            "https://cdn/a.mp3": ["CLIP_HOST_NOT_ALLOWED"],
            "https://cdn/a.jpg": ["CLIP_TOO_LARGE"],
            "https://cdn/b.mp3": ["CLIP_BAD_CONTENT_TYPE"],
        }
    )
    service, _, job = await _succeeded(keeper)
    state = await service.keep_media(job.job_id)
    assert sorted(state.media_skipped) == ["a/audio", "a/image", "b/audio"]
    assert state.media == () and state.work is None and state.stage is Stage.SUNO_SUCCESS
    assert len(keeper.calls) == 3


@pytest.mark.asyncio
async def test_the_memory_store_prunes_only_old_finished_jobs_waiting_for_nothing() -> None:
    """The in-memory store passes what the SQL stores do: old finished jobs go, a job whose
    copy is due stays, and the idempotency key of a pruned job is free again.
    """
    keeper = Keeper()
    service, clock, pending = await _succeeded(keeper)
    store = service.store
    done = await service.start_job(JobRequest("channel_d", "u1", idempotency_key="k1"))
    await service.send(done.job.job_id)
    task = (await store.load(done.job.job_id)).task_id  # type: ignore[union-attr]
    failed = Observation(task or "", ProviderStatus.GENERATE_AUDIO_FAILED)
    await service.execute(
        done.job.job_id, lambda at: RecordObservation(failed, Source.CALLBACK, at)
    )
    await clock.advance(86400 * 40)
    report = await prune_once(store, clock.now(), timedelta(days=30), pause_s=0)  # type: ignore[arg-type]
    assert report.jobs == 1
    assert await store.load(done.job.job_id) is None
    assert await store.find_by_idempotency_key("u1", "k1") is None
    assert await store.load(pending.job_id) is not None


@pytest.mark.asyncio
async def test_with_a_clip_to_render_a_failed_copy_lets_the_render_go_first() -> None:
    """Post-processing on: the copy comes first; after it fails the job waits for the render
    (not for the CDN), and the copy resumes once the job has ended.
    """
    keeper = Keeper({"https://cdn/a.mp3": ["CLIP_DOWNLOAD_FAILED"]})
    service, _, job = await _succeeded(keeper, clip_render=True)
    assert not job.done and job.work is Work.MEDIA
    state = await service.keep_media(job.job_id)
    assert state.stage is Stage.SUNO_SUCCESS and state.work is Work.RENDER
    ended, _ = await service.execute(
        job.job_id, lambda at: FailJob("CLIP_FAILED", "no renderer here", at)
    )
    assert ended.done and ended.work is Work.MEDIA and ended.due_at == state.media_retry_at
