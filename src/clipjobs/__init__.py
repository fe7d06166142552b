"""clipjobs: long-running music-generation jobs as observable, crash-safe event logs.

The pure core: stages and the one ``transitions`` machine, the events, the fold
(``fold``/``evolve``) and the decisions (``decide``), the ports, an in-memory
store, and ``JobService``. It imports no I/O library; adapters live in the
``clipjobs_*`` packages.
"""

from __future__ import annotations

from . import errors
from ._decide import decide
from ._fold import evolve, fold
from ._machine import mermaid
from .auth import ChannelDefaults, TokenAuthenticator
from .budget import BudgetedSuno, BudgetRecord, Priority, SunoBudget
from .clock import FakeClock, SystemClock
from .commands import (
    Command,
    FailJob,
    FinishClip,
    MarkRequestSent,
    MarkRequestUncertain,
    RecordClipStep,
    RecordObservation,
    RecordTaskCreated,
    ScheduleRetry,
    StartClip,
    StartJob,
    TimeOut,
)
from .events import (
    AlignedWord,
    ClipProcessingStarted,
    ClipReady,
    ClipStep,
    ClipStepReached,
    Event,
    GenerationParams,
    JobAccepted,
    JobFailed,
    JobPolicy,
    JobTimedOut,
    LateObservation,
    Observation,
    ProviderStatus,
    Source,
    SunoProgressObserved,
    SunoRequestRetryScheduled,
    SunoRequestSent,
    SunoRequestUncertain,
    SunoSucceeded,
    SunoTaskCreated,
    TimestampedLyrics,
    Track,
)
from .memory import InMemoryEventStore
from .metrics import Metrics
from .ports import (
    Authenticator,
    Clock,
    Commit,
    EventStore,
    GenerationParamsProvider,
    OrphanCallback,
    ParamOverrides,
    PostProcessor,
    RecordedEvent,
    RenderedClip,
    SunoClient,
)
from .service import (
    CallbackResult,
    ErrorCode,
    JobRequest,
    JobService,
    ServiceConfig,
    StartOutcome,
    Unauthorized,
)
from .stages import TERMINAL_STAGES, Stage, Work
from .state import Heartbeat, JobState, SendState
from .webhook import WebhookSigner
from .workers import LoopLimits, WorkerConfig, Workers

__all__ = [
    "TERMINAL_STAGES",
    "AlignedWord",
    "Authenticator",
    "BudgetRecord",
    "BudgetedSuno",
    "CallbackResult",
    "ChannelDefaults",
    "ClipProcessingStarted",
    "ClipReady",
    "ClipStep",
    "ClipStepReached",
    "Clock",
    "Command",
    "Commit",
    "ErrorCode",
    "Event",
    "EventStore",
    "FailJob",
    "FakeClock",
    "FinishClip",
    "GenerationParams",
    "GenerationParamsProvider",
    "Heartbeat",
    "InMemoryEventStore",
    "JobAccepted",
    "JobFailed",
    "JobPolicy",
    "JobRequest",
    "JobService",
    "JobState",
    "JobTimedOut",
    "LateObservation",
    "LoopLimits",
    "MarkRequestSent",
    "MarkRequestUncertain",
    "Metrics",
    "Observation",
    "OrphanCallback",
    "ParamOverrides",
    "PostProcessor",
    "Priority",
    "ProviderStatus",
    "RecordClipStep",
    "RecordObservation",
    "RecordTaskCreated",
    "RecordedEvent",
    "RenderedClip",
    "ScheduleRetry",
    "SendState",
    "ServiceConfig",
    "Source",
    "Stage",
    "StartClip",
    "StartJob",
    "StartOutcome",
    "SunoBudget",
    "SunoClient",
    "SunoProgressObserved",
    "SunoRequestRetryScheduled",
    "SunoRequestSent",
    "SunoRequestUncertain",
    "SunoSucceeded",
    "SunoTaskCreated",
    "SystemClock",
    "TimeOut",
    "TimestampedLyrics",
    "TokenAuthenticator",
    "Track",
    "Unauthorized",
    "WebhookSigner",
    "Work",
    "WorkerConfig",
    "Workers",
    "decide",
    "errors",
    "evolve",
    "fold",
    "mermaid",
]
