"""Configuration from the environment (SPEC section 8), validated in one place.

``Settings.from_env(os.environ)`` either returns settings that can work or
raises :class:`~clipjobs.domain.errors.ConfigError` whose message is one line naming
the variable and what is wrong with it (never echoing a secret's value).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from attrs import field, frozen

from ..domain.errors import ConfigError
from ..domain.events import SUNO_MODELS, JobPolicy
from .auth import parse_tokens

__all__ = ["Settings"]

_T = TypeVar("_T")
#: The PostgreSQL adapter's rule too (clipjobs_postgres checks it again at open).
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
#: The shortest SUNO_API_KEY accepted, as for CLIPJOBS_TOKENS (real keys are 32).
_MIN_KEY = 8
_CLIP_STYLES = ("simple", "full")
#: A job's policy's defaults are the settings' defaults (except ``keep_media``: off in
#: logs written before it existed, on for new jobs).
_POLICY = JobPolicy()


@frozen
class Settings:
    """Everything ``clipjobs serve`` reads from the environment."""

    db_url: str = "sqlite:///clipjobs.db"
    host: str = "127.0.0.1"
    port: int = 8080
    suno_api_key: str | None = field(default=None, repr=False)
    suno_base_url: str = "https://api.sunoapi.org"
    suno_model: str = "V4_5"
    public_base_url: str | None = None
    tokens: dict[str, str] | None = field(default=None, repr=False)
    #: ``CLIPJOBS_ADMIN_TOKENS``: tokens of admins, who see and act on every job.
    admin_tokens: dict[str, str] | None = field(default=None, repr=False)
    stale_after_s: float = 60.0
    #: A job still generating times out after this long without progress (a stage change
    #: or news from Suno) ...
    job_timeout_s: int = _POLICY.timeout_s
    #: ... or this long after it was accepted, whatever its progress.
    job_max_s: int = _POLICY.max_s
    poll_after_s: float = _POLICY.poll_after_s
    poll_interval_s: float = _POLICY.poll_interval_s
    suno_max_rps: float = 2.0
    log_format: str = "text"
    log_level: str = "INFO"
    clip_render: bool = _POLICY.clip_render
    media_dir: Path = Path("media")
    clip_max_s: float = 60.0
    clip_hosts: tuple[str, ...] = ()
    #: ``full``: title, moving cover, waveform, karaoke captions; ``simple``: the cover, still.
    clip_style: str = "full"
    #: Fetch Suno's timestamped lyrics for captions (burned in with ``full``, files either way).
    clip_captions: bool = True
    one_job_per_channel: bool = True
    worker_id: str | None = None
    #: How long a worker's claim on a job lasts without renewal: the upper bound for a
    #: live but silent worker; it must outlast the Suno call timeout (30 s).
    lease_s: float = 60.0
    #: Workers beat this often; one silent for three beats is reaped and its jobs freed.
    worker_heartbeat_s: float = 5.0
    #: An uncertain send that no callback named is sent once more after this; 0: never.
    resend_uncertain_after_s: float = _POLICY.resend_uncertain_after_s
    #: runOnce answers 429 TOO_MANY_ACTIVE_JOBS while a user has this many running.
    max_active_per_user: int = 20
    #: ... or once a user started this many in the last hour (0: no limit).
    max_starts_per_user_per_hour: int = 0
    pg_schema: str = "clipjobs"
    #: Open HTTP connections one server holds; past it new ones get 503 (SSE streams count).
    max_connections: int = 1000
    #: How long a connection may go without a complete request head (idle keep-alive too).
    head_timeout_s: float = 15.0
    #: Copy each succeeded job's audio and covers into ``media_dir`` (Suno's links expire).
    keep_media: bool = True
    #: Finished jobs older than this many days are pruned (log, projection, media); 0: never.
    retention_days: float = 0.0
    #: Outgoing webhooks (SPEC 10.5): http and private/loopback targets allowed (tests, LANs).
    notify_allow_private: bool = False
    #: The first wait before a failed delivery is tried again; each later wait doubles.
    notify_backoff_s: float = 5.0
    #: Subscriptions one user may hold.
    notify_max_subscriptions: int = 10
    #: How long one delivery attempt may take before it counts as failed.
    notify_timeout_s: float = 10.0
    #: A delivery still failing this long after its event is given up.
    notify_give_up_s: float = 86400.0

    @property
    def demo(self) -> bool:
        """No Suno key: the fake Suno runs in-process."""
        return not self.suno_api_key

    def policy(self) -> JobPolicy:
        return JobPolicy(
            timeout_s=self.job_timeout_s,
            max_s=self.job_max_s,
            poll_after_s=self.poll_after_s,
            poll_interval_s=self.poll_interval_s,
            clip_render=self.clip_render,
            resend_uncertain_after_s=self.resend_uncertain_after_s,
            keep_media=self.keep_media,
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        d = cls()  # each default is declared once, on the field

        def get(name: str) -> str | None:
            value = env.get(name)
            return value.strip() if value is not None and value.strip() else None

        def num(name: str, default: _T, kind: Callable[[str], _T], low: float, high: float) -> _T:
            raw = get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number") from None
            if not math.isfinite(float(value)) or not low <= float(value) <= high:  # type: ignore[arg-type]
                raise ConfigError(f"{name}={raw!r} must be between {low:g} and {high:g}")
            return value

        def flag(name: str, default: bool) -> bool:
            raw = get(name)
            if raw is None:
                return default
            if raw.lower() in ("on", "true", "1", "yes"):
                return True
            if raw.lower() in ("off", "false", "0", "no"):
                return False
            raise ConfigError(f"{name}={raw!r} must be on or off")

        db_url = get("CLIPJOBS_DB") or d.db_url
        if not db_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError(
                "CLIPJOBS_DB must be sqlite:///path or postgresql://… (got another scheme)"
            )
        public = get("PUBLIC_BASE_URL")
        if public is not None:
            _check_url("PUBLIC_BASE_URL", public)
            public = public.rstrip("/")
        suno_base = (get("SUNO_BASE_URL") or d.suno_base_url).rstrip("/")
        _check_url("SUNO_BASE_URL", suno_base)
        model = get("SUNO_MODEL") or d.suno_model
        if model not in SUNO_MODELS:
            raise ConfigError(f"SUNO_MODEL={model!r} is not one of {', '.join(SUNO_MODELS)}")
        log_format = (get("CLIPJOBS_LOG_FORMAT") or d.log_format).lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"CLIPJOBS_LOG_FORMAT={log_format!r} must be text or json")
        log_level = (get("CLIPJOBS_LOG_LEVEL") or d.log_level).upper()
        if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ConfigError(f"CLIPJOBS_LOG_LEVEL={log_level!r} is not a logging level")
        suno_key = get("SUNO_API_KEY")
        if suno_key is not None and len(suno_key) < _MIN_KEY:
            # Redacting a 3-character string would blank every word that contains it,
            # and not redacting it would print the key: neither, so no such key.
            raise ConfigError(
                f"SUNO_API_KEY is too short to be a sunoapi.org key (under {_MIN_KEY} characters;"
                " the value is not shown)"
            )
        tokens_spec = get("CLIPJOBS_TOKENS")
        admin_spec = get("CLIPJOBS_ADMIN_TOKENS")
        admin_tokens = (
            parse_tokens(admin_spec, "CLIPJOBS_ADMIN_TOKENS") if admin_spec is not None else None
        )
        tokens = parse_tokens(tokens_spec) if tokens_spec is not None else None
        if admin_tokens and tokens and set(admin_tokens) & set(tokens):
            # Which role would it have? Refuse rather than pick one.
            raise ConfigError(
                "a token is in both CLIPJOBS_TOKENS and CLIPJOBS_ADMIN_TOKENS (not shown):"
                " give the admin a token of its own"
            )
        hosts = tuple(
            h.strip().lower() for h in (get("CLIPJOBS_CLIP_HOSTS") or "").split(",") if h.strip()
        )
        lease_s = num("CLIPJOBS_LEASE_S", d.lease_s, float, 31, 3600)
        heartbeat_s = num("CLIPJOBS_WORKER_HEARTBEAT_S", d.worker_heartbeat_s, float, 0.1, 3600)
        if heartbeat_s > lease_s:
            raise ConfigError(
                f"CLIPJOBS_WORKER_HEARTBEAT_S={heartbeat_s:g} must not be longer than"
                f" CLIPJOBS_LEASE_S ({lease_s:g})"
            )
        job_timeout_s = num("CLIPJOBS_JOB_TIMEOUT_S", d.job_timeout_s, int, 1, 7 * 86400)
        job_max_s = num("CLIPJOBS_JOB_MAX_S", max(d.job_max_s, job_timeout_s), int, 1, 30 * 86400)
        if job_max_s < job_timeout_s:
            raise ConfigError(
                f"CLIPJOBS_JOB_MAX_S={job_max_s} must not be shorter than"
                f" CLIPJOBS_JOB_TIMEOUT_S ({job_timeout_s})"
            )
        clip_style = (get("CLIPJOBS_CLIP_STYLE") or d.clip_style).lower()
        if clip_style not in _CLIP_STYLES:
            raise ConfigError(f"CLIPJOBS_CLIP_STYLE={clip_style!r} must be simple or full")
        schema = get("CLIPJOBS_PG_SCHEMA") or d.pg_schema
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(
                f"CLIPJOBS_PG_SCHEMA={schema!r} must be lower-case letters, digits and"
                " underscores, not starting with a digit, at most 48 characters"
            )
        return cls(
            db_url=db_url,
            host=get("CLIPJOBS_HOST") or d.host,
            port=num("CLIPJOBS_PORT", d.port, int, 0, 65535),
            suno_api_key=suno_key,
            suno_base_url=suno_base,
            suno_model=model,
            public_base_url=public,
            tokens=tokens,
            admin_tokens=admin_tokens,
            stale_after_s=num("CLIPJOBS_STALE_AFTER_S", d.stale_after_s, float, 1, 86400),
            job_timeout_s=job_timeout_s,
            job_max_s=job_max_s,
            poll_after_s=num("CLIPJOBS_POLL_AFTER_S", d.poll_after_s, float, 0.01, 86400),
            poll_interval_s=num("CLIPJOBS_POLL_INTERVAL_S", d.poll_interval_s, float, 0.01, 86400),
            suno_max_rps=num("CLIPJOBS_SUNO_MAX_RPS", d.suno_max_rps, float, 0.01, 1000),
            log_format=log_format,
            log_level=log_level,
            clip_render=flag("CLIPJOBS_CLIP_RENDER", d.clip_render),
            media_dir=Path(get("CLIPJOBS_MEDIA_DIR") or d.media_dir),
            clip_max_s=num("CLIPJOBS_CLIP_MAX_S", d.clip_max_s, float, 1, 3600),
            clip_hosts=hosts,
            clip_style=clip_style,
            clip_captions=flag("CLIPJOBS_CLIP_CAPTIONS", d.clip_captions),
            one_job_per_channel=flag("CLIPJOBS_ONE_JOB_PER_CHANNEL", d.one_job_per_channel),
            worker_id=get("CLIPJOBS_WORKER_ID"),
            lease_s=lease_s,
            worker_heartbeat_s=heartbeat_s,
            resend_uncertain_after_s=num(
                "CLIPJOBS_RESEND_UNCERTAIN_AFTER_S", d.resend_uncertain_after_s, float, 0, 86400
            ),
            max_active_per_user=num(
                "CLIPJOBS_MAX_ACTIVE_PER_USER", d.max_active_per_user, int, 1, 1_000_000
            ),
            max_starts_per_user_per_hour=num(
                "CLIPJOBS_MAX_STARTS_PER_USER_PER_HOUR",
                d.max_starts_per_user_per_hour,
                int,
                0,
                1_000_000,
            ),
            pg_schema=schema,
            max_connections=num("CLIPJOBS_MAX_CONNECTIONS", d.max_connections, int, 1, 1_000_000),
            head_timeout_s=num("CLIPJOBS_HEAD_TIMEOUT_S", d.head_timeout_s, float, 0.1, 3600),
            keep_media=flag("CLIPJOBS_KEEP_MEDIA", d.keep_media),
            retention_days=num("CLIPJOBS_RETENTION_DAYS", d.retention_days, float, 0, 36500),
            notify_allow_private=flag("CLIPJOBS_NOTIFY_ALLOW_PRIVATE", d.notify_allow_private),
            notify_backoff_s=num(
                "CLIPJOBS_NOTIFY_BACKOFF_S", d.notify_backoff_s, float, 0.01, 3600
            ),
            notify_max_subscriptions=num(
                "CLIPJOBS_NOTIFY_MAX_SUBSCRIPTIONS", d.notify_max_subscriptions, int, 1, 1000
            ),
            notify_timeout_s=num("CLIPJOBS_NOTIFY_TIMEOUT_S", d.notify_timeout_s, float, 0.1, 60),
            notify_give_up_s=num(
                "CLIPJOBS_NOTIFY_GIVE_UP_S", d.notify_give_up_s, float, 1, 7 * 86400
            ),
        )


def _check_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL like https://clips.example.org")
