"""docs/api.md is rendered from live calls, so its examples cannot drift.

``CLIPJOBS_REGEN_DOCS=1 python -m pytest tests/http/test_api_docs.py`` rewrites
it; otherwise the test fails when the committed file differs from what the API
answers now. Every recorded JSON answer is also checked against the OpenAPI
document's schema for its status.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from _http_harness import ALICE_TOKEN, BOB_TOKEN, REQUEST_HEADERS, Api, running_api
from _openapi_check import check
from aiohttp import web
from attrs import define, field

from clipjobs import InMemoryEventStore, ProviderStatus, ServiceConfig
from clipjobs.testing import ScriptedSuno
from clipjobs_aiohttp import NotifyConfig, WebhookSender, add_subscriptions

pytestmark = pytest.mark.asyncio

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
SHOWN_REQUEST_HEADERS = ("Authorization", *REQUEST_HEADERS)
SHOWN_RESPONSE_HEADERS = ("Location", "Retry-After", "ETag", "Content-Type", "X-Request-Id")


@define
class Normaliser:
    """Replaces random ids and secrets with stable placeholders, in order of appearance."""

    jobs: dict[str, str] = field(factory=dict)
    tasks: dict[str, str] = field(factory=dict)
    webhook_tokens: set[str] = field(factory=set)

    def __call__(self, text: str) -> str:
        def job(m: re.Match[str]) -> str:
            return self.jobs.setdefault(
                m.group(0),
                f"job_{m.group(1)}_{'abc123' if not self.jobs else f'abc12{len(self.jobs) + 3}'}",
            )

        # Cursors carry a job id and a signature: both differ every run.
        text = re.sub(r"\b[A-Za-z0-9_-]{20,}\.[0-9a-f]{32}\b", "<cursor>", text)
        text = re.sub(r"job_(\d{13})_[a-z0-9]{10}", job, text)
        text = re.sub(r"req_(\d{13})_[a-z0-9]{8}", r"req_\1_def456", text)
        text = re.sub(r"whsec_[A-Za-z0-9+/=]+", "whsec_<shown once>", text)
        text = re.sub(r"sub_[0-9a-f]{24}", "sub_0123456789abcdef01234567", text)
        text = re.sub(r"msg_[0-9a-f]{32}", "msg_0123456789abcdef0123456789abcdef", text)
        text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:8000", text)
        text = re.sub(r'"durationMs": [0-9.]+', '"durationMs": 3.1', text)

        def task(m: re.Match[str]) -> str:
            return self.tasks.setdefault(m.group(0), f"suno_task_{len(self.tasks) + 1}")

        for token in self.webhook_tokens:
            text = text.replace(token, "<webhook-token>")
        text = re.sub(r"\b[0-9a-f]{32}\b", task, text)
        return text.replace(ALICE_TOKEN, "<alice's token>").replace(BOB_TOKEN, "<bob's token>")


@define
class Recorder:
    """Makes calls and writes them down as Markdown."""

    normalise: Normaliser = field(factory=Normaliser)
    parts: list[str] = field(factory=list)

    def text(self, markdown: str) -> None:
        self.parts.append(markdown.strip() + "\n")

    async def call(
        self,
        api: Api,
        title: str,
        method: str,
        path: str,
        *,
        template: str,
        token: str | None = ALICE_TOKEN,
        headers: dict[str, str] | None = None,
        json_body: Any = None,
        raw_body: str | None = None,
        params: dict[str, str] | None = None,
        data: Any = None,
    ) -> tuple[int, Any, dict[str, str]]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            sent["Content-Type"] = "application/json"
        for name, value in (params or {}).items():
            if name == "token":
                self.normalise.webhook_tokens.add(value)
        response = await api.client.request(
            method,
            path,
            headers=sent,
            params=params,
            data=data
            if data is not None
            else (json.dumps(json_body) if json_body is not None else None),
        )
        raw = await response.read()
        status = response.status
        got_headers = {
            k: response.headers[k] for k in SHOWN_RESPONSE_HEADERS if k in response.headers
        }
        content_type = response.headers.get("Content-Type", "")
        body: Any = json.loads(raw) if content_type.startswith("application/json") else raw.decode()
        if content_type.startswith("application/json"):
            check(template, method, status, body)
        query = "&".join(f"{k}={v}" for k, v in (params or {}).items())
        lines = [f"{method} {path}{'?' + query if query else ''} HTTP/1.1"]
        lines += [f"{k}: {sent[k]}" for k in SHOWN_REQUEST_HEADERS if k in sent]
        request_text = "\n".join(lines)
        if json_body is not None:
            request_text += "\n\n" + json.dumps(json_body, ensure_ascii=False, indent=2)
        elif raw_body is not None:
            request_text += "\n\n" + raw_body
        reply = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
        reply += [f"{k}: {v}" for k, v in got_headers.items()]
        reply_text = "\n".join(reply)
        if isinstance(body, dict):
            shown = dict(body)
            if "openapi" in shown:  # the document itself is docs/openapi.yaml
                shown = {
                    "openapi": body["openapi"],
                    "info": {"title": body["info"]["title"]},
                    "…": "…",
                }
            reply_text += "\n\n" + json.dumps(shown, ensure_ascii=False, indent=2)
        elif body:
            reply_text += "\n\n" + body.rstrip("\n")
        self.parts.append(
            f"#### {title}\n\n```http\n{self.normalise(request_text)}\n```\n\n"
            f"```http\n{self.normalise(reply_text)}\n```\n"
        )
        return status, body, dict(response.headers)

    def section(self, title: str) -> None:
        self.text(f"## {title}\n\n{SECTIONS[title]}")

    def render(self) -> str:
        return "\n".join(self.parts)


INTRO = """
# clipjobs HTTP API

