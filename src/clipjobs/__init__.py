"""clipjobs: long-running music-generation jobs as observable, crash-safe event logs.

The pure core: stages and the one ``transitions`` machine, the events, the fold
(``fold``/``evolve``) and the decisions (``decide``), the ports, an in-memory
store, and ``JobService``. It imports no I/O library; adapters live in the
``clipjobs_*`` packages.
"""

from __future__ import annotations

from . import errors
from ._decide import decide
from ._fair import fair_order
from ._fold import evolve, fold
from ._machine import TERMINAL_STAGES, mermaid
from .auth import ChannelDefaults, TokenAuthenticator
from .budget import BudgetedSuno, BudgetRecord, SunoBudget
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
    ObservationRepeated,
    ProviderStatus,
    Source,
    SunoProgressObserved,
    SunoRequestRetryScheduled,
    SunoRequestSent,
    SunoRequestUncertain,
    SunoSucceeded,
    SunoTaskCreated,
    Track,
)
from .memory import InMemoryEventStore
from .metrics import Metrics
from .ports import (
    Authenticator,
    BudgetStatus,
    CallBudget,
    Clock,
    Commit,
    Due,
    EventStore,
    GenerationParamsProvider,
    Lease,
    OrphanCallback,
    ParamOverrides,
    PostProcessor,
    Priority,
    RecordedEvent,
    Slot,
    SunoClient,
    WorkerInfo,
)
from .service import (
    CallbackResult,
    ErrorCode,
    JobRequest,
    JobService,
    QueuePosition,
    ServiceConfig,
    StartOutcome,
    Unauthorized,
)
from .stages import Stage, Work
from .state import Heartbeat, JobState, SendState
from .webhook import WebhookSigner
from .workers import LoopLimits, WorkerConfig, Workers

__all__ = [
    "TERMINAL_STAGES",
    "Authenticator",
    "BudgetRecord",
    "BudgetStatus",
    "BudgetedSuno",
    "CallBudget",
    "CallbackResult",
    "ChannelDefaults",
    "ClipProcessingStarted",
    "ClipReady",
    "ClipStep",
    "ClipStepReached",
    "Clock",
    "Command",
    "Commit",
    "Due",
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
    "Lease",
    "LoopLimits",
    "MarkRequestSent",
    "MarkRequestUncertain",
    "Metrics",
    "Observation",
    "ObservationRepeated",
    "OrphanCallback",
    "ParamOverrides",
    "PostProcessor",
    "Priority",
    "ProviderStatus",
    "QueuePosition",
    "RecordClipStep",
    "RecordObservation",
    "RecordTaskCreated",
    "RecordedEvent",
    "ScheduleRetry",
    "SendState",
    "ServiceConfig",
    "Slot",
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
    "TokenAuthenticator",
    "Track",
    "Unauthorized",
    "WebhookSigner",
    "Work",
    "WorkerConfig",
    "WorkerInfo",
    "Workers",
    "decide",
    "errors",
    "evolve",
    "fair_order",
    "fold",
    "mermaid",
]
