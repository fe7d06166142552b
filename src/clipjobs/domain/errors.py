"""Every error clipjobs raises, as one tree.

::

    ClipjobsError
    ├── InvalidRequest            bad input from a caller; ``field`` names what is wrong
    ├── JobNotFound               no such job, or not the caller's
    ├── JobAlreadyRunning         the channel has a non-terminal job (``job_id``)
    ├── JobAlreadyFinished        a cancel of a job that ended otherwise (``stage``)
    ├── JobNotRetryable           a retry of a job that cannot be retried (``reason``)
    ├── IdempotencyKeyReused      same key, different request (``job_id``)
    ├── TooManyJobs               the user's cap of running (or hourly) jobs is reached
    ├── IdempotencyKeyInUse       same key, same request, still being made (``job_id``)
    ├── InvalidTransition         an event the stage graph forbids (a broken log)
    ├── ConfigError               bad configuration; the message is one clear line
    ├── PostProcessError          post-processing failed (``code``)
    ├── StoreError
    │   ├── ConcurrencyError      the job moved on since it was read (stale version)
    │   │   ├── ChannelBusy       another active job holds the channel (``job_id``)
    │   │   └── IdempotencyConflict  the idempotency key is taken (``job_id``)
    │   ├── StoreUnavailable      the database cannot be reached or is locked
    │   └── StoreCorrupt          the database is unreadable or from a newer clipjobs
    └── SunoError
        ├── SunoTransient         try again later (5xx, 455, network); ``maybe_sent``
        │   └── SunoRateLimited   405/430: call frequency too high
        ├── SunoRejected          400/401/413: Suno refused the request (its message)
        ├── SunoNoCredits         429: insufficient credits
        └── SunoProtocolError     an answer that is not what the API documents

Adapters translate third-party exceptions into this tree at their edge.
"""

from __future__ import annotations

__all__ = [
    "ChannelBusy",
    "ClipjobsError",
    "ConcurrencyError",
    "ConfigError",
    "IdempotencyConflict",
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "InvalidRequest",
    "InvalidTransition",
    "JobAlreadyFinished",
    "JobAlreadyRunning",
    "JobNotFound",
    "JobNotRetryable",
    "PostProcessError",
    "StoreCorrupt",
    "StoreError",
    "StoreUnavailable",
    "SunoError",
    "SunoNoCredits",
    "SunoProtocolError",
    "SunoRateLimited",
    "SunoRejected",
    "SunoTransient",
    "TooManyJobs",
]


class ClipjobsError(Exception):
    """The base of every error clipjobs raises on purpose."""


class InvalidRequest(ClipjobsError):
    """A caller sent something unusable; ``field`` names the part that is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class JobNotFound(ClipjobsError):
    """No job with this id is visible to the caller."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id} not found")
        self.job_id = job_id


class JobAlreadyRunning(ClipjobsError):
    """The channel already has a job that has not finished."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"Job {job_id} is still running for this channel")
        self.job_id = job_id


class JobAlreadyFinished(ClipjobsError):
    """The job ended (other than cancelled) before it could be cancelled."""

    def __init__(self, job_id: str, stage: str) -> None:
        super().__init__(f"Job {job_id} already finished ({stage}); nothing to cancel")
        self.job_id = job_id
        self.stage = stage


class JobNotRetryable(ClipjobsError):
    """The job cannot be retried (still running, or nothing to re-render)."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"Job {job_id} cannot be retried: {reason}")
        self.job_id = job_id
        self.reason = reason


class IdempotencyKeyReused(ClipjobsError):
    """The idempotency key was used before with a different request."""

    def __init__(self, job_id: str) -> None:
        super().__init__("Idempotency-Key was already used with a different request")
        self.job_id = job_id


class TooManyJobs(ClipjobsError):
    """The user may not start another job now; nothing was created.

    ``active``: the user's running jobs; ``retry_after_s``: when to ask again.
    """

    def __init__(self, message: str, *, active: int, retry_after_s: int) -> None:
        super().__init__(message)
        self.active = active
        self.retry_after_s = retry_after_s


class IdempotencyKeyInUse(ClipjobsError):
    """Another request with this idempotency key was being handled when this one came.

    ``job_id`` is the job that request made: ask for it, or retry the request
    later and get it (the IETF Idempotency-Key draft's 409).
    """

    def __init__(self, job_id: str) -> None:
        super().__init__("A request with this Idempotency-Key is still being handled")
        self.job_id = job_id


class InvalidTransition(ClipjobsError):
    """An event that the stage graph does not allow from the current stage."""


class ConfigError(ClipjobsError):
    """Configuration that cannot work; the message is one line for the operator."""


class PostProcessError(ClipjobsError):
    """Post-processing failed; ``code`` becomes the job's errorCode."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class StoreError(ClipjobsError):
    """The event store could not do what was asked."""


class ConcurrencyError(StoreError):
    """The job's version moved on since it was read: reload and decide again."""


class ChannelBusy(ConcurrencyError):
    """Another non-terminal job holds the channel."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"channel is held by job {job_id}")
        self.job_id = job_id


class IdempotencyConflict(ConcurrencyError):
    """Another job was created with the same user and idempotency key."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"idempotency key is taken by job {job_id}")
        self.job_id = job_id


class StoreUnavailable(StoreError):
    """The database cannot be reached, is locked, or is read-only."""


class StoreCorrupt(StoreError):
    """The database is unreadable, or was written by a newer clipjobs."""


class SunoError(ClipjobsError):
    """A call to Suno did not succeed."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class SunoTransient(SunoError):
    """Worth retrying later. ``maybe_sent``: Suno may have acted on the request."""

    def __init__(self, message: str, *, code: int | None = None, maybe_sent: bool = False) -> None:
        super().__init__(message, code=code)
        self.maybe_sent = maybe_sent


class SunoRateLimited(SunoTransient):
    """Suno answered 405 or 430: too many calls; slow down."""


class SunoRejected(SunoError):
    """Suno refused the request (400, 401, 413); the message is Suno's."""


class SunoNoCredits(SunoError):
    """Suno answered 429: the account has no credits left."""


class SunoProtocolError(SunoError):
    """Suno (or something pretending to be it) answered outside the documented shape."""
