"""``clipjobs cancel JOB_ID`` and ``clipjobs retry JOB_ID [--from clip] [--watch]`` (SPEC 10.2).

Exit codes as ``run``'s: 0 done (cancelled; or the retry started, or with
``--watch`` succeeded), 1 the retry failed, 3 it timed out, 4 the server
refused (409 JOB_ALREADY_FINISHED / JOB_NOT_RETRYABLE, 404) or is unreachable.
"""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from ._client import (
    _command,
    _follow_options,
    _json_line,
    _refused_start,
    _report_started,
    _session,
    _with_renderer,
    client_parser,
    start_options,
)
from ._client_http import ApiAnswerError, JobsApi
from ._client_render import Renderer
from ._exit import EXIT_OK

__all__ = ["register_acting"]


def _action_url(api: JobsApi, job_id: str, action: str) -> str:
    return f"{api.base_url}/api/music-clips/jobs/{quote(job_id, safe='')}/{action}"


async def _cancel(args: argparse.Namespace, url: str, token: str) -> int:
    async with _session() as session:
        api = JobsApi(session, url, token, args.lang)
        body: dict[str, Any] = {"reason": args.reason} if args.reason else {}
        _, view = await api._json(
            "POST", _action_url(api, args.job_id, "cancel"), body=body or None
        )
    assert view is not None
    if args.json:
        _json_line(view)
    else:
        print(f"{args.job_id}: {view.get('stage')} — {view.get('progressText')}", flush=True)
    return EXIT_OK


async def _retry(args: argparse.Namespace, url: str, token: str, renderer: Renderer) -> int:
    async with _session() as session:
        api = JobsApi(session, url, token, args.lang)
        headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else {}
        body = {"from": args.from_} if args.from_ else None
        try:
            _, started = await api._json(
                "POST", _action_url(api, args.job_id, "retry"), headers=headers, body=body
            )
        except ApiAnswerError as exc:
            return _refused_start(args, exc)
        assert started is not None
        return await _report_started(args, api, started, renderer)


def register_acting(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cancel`` and ``retry`` to the ``clipjobs`` command's subparsers."""
    cancel_p = client_parser(
        sub,
        "cancel",
        summary="cancel a running job (nothing more is sent, polled or rendered)",
        description="POST the job's cancel: it ends in STAGE_98_CANCELLED.",
    )
    cancel_p.add_argument("job_id", metavar="JOB_ID")
    cancel_p.add_argument("--reason", help="why (shown as the job's error)")
    cancel_p.set_defaults(func=_command(_cancel))

    retry_p = client_parser(
        sub,
        "retry",
        summary="start a new job retrying a failed, cancelled or timed-out one",
        description=(
            "POST the job's retry. --from clip reuses the song and only renders the clip again"
            " (no Suno call, no credits)."
        ),
    )
    retry_p.add_argument("job_id", metavar="JOB_ID")
    retry_p.add_argument(
        "--from",
        dest="from_",
        choices=("start", "clip"),
        default=None,
        help="start (default) or clip",
    )
    start_options(retry_p, "follow the new job until it ends")
    _follow_options(retry_p)
    retry_p.set_defaults(func=_with_renderer(_retry))
