"""The ``clipjobs`` command: ``serve``, ``fake-suno`` and the client commands.

Exit codes: 0 success; 1 the job ended failed; 2 bad usage or configuration;
3 the job timed out (or ``--timeout`` ran out); 4 any other error (the server
unreachable, the store unavailable).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence

from clipjobs.app.config import Settings
from clipjobs.domain.errors import ClipjobsError, ConfigError

from . import _client, _client_acting, _retention_cmd
from ._client_fleet import register_jobs
from ._exit import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE
from ._logging import configure_logging
from ._serve import serve

__all__ = ["EXIT_ERROR", "EXIT_FAILED", "EXIT_OK", "EXIT_TIMEOUT", "EXIT_USAGE", "main"]


def _say(line: str) -> None:
    """A line a person must see (not a log record): stdout, flushed at once."""
    print(f"clipjobs: {line}", flush=True)


def _fail(message: str, code: int) -> int:
    print(f"clipjobs: error: {message}", file=sys.stderr, flush=True)
    return code


def _serve_command(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    if args.host is not None:
        env["CLIPJOBS_HOST"] = args.host
    if args.port is not None:
        env["CLIPJOBS_PORT"] = str(args.port)
    try:
        settings = Settings.from_env(env)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    redactor = configure_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(settings, redactor=redactor, say=_say))
    except ConfigError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ClipjobsError as exc:
        return _fail(redactor.redact(str(exc)), EXIT_ERROR)
    except KeyboardInterrupt:
        pass
    _say("stopped")
    return EXIT_OK


def _fake_suno_command(args: argparse.Namespace) -> int:
    from clipjobs_suno.fake import SCENARIOS, serve_fake

    if args.scenario not in SCENARIOS:
        return _fail(f"--scenario must be one of {', '.join(SCENARIOS)}", EXIT_USAGE)
    if args.credits < 0:
        return _fail("--credits must be 0 or more", EXIT_USAGE)
    configure_logging("INFO", "text", [args.api_key] if args.api_key else [])
    timings = {
        name: value
        for name, value in (
            ("text_after_s", args.text_after_s),
            ("first_after_s", args.first_after_s),
            ("complete_after_s", args.complete_after_s),
        )
        if value is not None
    }
    try:
        asyncio.run(
            serve_fake(
                args.host,
                args.port,
                args.scenario,
                args.credits,
                api_key=args.api_key,
                on_ready=lambda url: _say(f"fake Suno listening on {url}"),
                **timings,
            )
        )
    except ValueError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except OSError as exc:
        return _fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", EXIT_ERROR)
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipjobs",
        description="Observable, crash-safe music-generation jobs (Suno).",
        epilog="Exit codes: 0 ok, 1 job failed, 2 usage/config, 3 timed out, 4 other error.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_p = sub.add_parser(
        "serve",
        help="run the HTTP API and the workers (demo mode without SUNO_API_KEY)",
        description="Configuration comes from the environment (see docs/operations.md).",
    )
    serve_p.add_argument("--host", help="listen address (CLIPJOBS_HOST, default 127.0.0.1)")
    serve_p.add_argument("--port", type=int, help="listen port (CLIPJOBS_PORT, default 8080)")
    serve_p.set_defaults(func=_serve_command)

    fake_p = sub.add_parser("fake-suno", help="run the fake Suno API server standalone")
    fake_p.add_argument("--host", default="127.0.0.1")
    fake_p.add_argument("--port", type=int, default=8090)
    fake_p.add_argument("--scenario", default="success")
    fake_p.add_argument("--credits", type=int, default=100)
    fake_p.add_argument("--api-key", default=None, help="require this bearer key (default: any)")
    fake_p.add_argument("--text-after-s", type=float, default=None)
    fake_p.add_argument("--first-after-s", type=float, default=None)
    fake_p.add_argument("--complete-after-s", type=float, default=None)
    fake_p.set_defaults(func=_fake_suno_command)

    _client.register(sub)
    _retention_cmd.register(sub)
    register_jobs(sub)
    _client_acting.register_acting(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    finally:
        logging.shutdown()