<!-- Generated by tests/http/test_api_docs.py from live calls; do not edit by hand.
     Regenerate: CLIPJOBS_REGEN_DOCS=1 python -m pytest tests/http/test_api_docs.py -->

Every example below is a real request to a real server (the in-memory store and
the scripted Suno, a fake clock starting at 2026-01-01T00:00:00Z), recorded by
the test suite. Random parts are normalised: job ids become
`job_1767225600000_abc123`…, request ids `req_…_def456`, Suno task ids
`suno_task_N`, tokens `<…token>`. Every JSON answer is checked against
[`openapi.yaml`](openapi.yaml) (also served at `GET /api/music-clips/openapi.json`).

Conventions:
- Auth: `Authorization: Bearer <token>`; tokens map to users (`CLIPJOBS_TOKENS`).
  A token that is not UTF-8, or two `Authorization` headers, are 401. An
  `x-user-id` header, when sent, must be the token's user (else 403) and come
  once (else 400 `INVALID_REQUEST`, `field: x-user-id`). A job is visible only to
  its owner: anyone else gets 404 `JOB_NOT_FOUND`.
- Every answer has an `X-Request-Id` header; every JSON body has `requestId`.
- Errors: `{"success": false, "ok": false, "error": CODE, "message": …, "requestId": …}`,
  plus `field` (INVALID_REQUEST) or `jobId` where one is concerned.
- Texts are Russian by default; `Accept-Language: en` or `?lang=en` for English.
- Mounted under a prefix (`parent.add_subapp("/clips", app)`), every path and
  `Location` starts with it.
