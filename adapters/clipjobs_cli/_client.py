"""The client commands: ``clipjobs run``, ``clipjobs watch``, ``clipjobs history``.

They talk to a running ``clipjobs serve`` over its HTTP API (``CLIPJOBS_URL``,
``CLIPJOBS_TOKEN``) and exit with the job's outcome: 0 success, 1 failed,
3 timed out (or ``--timeout`` ran out), 4 the server unreachable or a refusal,
2 bad usage; 130 on Ctrl-C. ``watch`` follows the job's SSE stream and falls
back to ``Prefer: wait`` long-polling when the stream breaks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from clipjobs import evolve
from clipjobs.domain.codec import decode_event
from clipjobs.domain.errors import ClipjobsError
from clipjobs.domain.state import JobState

from ._client_http import ApiAnswerError, ConnectionLost, JobsApi, sleep_backoff
from ._client_render import (
    JsonLines,
    LiveLine,
    PlainLines,
    Renderer,
    history_table,
    text,
)
from ._exit import EXIT_ERROR, EXIT_FAILED, EXIT_OK, EXIT_TIMEOUT, EXIT_USAGE

__all__ = ["EXIT_INTERRUPTED", "register"]

EXIT_INTERRUPTED = 130
DEFAULT_URL = "http://127.0.0.1:8080"
#: After the server was seen, how long it may stay away (a restart) before ``watch`` gives up.
RECONNECT_FOR_S = 30.0
#: The server's default ``CLIPJOBS_STALE_AFTER_S``: the live line's stale mark between views.
DEFAULT_STALE_AFTER_S = 60.0
#: The exit codes, under every client command's ``--help``.
EPILOG = (
    "Exit codes: 0 success, 1 job failed, 2 usage, 3 job timed out or --timeout,"
    " 4 server unreachable or request refused, 130 Ctrl-C."
)

#: How each terminal stage ends the command.
_OUTCOMES = {
    "STAGE_50_SUNO_SUCCESS": EXIT_OK,
    "STAGE_70_CLIP_READY": EXIT_OK,
    "STAGE_90_FAILED": EXIT_FAILED,
    "STAGE_98_CANCELLED": EXIT_FAILED,
    "STAGE_99_TIMEOUT": EXIT_TIMEOUT,
}


class UsageError(Exception):
    """Bad options or environment: exit 2 with one line."""


def _err(line: str) -> None:
    print(f"clipjobs: {line}", file=sys.stderr, flush=True)


def _default_lang(env: Mapping[str, str]) -> str:
    """The POSIX locale order (LC_ALL, LC_MESSAGES, LANG): Russian when it says ru, else English."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name)
        if value:
            return "ru" if value.lower().startswith("ru") else "en"
    return "en"


def _connection(args: argparse.Namespace) -> tuple[str, str]:
    url = (args.url or os.environ.get("CLIPJOBS_URL") or DEFAULT_URL).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"CLIPJOBS_URL / --url must be an http(s):// URL, got {url!r}")
    token = (args.token or os.environ.get("CLIPJOBS_TOKEN") or "").strip()
    if not token:
        raise UsageError(
            "no token: set CLIPJOBS_TOKEN or pass --token"
            " (one of CLIPJOBS_TOKENS on the server; in demo mode `clipjobs serve` prints one)"
        )
    return url.rstrip("/"), token


def _outcome(view: Mapping[str, Any]) -> int:
    return _OUTCOMES.get(str(view.get("stage")), EXIT_ERROR)


def _json_line(body: Mapping[str, Any]) -> None:
    print(json.dumps(body, ensure_ascii=False), flush=True)


def _client_error(args: argparse.Namespace, code: str, message: str) -> None:
    """A failure with no server answer: one line on stderr, and a JSON body under ``--json``."""
    _err(f"error: {message}")
    if args.json:
        _json_line({"success": False, "ok": False, "error": code, "message": message})


def _api_error(args: argparse.Namespace, exc: ApiAnswerError) -> None:
    """The server's refusal as it said it: its code and message (and the job, if it names one)."""
    job = exc.body.get("jobId")
    _err(f"error: HTTP {exc.status} {exc}" + (f" (jobId {job})" if job else ""))
    if args.json:
        _json_line(exc.body or {"success": False, "ok": False, "error": exc.code})


