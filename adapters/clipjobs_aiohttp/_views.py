"""What a job looks like on the wire: one function for GET, SSE and the list."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from clipjobs.app.ports import RecordedEvent
from clipjobs.app.service import QueuePosition
from clipjobs.domain.codec import encode_event, format_ts
from clipjobs.domain.events import MediaKind, MediaStored
from clipjobs.domain.i18n import Lang, queue_text
from clipjobs.domain.state import JobState

__all__ = ["event_view", "job_body", "job_view"]


def job_view(
    state: JobState,
    *,
    lang: Lang,
    now: datetime,
    stale_after_s: float,
    queue: QueuePosition | None = None,
    media_url: Callable[[MediaStored], str] | None = None,
) -> dict[str, Any]:
    """The job's fields: the seed's GET body (less success/ok/requestId) and clipjobs' extras.

    ``queue``: where the job stands while it waits for its turn at Suno (then the
    progress text says so, since that is what it is doing). ``media_url``: the
    signed URL of a kept file (None: media is not served, the URLs are null).
    """

    def stored(track_id: str, kind: MediaKind) -> str | None:
        kept = state.stored(track_id, kind)
        return media_url(kept) if kept is not None and media_url is not None else None

    heartbeat = state.heartbeat(now, stale_after_s)
    if queue is not None:
        progress = queue_text(queue.position, queue.eta_s, lang)
    else:
        progress = state.progress_text(lang)
    return {
        "jobId": state.job_id,
        "channelId": state.channel_id,
        "stage": state.stage.value,
        "progressText": progress,
        "sunoTaskId": state.task_id,
        "audioUrl": state.audio_url,
        "error": state.error_text(lang),
        "createdAt": format_ts(state.created_at),
        "updatedAt": format_ts(state.updated_at),
        "heartbeat": {
            "secondsSinceUpdate": heartbeat.seconds_since_update,
            "isStale": heartbeat.is_stale,
        },
        "done": state.done,
        "errorCode": state.error_code,
        "version": state.version,
        "tracks": [
            {
                "id": t.id,
                "audioUrl": t.audio_url or None,
                "streamAudioUrl": t.stream_audio_url or None,
                "imageUrl": t.image_url or None,
                "title": t.title or None,
                "duration": t.duration,
                "storedAudioUrl": stored(t.id, MediaKind.AUDIO),
                "storedImageUrl": stored(t.id, MediaKind.IMAGE),
            }
            for t in state.tracks
        ],
        "clipUrl": state.clip_url,
        "clipStep": state.clip_step.value if state.clip_step is not None else None,
        "captionsUrl": state.captions_url,
        "mediaError": (
            None
            if state.media_error_code is None
            else {"code": state.media_error_code, "message": state.media_error}
        ),
        "retryable": state.retryable,
        "canRerender": state.can_rerender,
        "retryOf": state.retry_of,
        "retriedBy": state.retried_by,
        "queue": (
            None
            if queue is None
            else {"position": queue.position, "etaSeconds": math.ceil(queue.eta_s)}
        ),
    }


def job_body(
    state: JobState,
    *,
    lang: Lang,
    now: datetime,
    stale_after_s: float,
    request_id: str,
    queue: QueuePosition | None = None,
    media_url: Callable[[MediaStored], str] | None = None,
) -> dict[str, Any]:
    """GET /api/music-clips/jobs/{jobId}: ``success, ok``, the job, ``requestId``."""
    view = job_view(
        state,
        lang=lang,
        now=now,
        stale_after_s=stale_after_s,
        queue=queue,
        media_url=media_url,
    )
    body: dict[str, Any] = {"success": True, "ok": True}
    # The seed's order first (requestId right after heartbeat), then the extras.
    for key, value in view.items():
        body[key] = value
        if key == "heartbeat":
            body["requestId"] = request_id
    return body


def event_view(recorded: RecordedEvent) -> dict[str, Any]:
    """One entry of ``/history``: the event as the store keeps it."""
    name, payload = encode_event(recorded.event)
    return {
        "version": recorded.version,
        "type": name,
        "at": format_ts(recorded.recorded_at),
        "data": json.loads(payload),
    }