"""


SECTIONS = {
    "POST /api/music-clips/channels/{channelId}/runOnce": (
        "Starts a job and answers at once; the Suno call happens afterwards. Body "
        "(optional): `userId`, `prompt`, `style`, `title`, `customMode`, `instrumental`, "
        "`model`, `negativeTags`; unknown fields are ignored. The model's length limits "
        "hold for every field in every mode. `Idempotency-Key`: a key already used gives "
        "its job back (202), or 422 with another body; while a request with the key is "
        "still being handled, another one is 409 `IDEMPOTENCY_KEY_IN_USE` with its `jobId` "
        "and `Retry-After`."
    ),
    "GET /api/music-clips/jobs/{jobId}": (
        "The seed's body, plus `done`, `errorCode`, `version`, `tracks`, `clipUrl`, "
        "`clipStep`, `captionsUrl` (the lyrics as `.srt` beside the clip; the karaoke "
        "`.ass` has the same name). `ETag` is the version; `Retry-After: 3` while the "
        "job is not done."
    ),
    "POST /api/webhooks/suno/music?job={jobId}&token={token}": (
        "Suno's callback. The URL given to Suno carries the job id and an HMAC token of "
        "it; there is no bearer token. Duplicates, any order and unknown tasks are "
        "answered 200; a wrong or missing token is 401 and nothing is recorded. (The "
        "examples use the scripted Suno's payload shape; the real one is Suno's "
        "snake_case callback.)"
    ),
    "GET /api/music-clips/jobs/{jobId}/events": (
        "Server-Sent Events: `id:` is the version, `event: job`, `data:` the GET body. "
        "The current state comes first (only when newer than `Last-Event-ID`; an id above "
        "the job's version, which it never had, counts as none), then one event per change; "
        "`: keep-alive` every 15 s of silence; the stream ends after a terminal stage."
    ),
    "GET /api/music-clips/jobs/{jobId}/history": (
        'The event log, oldest first: what the "Показать детали" panel shows.'
    ),
    "GET /api/music-clips/channels/{channelId}/jobs": (
        "The caller's recent jobs on the channel, newest first (`?limit=`, 1–100, default 20)."
    ),
    "Subscriptions: webhooks to other systems": (
        "`POST /api/music-clips/subscriptions {url, events}` answers 201 with the signing "
        "`secret`, shown this once; `GET` lists without secrets; `DELETE …/{id}` removes; "
        "`GET …/{id}/deliveries` lists the latest attempts, newest first. Events: "
        "`job.succeeded`, `job.clip_ready`, `job.failed`, `job.timed_out`, `job.cancelled`. "
        "The URL must be https to a public address (checked after DNS) unless the server "
        "runs with `CLIPJOBS_NOTIFY_ALLOW_PRIVATE=on`, as this one does so the receiver can "
        "be on 127.0.0.1; at most `CLIPJOBS_NOTIFY_MAX_SUBSCRIPTIONS` (10) per user. What is "
        "sent, and how to verify it: [operations.md](operations.md#8-webhooks-to-other-systems)."
    ),
    "GET /api/music-clips/jobs": (
        "The fleet (SPEC 10.3): every job the caller may see, newest first, each its GET "
        "body. Users see their own jobs; admins (`CLIPJOBS_ADMIN_TOKENS`) everyone's. "
        "Filters: `stage` (repeatable), `channelId`, `userId` (admins; a user naming "
        "anyone else gets 403), `stale=true`, `done=true|false`, `createdAfter` "
        "(inclusive), `createdBefore` (exclusive; ISO 8601 with a zone); `limit` 1–200 "
        "(default 50); `cursor`: the `nextCursor` of the page before (signed: an edited "
        "one is 400). Unknown parameters are 400."
    ),
    "GET /api/music-clips/stats": (
        "Counts over what the caller may see (the list's filters narrow them): `byStage` "
        "(every stage, 0 included), `active` (not finished), `stale`, `usersWaiting` "
        "(users with jobs waiting for a Suno call slot; for a user 0 or 1)."
    ),
    "POST /api/music-clips/jobs/cancel": (
        "The list's filters in the body (at least one), `dryRun`, `reason`. A dry run "
        "answers how many unfinished jobs match; a real run cancels them one by one "
        "through the service (each its own `JobCancelled`), at most 1,000 a call, with "
        "`more: true` when more matched; a job that finished meanwhile is `skipped`."
    ),
    "GET /api/music-clips/events": (
        "Server-Sent Events of every change to a job the caller may see, for live "
        "tables: `event: job`, `id: <jobId>:<version>`, `data:` the GET body. The list's "
        "filters narrow it (`stale` aside). `event: resync` means changes may have been "
        "missed (the database reconnected): list again. On PostgreSQL it follows the jobs "
        "of every process."
    ),
}


async def _seed_flow(rec: Recorder) -> None:
    async with running_api() as api:
        tpl_job = "/api/music-clips/jobs/{jobId}"

        async def run_once(
            title: str, channel: str = "channel_xyz", *, on: Api = api, **request: Any
        ) -> tuple[int, Any, dict[str, str]]:
            """A recorded POST runOnce to ``on`` (another API for the answers only it gives)."""
            return await rec.call(
                on,
                title,
                "POST",
                f"/api/music-clips/channels/{channel}/runOnce",
                template="/api/music-clips/channels/{channelId}/runOnce",
                **request,
            )

        rec.section("POST /api/music-clips/channels/{channelId}/runOnce")
        _, accepted, _ = await run_once(
            "202 Accepted", headers={"x-user-id": "alice"}, json_body={"userId": "alice"}
        )
        job_id = accepted["jobId"]
        # Later jobs are younger: the first one stays first in the send queue.
        await api.clock.advance(0.001)
        await run_once("409 JOB_ALREADY_RUNNING — the channel has a running job")
        await run_once(
            "400 INVALID_REQUEST — a field of the wrong type",
            "other",
            json_body={"prompt": "sea", "instrumental": "yes"},
        )
        await run_once("401 UNAUTHORIZED — no token", token=None)
        await run_once("403 FORBIDDEN — x-user-id is another user", headers={"x-user-id": "bob"})
        keyed = {"Idempotency-Key": "click-42"}
        await run_once(
            "202 Accepted — with an Idempotency-Key (a retry gets the same job)",
            "keyed",
            headers=keyed,
            json_body={"prompt": "sea"},
        )
        await run_once(
            "422 IDEMPOTENCY_KEY_REUSED — the same key with another body",
            "keyed",
            headers=keyed,
            json_body={"prompt": "forest"},
        )
        await run_once(
            "413 PAYLOAD_TOO_LARGE — a body over 1 MiB",
            "big",
            headers={"Content-Type": "application/json"},
            raw_body="<3 MiB of JSON>",
            data=io.BytesIO(b'{"prompt":"' + b"x" * (3 << 20) + b'"}'),
        )
        async with running_api(service_config=ServiceConfig(callback_base_url=None)) as bare:
            await run_once(
                "400 CALLBACK_URL_NOT_CONFIGURED — no PUBLIC_BASE_URL (the job exists, failed)",
                on=bare,
            )
        async with running_api(suno=ScriptedSuno(credits=0)) as broke:
            await run_once(
                "402 SUNO_NO_CREDITS — the pre-flight credit check (the job exists, failed)",
                on=broke,
            )

        rec.section("GET /api/music-clips/jobs/{jobId}")
        job = f"/api/music-clips/jobs/{job_id}"
        await rec.call(api, "STAGE_10_REQUEST_ACCEPTED", "GET", job, template=tpl_job)
        await api.clock.advance(5.2)
        await api.service.send(job_id)
        await rec.call(api, "STAGE_30_SUNO_TASK_CREATED", "GET", job, template=tpl_job)
        task_id = await api.task_id(job_id)
        token = api.signer.token(job_id)
        await api.clock.advance(25.3)

        async def callback(label: str, job_token: str, status: ProviderStatus) -> None:
            """Suno's callback for the job's task, with ``job_token`` in the URL."""
            webhook = "/api/webhooks/suno/music"
            await rec.call(
                api,
                label,
                "POST",
                webhook,
                template=webhook,
                token=None,
                params={"job": job_id, "token": job_token},
                json_body=api.suno.callback(task_id, status),
            )

        rec.section("POST /api/webhooks/suno/music?job={jobId}&token={token}")
        await callback("200 — a progress callback", token, ProviderStatus.TEXT_SUCCESS)
        await callback("401 UNAUTHORIZED — a forged token", "0" * 31 + "1", ProviderStatus.SUCCESS)
        rec.text("### GET /api/music-clips/jobs/{jobId} as the job moves on")
        await rec.call(api, "STAGE_40_SUNO_PENDING", "GET", job, template=tpl_job)
        await rec.call(
            api,
            "STAGE_40_SUNO_PENDING in English",
            "GET",
            job,
            template=tpl_job,
            headers={"Accept-Language": "en"},
        )
        version = await api.version(job_id)
        await rec.call(
            api,
            "304 Not Modified — If-None-Match names the current version",
            "GET",
            job,
            template=tpl_job,
            headers={"If-None-Match": f'"{version}"'},
        )
        pending = asyncio.ensure_future(
            rec.call(
                api,
                "Long-poll — Prefer: wait=30 holds the request until the job changes",
                "GET",
                job,
                template=tpl_job,
                headers={"If-None-Match": f'"{version}"', "Prefer": "wait=30"},
            )
        )
        for _ in range(500):
            if api.store._changes.waiting:
                break
            await asyncio.sleep(0.01)
        await api.clock.advance(105.0)
        await api.service.handle_callback(
            job_id, token, api.suno.callback(task_id, ProviderStatus.SUCCESS)
        )
        await pending
        await callback("200 — a duplicate callback", token, ProviderStatus.SUCCESS)
        await rec.call(
            api,
            "404 JOB_NOT_FOUND — someone else's job (or none)",
            "GET",
            job,
            template=tpl_job,
            token=BOB_TOKEN,
        )

        rec.section("GET /api/music-clips/jobs/{jobId}/events")
        await rec.call(
            api,
            "Resuming a finished job from the version before the last",
            "GET",
            f"{job}/events",
            template="/api/music-clips/jobs/{jobId}/events",
            headers={"Last-Event-ID": str(await api.version(job_id) - 1)},
        )
        rec.section("GET /api/music-clips/jobs/{jobId}/history")
        await rec.call(
            api, "200", "GET", f"{job}/history", template="/api/music-clips/jobs/{jobId}/history"
        )
        rec.section("GET /api/music-clips/channels/{channelId}/jobs")
        await rec.call(
            api,
            "200",
            "GET",
            "/api/music-clips/channels/channel_xyz/jobs",
            template="/api/music-clips/channels/{channelId}/jobs",
            params={"limit": "5"},
        )

        other = await api.start("failing")
        await api.service.send(other)
        await api.callback(other, ProviderStatus.GENERATE_AUDIO_FAILED)
        late = await api.start("slow")
        await api.clock.advance(75)
        rec.text("### More stages")
        await rec.call(
            api,
            "Stale heartbeat — no news for 75 s",
            "GET",
            f"/api/music-clips/jobs/{late}",
            template=tpl_job,
        )
        await rec.call(
            api, "STAGE_90_FAILED", "GET", f"/api/music-clips/jobs/{other}", template=tpl_job
        )
        await api.clock.advance(600)
        await api.service.sweep(late)
        await rec.call(
            api, "STAGE_99_TIMEOUT", "GET", f"/api/music-clips/jobs/{late}", template=tpl_job
        )

        await _fleet_examples(rec, api)

        rec.text("## Operations\n\nNo token needed.")
        await rec.call(
            api,
            "GET /healthz — 200 while the process runs",
            "GET",
            "/healthz",
            template="/healthz",
            token=None,
        )
        await rec.call(
            api,
            "GET /readyz — 200 when the store answers, else 503",
            "GET",
            "/readyz",
            template="/readyz",
            token=None,
        )
        text = await _metrics_excerpt(api)
        rec.text(f"#### GET /metrics — Prometheus text (an excerpt)\n\n```text\n{text}\n```")
        await rec.call(
            api,
            "GET /api/music-clips/openapi.json — the OpenAPI 3.1 document (docs/openapi.yaml)",
            "GET",
            "/api/music-clips/openapi.json",
            template="/api/music-clips/openapi.json",
            token=None,
        )

    await _subscriptions_flow(rec)


async def _resolve(host: str) -> list[str]:
    if host != "hooks.example.org":
        raise OSError(f"{host} does not resolve")
    return ["93.184.215.14"]


async def _subscriptions_flow(rec: Recorder) -> None:
    """Subscribe a real receiver on 127.0.0.1, fail a job, let the sender try twice."""
    answers = [500, 204]

    async def receiver(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=answers.pop(0) if answers else 204)

    hook_app = web.Application()
    hook_app.router.add_post("/hook", receiver)
    runner = web.AppRunner(hook_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    hook = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"

    def setup(app: web.Application, store: InMemoryEventStore) -> None:
        add_subscriptions(app, store, allow_private=True, resolve=_resolve)

    subs = "/api/music-clips/subscriptions"
    try:
        async with running_api(setup=setup) as api:
            rec.section("Subscriptions: webhooks to other systems")
            _, created, _ = await rec.call(
                api,
                "POST — 201, the secret shown once",
                "POST",
                subs,
                template=subs,
                json_body={"url": hook, "events": ["job.succeeded", "job.failed"]},
            )
            await rec.call(
                api,
                "POST — 400 for an unknown event type, nothing stored",
                "POST",
                subs,
                template=subs,
                json_body={"url": hook, "events": ["job.done"]},
            )
            await rec.call(api, "GET — the caller's subscriptions", "GET", subs, template=subs)
            failing = await api.start("hooked")
            await api.service.send(failing)
            await api.callback(failing, ProviderStatus.GENERATE_AUDIO_FAILED)
            # Backoff under a millisecond: the retry time shows without its jitter.
            sender = WebhookSender(
                api.store,
                api.store,
                clock=api.clock,
                owner="docs",
                config=NotifyConfig(allow_private=True, backoff_s=0.0001, poll_s=0.02),
                resolve=_resolve,
            )

            async def attempts(n: int) -> None:
                while len(await api.store.attempts(subscription_id=created["id"])) < n:
                    await asyncio.sleep(0.02)

            async with sender, asyncio.timeout(10):
                await attempts(1)
                await api.clock.advance(1)  # the retry comes due
                await attempts(2)
            deliveries = f"{subs}/{{subscriptionId}}/deliveries"
            await rec.call(
                api,
                "GET …/deliveries — a 500, then delivered",
                "GET",
                f"{subs}/{created['id']}/deliveries",
                template=deliveries,
            )
            await rec.call(
                api,
                "DELETE — removed with its deliveries",
                "DELETE",
                f"{subs}/{created['id']}",
                template=f"{subs}/{{subscriptionId}}",
            )
    finally:
        await runner.cleanup()


async def _fleet_examples(rec: Recorder, api: Api) -> None:
    jobs = "/api/music-clips/jobs"
    # A job of its own second: the newest job, whatever order ties take.
    await api.clock.advance(1)
    await api.start("fleet")
    rec.section("GET /api/music-clips/jobs")
    await rec.call(
        api,
        "200 — unfinished jobs, one a page",
        "GET",
        jobs,
        template=jobs,
        params={"done": "false", "limit": "1", "lang": "en"},
    )
    await rec.call(
        api,
        "400 INVALID_REQUEST — an unknown stage",
        "GET",
        jobs,
        template=jobs,
        params={"stage": "STAGE_55_MAYBE"},
    )
    await rec.call(
        api,
        "403 FORBIDDEN — a user asking for another's jobs",
        "GET",
        jobs,
        template=jobs,
        params={"userId": "bob"},
    )
    rec.section("GET /api/music-clips/stats")
    await rec.call(api, "200", "GET", "/api/music-clips/stats", template="/api/music-clips/stats")
    rec.section("POST /api/music-clips/jobs/cancel")
    await rec.call(
        api,
        "200 — a dry run counts what would be cancelled",
        "POST",
        f"{jobs}/cancel",
        template=f"{jobs}/cancel",
        json_body={"stage": ["STAGE_20_SUNO_REQUEST_SENT"], "dryRun": True},
    )
    rec.section("GET /api/music-clips/events")


async def _metrics_excerpt(api: Api) -> str:
    response = await api.client.get("/metrics")
    keep = (
        "clipjobs_jobs_started_total",
        "clipjobs_jobs_finished_total",
        "clipjobs_callbacks_total",
        "clipjobs_active_jobs",
    )
    lines = [
        line
        for line in (await response.text()).splitlines()
        if any(line.startswith(k) or line.endswith(k) or f" {k} " in line for k in keep)
    ]
    return "\n".join(lines)


async def test_api_md_is_what_the_api_answers() -> None:
    """docs/api.md equals the examples recorded from live calls (CLIPJOBS_REGEN_DOCS=1: rewrite)."""
    rec = Recorder()
    rec.text(INTRO)
    await _seed_flow(rec)
    rendered = rec.render()
    if os.environ.get("CLIPJOBS_REGEN_DOCS") == "1":
        DOC.write_text(rendered, encoding="utf-8")
    assert DOC.exists(), "run CLIPJOBS_REGEN_DOCS=1 python -m pytest tests/http/test_api_docs.py"
    assert DOC.read_text(encoding="utf-8") == rendered, (
        "docs/api.md is stale: CLIPJOBS_REGEN_DOCS=1 python -m pytest tests/http/test_api_docs.py"
    )
