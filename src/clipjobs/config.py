"""Configuration from the environment (SPEC section 8), validated in one place.

``Settings.from_env(os.environ)`` either returns settings that can work or
raises :class:`~clipjobs.errors.ConfigError` whose message is one line naming
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

from .auth import parse_tokens
from .errors import ConfigError
from .events import JobPolicy

__all__ = ["Settings"]

_T = TypeVar("_T")
#: The PostgreSQL adapter's rule too (clipjobs_postgres checks it again at open).
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
#: The shortest SUNO_API_KEY accepted, as for CLIPJOBS_TOKENS (real keys are 32).
_MIN_KEY = 8
_MODELS = ("V3_5", "V4", "V4_5", "V4_5PLUS", "V4_5ALL", "V5", "V5_5")
_CLIP_STYLES = ("simple", "full")


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
    stale_after_s: float = 60.0
    #: A job still generating times out after this long without progress (a stage change
    #: or news from Suno) ...
    job_timeout_s: int = 600
    #: ... or this long after it was accepted, whatever its progress.
    job_max_s: int = 1800
    poll_after_s: float = 30.0
    poll_interval_s: float = 15.0
    suno_max_rps: float = 2.0
    log_format: str = "text"
    log_level: str = "INFO"
    clip_render: bool = False
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
    resend_uncertain_after_s: float = 120.0
    #: runOnce answers 429 TOO_MANY_ACTIVE_JOBS while a user has this many running.
    max_active_per_user: int = 20
    #: ... or once a user started this many in the last hour (0: no limit).
    max_starts_per_user_per_hour: int = 0
    pg_schema: str = "clipjobs"
    #: Open HTTP connections one server holds; past it new ones get 503 (SSE streams count).
    max_connections: int = 1000
    #: How long a connection may go without a complete request head (idle keep-alive too).
    head_timeout_s: float = 15.0

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
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
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

        db_url = get("CLIPJOBS_DB") or "sqlite:///clipjobs.db"
        if not db_url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ConfigError(
                "CLIPJOBS_DB must be sqlite:///path or postgresql://… (got another scheme)"
            )
        public = get("PUBLIC_BASE_URL")
        if public is not None:
            _check_url("PUBLIC_BASE_URL", public)
            public = public.rstrip("/")
        suno_base = (get("SUNO_BASE_URL") or "https://api.sunoapi.org").rstrip("/")
        _check_url("SUNO_BASE_URL", suno_base)
        model = get("SUNO_MODEL") or "V4_5"
        if model not in _MODELS:
            raise ConfigError(f"SUNO_MODEL={model!r} is not one of {', '.join(_MODELS)}")
        log_format = (get("CLIPJOBS_LOG_FORMAT") or "text").lower()
        if log_format not in ("text", "json"):
            raise ConfigError(f"CLIPJOBS_LOG_FORMAT={log_format!r} must be text or json")
        log_level = (get("CLIPJOBS_LOG_LEVEL") or "INFO").upper()
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
        hosts = tuple(
            h.strip().lower() for h in (get("CLIPJOBS_CLIP_HOSTS") or "").split(",") if h.strip()
        )
        lease_s = num("CLIPJOBS_LEASE_S", 60.0, float, 31, 3600)
        heartbeat_s = num("CLIPJOBS_WORKER_HEARTBEAT_S", 5.0, float, 0.1, 3600)
        if heartbeat_s > lease_s:
            raise ConfigError(
                f"CLIPJOBS_WORKER_HEARTBEAT_S={heartbeat_s:g} must not be longer than"
                f" CLIPJOBS_LEASE_S ({lease_s:g})"
            )
        job_timeout_s = num("CLIPJOBS_JOB_TIMEOUT_S", 600, int, 1, 7 * 86400)
        job_max_s = num("CLIPJOBS_JOB_MAX_S", max(1800, job_timeout_s), int, 1, 30 * 86400)
        if job_max_s < job_timeout_s:
            raise ConfigError(
                f"CLIPJOBS_JOB_MAX_S={job_max_s} must not be shorter than"
                f" CLIPJOBS_JOB_TIMEOUT_S ({job_timeout_s})"
            )
        clip_style = (get("CLIPJOBS_CLIP_STYLE") or "full").lower()
        if clip_style not in _CLIP_STYLES:
            raise ConfigError(f"CLIPJOBS_CLIP_STYLE={clip_style!r} must be simple or full")
        schema = get("CLIPJOBS_PG_SCHEMA") or "clipjobs"
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(
                f"CLIPJOBS_PG_SCHEMA={schema!r} must be lower-case letters, digits and"
                " underscores, not starting with a digit, at most 48 characters"
            )
        return cls(
            db_url=db_url,
            host=get("CLIPJOBS_HOST") or "127.0.0.1",
            port=num("CLIPJOBS_PORT", 8080, int, 0, 65535),
            suno_api_key=suno_key,
            suno_base_url=suno_base,
            suno_model=model,
            public_base_url=public,
            tokens=parse_tokens(tokens_spec) if tokens_spec is not None else None,
            stale_after_s=num("CLIPJOBS_STALE_AFTER_S", 60.0, float, 1, 86400),
            job_timeout_s=job_timeout_s,
            job_max_s=job_max_s,
            poll_after_s=num("CLIPJOBS_POLL_AFTER_S", 30.0, float, 0.01, 86400),
            poll_interval_s=num("CLIPJOBS_POLL_INTERVAL_S", 15.0, float, 0.01, 86400),
            suno_max_rps=num("CLIPJOBS_SUNO_MAX_RPS", 2.0, float, 0.01, 1000),
            log_format=log_format,
            log_level=log_level,
            clip_render=flag("CLIPJOBS_CLIP_RENDER", False),
            media_dir=Path(get("CLIPJOBS_MEDIA_DIR") or "media"),
            clip_max_s=num("CLIPJOBS_CLIP_MAX_S", 60.0, float, 1, 3600),
            clip_hosts=hosts,
            clip_style=clip_style,
            clip_captions=flag("CLIPJOBS_CLIP_CAPTIONS", True),
            one_job_per_channel=flag("CLIPJOBS_ONE_JOB_PER_CHANNEL", True),
            worker_id=get("CLIPJOBS_WORKER_ID"),
            lease_s=lease_s,
            worker_heartbeat_s=heartbeat_s,
            resend_uncertain_after_s=num(
                "CLIPJOBS_RESEND_UNCERTAIN_AFTER_S", 120.0, float, 0, 86400
            ),
            max_active_per_user=num("CLIPJOBS_MAX_ACTIVE_PER_USER", 20, int, 1, 1_000_000),
            max_starts_per_user_per_hour=num(
                "CLIPJOBS_MAX_STARTS_PER_USER_PER_HOUR", 0, int, 0, 1_000_000
            ),
            pg_schema=schema,
            max_connections=num("CLIPJOBS_MAX_CONNECTIONS", 1000, int, 1, 1_000_000),
            head_timeout_s=num("CLIPJOBS_HEAD_TIMEOUT_S", 15.0, float, 0.1, 3600),
        )


def _check_url(name: str, value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL like https://clips.example.org")