def _renderer(args: argparse.Namespace) -> Renderer:
    if args.json:
        return JsonLines()
    if sys.stdout.isatty() and os.environ.get("TERM") != "dumb":
        return LiveLine(args.lang, args.stale_after)
    return PlainLines(args.lang)


async def _ticking(renderer: Renderer) -> None:
    while True:
        await asyncio.sleep(1.0)
        renderer.tick()


async def follow(
    api: JobsApi, job_id: str, show: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Every new view of the job until it is done: SSE first, long-polling when the stream breaks.

    Raises ApiAnswerError for a refusal (404, 401…), ConnectionLost when the
    server cannot be reached at first, or stays away over ``RECONNECT_FOR_S``.
    """
    last: dict[str, Any] | None = None

    def seen(view: dict[str, Any]) -> None:
        nonlocal last
        if last is None or view.get("version") != last.get("version"):
            show(view)
        last = view

    with contextlib.suppress(ConnectionLost):
        async with contextlib.aclosing(api.events(job_id)) as stream:
            async for view in stream:
                seen(view)
                if view.get("done"):
                    return view
    if last is None:
        # The stream never gave a view: one plain GET says whether anyone is there.
        first = await api.get_job(job_id)
        assert first is not None
        seen(first)
    assert last is not None
    failed_since: float | None = None
    attempt = 0
    while not last.get("done"):
        try:
            changed = await api.get_job(job_id, int(last.get("version") or 0))
        except (ConnectionLost, ApiAnswerError) as exc:
            if isinstance(exc, ApiAnswerError) and not exc.transient:
                raise
            now = time.monotonic()
            failed_since = failed_since if failed_since is not None else now
            if now - failed_since > RECONNECT_FOR_S:
                raise ConnectionLost(
                    f"lost the server for over {RECONNECT_FOR_S:g} s: {exc}"
                ) from exc
            await sleep_backoff(attempt)
            attempt += 1
            continue
        failed_since, attempt = None, 0
        if changed is not None:
            seen(changed)
    return last


async def _watching(
    api: JobsApi, job_id: str, renderer: Renderer, timeout_s: float | None
) -> tuple[dict[str, Any] | None, bool]:
    """``(last view, gave up)``: follow until done or ``timeout_s`` passes."""
    last: dict[str, Any] | None = None

    def show(view: dict[str, Any]) -> None:
        nonlocal last
        last = view
        renderer.show(view)

    ticker = asyncio.create_task(_ticking(renderer))
    try:
        async with asyncio.timeout(timeout_s) as deadline:
            return await follow(api, job_id, show), False
    except TimeoutError:
        if deadline.expired():
            return last, True
        raise
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker


async def _watch_and_report(
    args: argparse.Namespace, api: JobsApi, job_id: str, renderer: Renderer
) -> int:
    final, gave_up = await _watching(api, job_id, renderer, args.timeout)
    renderer.finish(final, api.base_url)
    if gave_up:
        stage = final.get("stage") if final else "unknown"
        _err(
            f"gave up after --timeout {args.timeout:g} s; job {job_id} is still {stage}"
            f" on the server (clipjobs watch {job_id})"
        )
        return EXIT_TIMEOUT
    assert final is not None
    return _outcome(final)


def _session() -> aiohttp.ClientSession:
    # Proxies from the environment would see the bearer token; clipjobs URLs are direct.
    return aiohttp.ClientSession(trust_env=False)


async def _run(args: argparse.Namespace, url: str, token: str, renderer: Renderer) -> int:
    body: dict[str, Any] = {}
    for name in ("prompt", "style", "title", "model"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.instrumental is not None:
        body["instrumental"] = args.instrumental
    async with _session() as session:
        api = JobsApi(session, url, token, args.lang)
        try:
            started = await api.run_once(args.channel, body, args.idempotency_key)
        except ApiAnswerError as exc:
            return _refused_start(args, exc)
        return await _report_started(args, api, started, renderer)


def _refused_start(args: argparse.Namespace, exc: ApiAnswerError) -> int:
    """A start (run, retry) the server refused, said as it said it: exit 1 when the job
    exists and failed at once (402, and a 400 that names a job), else 4.
    """
    _api_error(args, exc)
    failed_job = exc.body.get("jobId") and exc.status in (400, 402)
    return EXIT_FAILED if failed_job else EXIT_ERROR


async def _report_started(
    args: argparse.Namespace, api: JobsApi, started: Mapping[str, Any], renderer: Renderer
) -> int:
    """A job just started (run, retry): its id and status page, or with ``--watch`` followed
    to its end (exit by its outcome).
    """
    job_id = args.job_id = str(started["jobId"])
    if args.json:
        if not args.watch:
            _json_line(started)
    else:
        print(f"{text(args.lang, 'job')}: {job_id}", flush=True)
        print(f"{text(args.lang, 'page')}: {api.base_url}/music-clips/jobs/{job_id}", flush=True)
    if not args.watch:
        return EXIT_OK
    return await _watch_and_report(args, api, job_id, renderer)


async def _watch(args: argparse.Namespace, url: str, token: str, renderer: Renderer) -> int:
    async with _session() as session:
        return await _watch_and_report(
            args, JobsApi(session, url, token, args.lang), args.job_id, renderer
        )


def _detail(type_: str, data: Mapping[str, Any]) -> str:
    """The one or two fields of an event a person looks for first."""
    if type_ == "SunoTaskCreated":
        return f"taskId={data.get('task_id')}"
    if type_ in ("SunoProgressObserved", "LateObservation"):
        return " ".join(
            f"{key}={data[key]}" for key in ("status", "source", "reason") if data.get(key)
        )
    if type_ == "JobFailed":
        return f"{data.get('error_code')}: {data.get('message')}"
    if type_ == "SunoRequestSent":
        return f"attempt={data.get('attempt')}"
    if type_ == "JobAccepted":
        return f"channel={data.get('channel_id')} user={data.get('user_id')}"
    return ""


def _stages_after(events: list[dict[str, Any]]) -> list[str | None]:
    """The stage after each event, by folding the log here (None past an event we cannot read)."""
    state: JobState | None = None
    stages: list[str | None] = []
    for entry in events:
        try:
            state = evolve(state, decode_event(str(entry["type"]), entry["data"]))
        except (ClipjobsError, KeyError, TypeError):
            state = None
            stages.extend([None] * (len(events) - len(stages)))
            break
        stages.append(state.stage.value)
    return stages


async def _history(args: argparse.Namespace, url: str, token: str) -> int:
    async with _session() as session:
        body = await JobsApi(session, url, token, args.lang).history(args.job_id)
    events: list[dict[str, Any]] = [e for e in body.get("events") or [] if isinstance(e, dict)]
    stages = _stages_after(events)
    if args.json:
        for entry, stage in zip(events, stages, strict=True):
            entry["stageAfter"] = stage
        _json_line(body)
    else:
        rows = [
            [
                str(entry.get("version")),
                str(entry.get("at")),
                str(entry.get("type")),
                stage or "?",
                _detail(str(entry.get("type")), entry.get("data") or {}),
            ]
            for entry, stage in zip(events, stages, strict=True)
        ]
        sys.stdout.write(history_table(rows, args.lang))
        sys.stdout.flush()
    last = stages[-1] if stages else None
    return _OUTCOMES.get(last or "", EXIT_OK)


def _command(
    work: Callable[[argparse.Namespace, str, str], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    """A client command: options checked, errors said in one line, the exit code returned."""

    def run(args: argparse.Namespace) -> int:
        try:
            url, token = _connection(args)
        except UsageError as exc:
            _client_error(args, "USAGE", str(exc))
            return EXIT_USAGE
        try:
            return asyncio.run(work(args, url, token))
        except ApiAnswerError as exc:
            _api_error(args, exc)
            return EXIT_ERROR
        except ConnectionLost as exc:
            _client_error(args, "UNREACHABLE", f"cannot reach clipjobs at {url}: {exc}")
            return EXIT_ERROR

    return run


def _with_renderer(
    work: Callable[[argparse.Namespace, str, str, Renderer], Coroutine[Any, Any, int]],
) -> Callable[[argparse.Namespace], int]:
    """Like ``_command``, and Ctrl-C leaves a clean terminal and exits 130."""

    def run(args: argparse.Namespace) -> int:
        renderer = _renderer(args)

        async def bound(a: argparse.Namespace, url: str, token: str) -> int:
            return await work(a, url, token, renderer)

        try:
            return _command(bound)(args)
        except KeyboardInterrupt:
            renderer.abort()
            job = getattr(args, "job_id", None)
            _err(
                "stopped watching"
                + (f"; the job keeps running (clipjobs watch {job})" if job else "")
            )
            return EXIT_INTERRUPTED

    return run


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not number > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return number


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("server")
    group.add_argument("--url", help=f"the clipjobs server (CLIPJOBS_URL, default {DEFAULT_URL})")
    group.add_argument(
        "--token", help="bearer token (CLIPJOBS_TOKEN; prefer the variable: argv is visible to ps)"
    )
    group.add_argument(
        "--lang",
        choices=("ru", "en"),
        default=_default_lang(os.environ),
        help="language of texts (Accept-Language; default from LC_ALL/LC_MESSAGES/LANG: ru or en)",
    )
    group.add_argument(
        "--json", action="store_true", help="machine-readable output: one JSON object per line"
    )
    return common


def _follow_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=None,
        metavar="S",
        help="stop waiting after S seconds (exit 3; the job keeps running on the server)",
    )
    parser.add_argument(
        "--stale-after",
        type=_positive,
        default=DEFAULT_STALE_AFTER_S,
        metavar="S",
        help="mark the live line stale after S silent seconds (default 60, as the server)",
    )


def client_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    summary: str,
    description: str,
    epilog: str = EPILOG,
) -> argparse.ArgumentParser:
    """A client command's parser: the server options (``--url``, ``--token``, ``--lang``,
    ``--json``) and the exit codes.
    """
    return sub.add_parser(
        name, parents=[_common()], help=summary, description=description, epilog=epilog
    )


def start_options(parser: argparse.ArgumentParser, watch_help: str) -> None:
    """``--watch`` and ``--idempotency-key``, of the commands that start a job (run, retry)."""
    parser.add_argument("--watch", action="store_true", help=watch_help)
    parser.add_argument(
        "--idempotency-key", metavar="K", help="a retry with the same key gets the same job"
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run``, ``watch`` and ``history`` to the ``clipjobs`` command's subparsers."""
    run_p = client_parser(
        sub,
        "run",
        summary="start a job for a channel (and follow it with --watch)",
        description="POST runOnce for a channel; print the job id and its status page.",
    )
    run_p.add_argument("--channel", required=True, metavar="ID", help="the channel id")
    start_options(run_p, "follow the job until it ends")
    run_p.add_argument("--prompt", help="generation prompt (else the channel's default)")
    run_p.add_argument("--style")
    run_p.add_argument("--title")
    run_p.add_argument("--model", help="Suno model, e.g. V4_5")
    run_p.add_argument(
        "--instrumental",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="instrumental only (or --no-instrumental)",
    )
    _follow_options(run_p)
    run_p.set_defaults(func=_with_renderer(_run))

    watch_p = client_parser(
        sub,
        "watch",
        summary="follow a job until it ends (a live line on a terminal)",
        description="Follow a job over SSE (long-polling if the stream breaks) until it ends.",
    )
    watch_p.add_argument("job_id", metavar="JOB_ID")
    _follow_options(watch_p)
    watch_p.set_defaults(func=_with_renderer(_watch))

    history_p = client_parser(
        sub,
        "history",
        summary="print a job's event log",
        description="The job's event log: version, time, type and the stage after each event.",
        epilog=EPILOG.replace("3 job timed out or --timeout", "3 job timed out"),
    )
    history_p.add_argument("job_id", metavar="JOB_ID")
    history_p.set_defaults(func=_command(_history))
