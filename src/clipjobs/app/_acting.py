"""Acting on a job (SPEC 10.2): cancel it, retry it, re-render its clip.

``JobService.cancel`` and ``JobService.retry`` are thin calls into here, so
the service module stays about the job's own life.

A cancel is one event (``JobCancelled``) decided on the latest state and
appended with the expected version: a success that lands first wins (the
cancel then answers JOB_ALREADY_FINISHED), a cancel that lands first makes
the success a late observation. Nothing else has to happen for it to take
effect: the workers consult the state before each step (a cancelled job has
no work), and a render under way watches the job and stops when it is
cancelled (see :func:`watch_for_cancel`).

A retry is a new job whose ``JobAccepted`` names the parent (``retry_of``);
the parent then records ``JobRetried`` (GET's ``retriedBy``). A retry from
the clip also records ``SunoSucceeded`` with source ``reused`` and the
parent's tracks in the same append: no Suno call, no credits.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import TYPE_CHECKING

from ..domain._decide import RETRYABLE_STAGES
from ..domain.commands import CancelJob, RecordRetry
from ..domain.errors import InvalidRequest, JobAlreadyFinished, JobNotFound, JobNotRetryable
from ..domain.events import Track
from ..domain.stages import Stage
from ..domain.state import JobState

if TYPE_CHECKING:
    from .service import JobService, StartOutcome

__all__ = ["MAX_REASON", "RETRY_MODES", "cancel", "retry", "watch_for_cancel"]

#: The longest cancel reason kept (characters).
MAX_REASON = 500
RETRY_MODES = ("start", "clip")
#: How often a render looks at its job when no change wakes it (another process's cancel
#: on a store without cross-process notifications).
_WATCH_S = 1.0


async def cancel(
    service: JobService, job_id: str, *, by: str, reason: str | None = None
) -> JobState:
    """Cancel the job; the cancelled job. A job already cancelled is given back as it is.

    Raises JobNotFound, or JobAlreadyFinished when it ended otherwise (the
    version check decides against a success recorded first).
    """
    if reason is not None:
        reason = reason.strip() or None
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidRequest(f"reason must be at most {MAX_REASON} characters", field="reason")
    if not by or len(by) > 200:
        raise InvalidRequest("by must be 1-200 characters", field="by")
    state, _ = await service.execute(job_id, lambda at: CancelJob(by, reason, at))
    if state.stage is Stage.CANCELLED:
        return state
    if state.done:
        raise JobAlreadyFinished(job_id, state.stage.value)
    # Not done but the machine has no cancel edge: cannot happen (every stage with work has one).
    raise JobAlreadyFinished(job_id, state.stage.value)  # pragma: no cover


async def retry(
    service: JobService,
    job_id: str,
    user_id: str,
    *,
    mode: str = "start",
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> StartOutcome:
    """Start a job that retries ``job_id`` (the user's): the whole job, or only its clip."""
    from .service import JobRequest

    if mode not in RETRY_MODES:
        raise InvalidRequest(f"from must be one of {', '.join(RETRY_MODES)}", field="from")
    parent = await service.get(job_id, user_id)
    if parent.stage not in RETRYABLE_STAGES:
        raise JobNotRetryable(
            job_id, f"it is in {parent.stage.value}, not failed, cancelled or timed out"
        )
    reused: tuple[Track, ...] = ()
    if mode == "clip":
        if service.post_processor is None:
            raise JobNotRetryable(job_id, "post-processing is not configured on this server")
        reused = tuple(t for t in parent.tracks if t.audio_url)
        if not reused:
            raise JobNotRetryable(job_id, "it has no song to re-render")
    request = JobRequest(
        channel_id=parent.channel_id,
        user_id=user_id,
        idempotency_key=idempotency_key,
        request_id=request_id,
    )
    fingerprint = hashlib.sha256(f"retry\x1f{job_id}\x1f{mode}".encode()).hexdigest()[:32]
    outcome = await service.start_child(request, parent, fingerprint, reused)
    if outcome.created:
        child = outcome.job.job_id
        with contextlib.suppress(JobNotFound):  # pruned between the two appends
            await service.execute(job_id, lambda at: RecordRetry(child, mode, at))
    return outcome


async def watch_for_cancel(service: JobService, state: JobState) -> None:
    """Return once the job is cancelled (or gone); runs beside a render, which it then stops."""
    version = state.version
    while True:
        await service.store.wait_for_change(state.job_id, version, _WATCH_S)
        now = await service.store.load(state.job_id)
        if now is None or now.stage is Stage.CANCELLED:
            return
        version = now.version
