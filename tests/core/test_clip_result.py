"""What post-processing returns reaches the log and the job: the URL, the captions, a note."""

from __future__ import annotations

import pytest

from clipjobs import (
    ChannelDefaults,
    ClipReady,
    FakeClock,
    InMemoryEventStore,
    JobPolicy,
    JobRequest,
    JobService,
    Observation,
    ProviderStatus,
    RecordObservation,
    RenderedClip,
    ServiceConfig,
    Source,
    Stage,
    Track,
    WebhookSigner,
)
from clipjobs.app.ports import StepReporter
from clipjobs.domain.codec import decode_event, encode_event
from clipjobs.domain.state import JobState
from clipjobs.testing import ScriptedSuno


class Returns:
    """A post-processor that returns what it is given."""

    def __init__(self, made: RenderedClip | str) -> None:
        self.made = made

    async def process(self, job: JobState, report: StepReporter) -> RenderedClip | str:
        return self.made


async def _rendered(made: RenderedClip | str) -> tuple[JobState, ClipReady]:
    store = InMemoryEventStore()
    service = JobService(
        store,
        ScriptedSuno(),
        ChannelDefaults(),
        WebhookSigner("secret-for-tests"),
        clock=FakeClock(),
        config=ServiceConfig(
            callback_base_url="https://clips.example", policy=JobPolicy(clip_render=True)
        ),
        post_processor=Returns(made),
    )
    job = (await service.start_job(JobRequest("channel_c", "u1"))).job
    sent = await service.send(job.job_id)
    assert sent.task_id is not None
    seen = Observation(sent.task_id, ProviderStatus.SUCCESS, (Track("a", audio_url="https://x/a"),))
    await service.execute(job.job_id, lambda at: RecordObservation(seen, Source.CALLBACK, at))
    final = await service.render(job.job_id)
    last = (await store.read(job.job_id))[-1].event
    assert isinstance(last, ClipReady)
    return final, last


@pytest.mark.asyncio
async def test_a_bare_url_is_still_a_clip() -> None:
    """A post-processor returning a string (as before RenderedClip) gives a clip, no captions."""
    final, ready = await _rendered("/media/j.mp4")
    assert final.stage is Stage.CLIP_READY
    assert (final.clip_url, final.captions_url) == ("/media/j.mp4", None)
    assert (ready.captions_url, ready.note) == (None, None)


@pytest.mark.asyncio
async def test_captions_and_note_are_recorded() -> None:
    """The captions' URL goes to the job; the note, saying what the clip lacks, to its log."""
    made = RenderedClip("/media/j.mp4", "/media/j.srt", "no karaoke: the lyrics call failed")
    final, ready = await _rendered(made)
    assert (final.clip_url, final.captions_url) == ("/media/j.mp4", "/media/j.srt")
    assert ready.note == "no karaoke: the lyrics call failed"


def test_clip_ready_from_an_older_log_decodes() -> None:
    """A ClipReady written before captions_url and note existed decodes with both None."""
    old = '{"clip_url": "/media/j.mp4", "at": "2026-01-01T00:00:00+00:00"}'
    event = decode_event("ClipReady", old)
    assert isinstance(event, ClipReady)
    assert (event.captions_url, event.note) == (None, None)
    new = ClipReady("/media/j.mp4", event.at, "/media/j.srt", "why")
    assert decode_event(*encode_event(new)) == new
