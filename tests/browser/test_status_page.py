"""The start page and the status page in real headless Chromium against the whole server.

The server is real: SQLite under tmp_path, the Suno client talking HTTP to the
fake Suno, the workers sending and sweeping, the fake's callbacks coming back
over loopback. Screenshots land in test-artifacts/; with
``CLIPJOBS_UPDATE_SCREENSHOT=1`` the phone screenshot of a finished job also
replaces docs/img/status-page.png.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from _browser_harness import ARTIFACTS, ROOT, TOKEN, USER, running_stack
from playwright.async_api import Page, expect

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

WAIT_MS = 20_000
PHONE = {"width": 390, "height": 844}
JOB_URL = re.compile(r"/music-clips/jobs/(job_\d+_[a-z0-9]+)$")

#: Records every stage the page shows, so a test can tell it followed the job live.
RECORD_STAGES = """
window.__stages = [];
window.__timer = [];
function __record(id, into) {
  var el = document.getElementById(id);
  if (!el) return;
  new MutationObserver(function () {
    var s = el.textContent;
    if (into[into.length - 1] !== s) into.push(s);
  }).observe(el, { childList: true, characterData: true, subtree: true });
}
document.addEventListener("DOMContentLoaded", function () {
  __record("stage", window.__stages);
  __record("timer", window.__timer);
});
"""

#: Loads a media element's metadata and gives its duration (rejects on a load error).
LOAD_METADATA = """el => new Promise((resolve, reject) => {
  el.onloadedmetadata = () => resolve(el.duration);
  el.onerror = () => reject(new Error("media error " + (el.error && el.error.code)));
  el.preload = "metadata";
  el.load();
})"""


@contextlib.asynccontextmanager
async def opened(
    browser: Any,
    url: str,
    *,
    locale: str = "ru-RU",
    before: Callable[[Page], Awaitable[None]] | None = None,
    allow: str | None = None,
    **context: Any,
) -> AsyncIterator[Page]:
    """A fresh context and page at ``url``; fails the test on any console error or CSP report.

    ``before`` runs on the page before it loads; console lines matching ``allow`` are expected.
    """
    ctx = await browser.new_context(locale=locale, **context)
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type in ("error", "warning") and not (allow and re.search(allow, message.text)):
            problems.append(f"console {message.type}: {message.text}")

    try:
        page = await ctx.new_page()
        await page.add_init_script(RECORD_STAGES)
        page.on("console", on_console)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        if before is not None:
            await before(page)
        await page.goto(url)
        yield page
        assert problems == []
    finally:
        await ctx.close()


async def start_from_index(page: Page, channel: str) -> str:
    """Press «Запустить» on the start page; the job id the page navigated to."""
    await page.fill("#channel", channel)
    await page.click("#run")
    await page.wait_for_url(JOB_URL, timeout=WAIT_MS)
    match = JOB_URL.search(page.url)
    assert match is not None
    return match[1]


async def shot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def test_start_from_the_index_and_follow_the_job_live_to_success(
    browser: Any, tmp_path: Path
) -> None:
    """The start page starts a job, the status page follows it over SSE to success on a phone."""
    async with (
        running_stack(tmp_path, text_after_s=0.4, first_after_s=0.8, complete_after_s=1.2) as stack,
        opened(browser, stack.page("/"), viewport=PHONE, device_scale_factor=2) as page,
    ):
        # The token left the address bar for the session's storage.
        assert "#" not in page.url
        assert await page.evaluate("sessionStorage.getItem('clipjobs.token')") == TOKEN
        await expect(page.locator("#run")).to_have_text("Запустить Music Clips")
        await expect(page.locator("#token-row")).to_be_hidden()

        job_id = await start_from_index(page, "channel_browser")
        await expect(page.locator("#job-id")).to_have_text(job_id)
        await expect(page.locator("#stage")).to_have_text("STAGE_50_SUNO_SUCCESS", timeout=WAIT_MS)
        await expect(page.locator("#progress-text")).to_have_text("Музыка сгенерирована успешно!")
        await expect(page.locator("#live-mode")).to_have_text("задача завершена")
        await expect(page.locator("#timer")).to_have_text(re.compile(r"^заняло \d+:\d\d$"))
        await expect(page.locator("#stale")).to_be_hidden()
        await expect(page.locator("#error")).to_be_hidden()

        state = await stack.store.load(job_id)
        assert state is not None and state.done and state.audio_url
        assert state.channel_id == "channel_browser" and state.user_id == USER
        await expect(page.locator("#task-id")).to_have_text(str(state.task_id))
        # The audio player points at the first track as Suno reported it.
        assert await page.get_attribute("#audio", "src") == state.audio_url
        assert state.audio_url == state.tracks[0].audio_url
        await expect(page.locator("#audio")).to_be_visible()
        await expect(page.locator("#clip")).to_be_hidden()
        # The policy lets the player load it from the provider's host: it plays.
        assert await page.locator("#audio").evaluate(LOAD_METADATA) > 0

        # Followed live: the page showed the stages between the first answer and the end.
        stages = await page.evaluate("window.__stages")
        assert stages[-1] == "STAGE_50_SUNO_SUCCESS"
        assert "STAGE_40_SUNO_PENDING" in stages, stages
        assert stages == sorted(stages), stages

        # Readable on a phone: nothing wider than the screen.
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        path = await shot(page, "status-page-phone")
        if os.environ.get("CLIPJOBS_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(path, ROOT / "docs" / "img" / "status-page.png")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH")
async def test_a_rendered_clip_shows_as_a_video_next_to_the_audio(
    browser: Any, tmp_path: Path
) -> None:
    """With post-processing on, the page ends at STAGE_70 with a playable video of the clip."""
    async with (
        running_stack(
            tmp_path, clip_render=True, text_after_s=0.2, first_after_s=0.4, complete_after_s=0.6
        ) as stack,
        opened(browser, stack.page("/")) as page,
    ):
        job_id = await start_from_index(page, "channel_clip")
        await expect(page.locator("#stage")).to_have_text("STAGE_70_CLIP_READY", timeout=WAIT_MS)
        await expect(page.locator("#progress-text")).to_have_text("Клип готов!")
        state = await stack.store.load(job_id)
        assert state is not None and state.clip_url and state.audio_url
        await expect(page.locator("#clip")).to_be_visible()
        assert await page.get_attribute("#clip", "src") == state.clip_url
        assert await page.get_attribute("#audio", "src") == state.audio_url
        assert await page.locator("#clip").evaluate(LOAD_METADATA) > 0
        await shot(page, "status-page-clip")


async def test_the_timer_moves_while_the_job_runs(browser: Any, tmp_path: Path) -> None:
    """«идёт M:SS» counts up while Suno works on the task, and never counts back."""
    async with (
        running_stack(tmp_path, scenario="stuck") as stack,
        opened(browser, stack.page("/")) as page,
    ):
        await start_from_index(page, "channel_timer")
        timer = page.locator("#timer")
        await expect(timer).to_have_text(re.compile(r"^идёт \d+:\d\d$"), timeout=WAIT_MS)
        first = await timer.text_content()
        await expect(timer).not_to_have_text(first or "", timeout=WAIT_MS)
        await expect(timer).to_have_text(re.compile(r"^идёт \d+:\d\d$"))
        later = await timer.text_content()
        assert later is not None and first is not None

        def seconds(text: str) -> int:
            minutes, secs = text.split()[1].split(":")
            return int(minutes) * 60 + int(secs)

        assert seconds(later) > seconds(first)
        # Past a heartbeat refresh (every 3 s), whose whole-second answer never sets it back.
        await expect(timer).to_have_text(re.compile(r"^идёт 0:(0[5-9]|[1-5]\d)$"), timeout=WAIT_MS)
        shown = [seconds(text) for text in await page.evaluate("window.__timer")]
        assert shown == sorted(shown) and len(set(shown)) >= 4, shown
        await expect(page.locator("#live-mode")).to_have_text("обновляется в реальном времени")
        await shot(page, "status-page-running")


async def test_copy_buttons_put_the_ids_on_the_clipboard(browser: Any, tmp_path: Path) -> None:
    """«Копировать» next to jobId and sunoTaskId writes exactly that id to the clipboard."""
    async with (
        running_stack(tmp_path, scenario="stuck") as stack,
        opened(browser, stack.page("/")) as page,
    ):
        await page.context.grant_permissions(
            ["clipboard-read", "clipboard-write"], origin=stack.url
        )
        job_id = await start_from_index(page, "channel_copy")
        await page.click("#copy-job-id")
        await expect(page.locator("#copy-job-id")).to_have_text("Скопировано")
        assert await page.evaluate("navigator.clipboard.readText()") == job_id

        await expect(page.locator("#copy-task-id")).to_be_enabled(timeout=WAIT_MS)
        state = await stack.store.load(job_id)
        assert state is not None and state.task_id
        await expect(page.locator("#task-id")).to_have_text(state.task_id)
        await page.click("#copy-task-id")
        await expect(page.locator("#copy-task-id")).to_have_text("Скопировано")
        assert await page.evaluate("navigator.clipboard.readText()") == state.task_id


async def test_details_show_the_event_history(browser: Any, tmp_path: Path) -> None:
    """«Показать детали» lists every event of the log, in order, as the history API gives it."""
    async with (
        running_stack(tmp_path, text_after_s=0.2, first_after_s=0.4, complete_after_s=0.6) as stack,
        opened(browser, stack.page("/")) as page,
    ):
        job_id = await start_from_index(page, "channel_details")
        await expect(page.locator("#stage")).to_have_text("STAGE_50_SUNO_SUCCESS", timeout=WAIT_MS)
        await expect(page.locator("#details")).to_be_hidden()
        await page.click("#details-toggle")
        await expect(page.locator("#details-toggle")).to_have_text("Скрыть детали")

        records = await stack.service.history(job_id, USER)
        rows = page.locator("#history tr")
        await expect(rows).to_have_count(len(records))
        cells = await rows.evaluate_all(
            "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent))"
        )
        assert [int(c[0]) for c in cells] == [r.version for r in records]
        shown_types = [c[2] for c in cells]
        assert shown_types[0] == "JobAccepted" and shown_types[-1] == "SunoSucceeded"
        assert "SunoTaskCreated" in shown_types
        assert all(c[1].endswith("Z") for c in cells)
        await shot(page, "status-page-details")

        await page.click("#details-toggle")
        await expect(page.locator("#details")).to_be_hidden()


async def test_a_failed_job_shows_its_error_on_the_page_and_in_the_details(
    browser: Any, tmp_path: Path
) -> None:
    """When Suno fails the task, the page stops at STAGE_90 with the error and its code."""
    async with (
        running_stack(tmp_path, scenario="generate-failed", text_after_s=0.2) as stack,
        opened(browser, stack.page("/")) as page,
    ):
        job_id = await start_from_index(page, "channel_failed")
        await expect(page.locator("#stage")).to_have_text("STAGE_90_FAILED", timeout=WAIT_MS)
        state = await stack.store.load(job_id)
        assert state is not None and state.error_code
        await expect(page.locator("#error")).to_be_visible()
        await expect(page.locator("#error")).to_contain_text(f"[{state.error_code}]")
        await expect(page.locator("#progress-text")).to_have_text("Ошибка при генерации")
        await expect(page.locator("#result")).to_be_hidden()
        await page.click("#details-toggle")
        await expect(page.locator("#details-error")).to_contain_text(state.error_code)
        await expect(page.locator("#history tr").last).to_contain_text("JobFailed")
        await shot(page, "status-page-failed")


async def test_without_sse_the_page_polls_every_3_s_to_the_end(
    browser: Any, tmp_path: Path
) -> None:
    """When the event stream cannot be opened, the page falls back to polling GET and still ends."""
    stream_attempts: list[str] = []

    async def refuse_events(page: Page) -> None:
        async def refuse(route: Any) -> None:
            stream_attempts.append(route.request.url)
            await route.abort()

        await page.route(re.compile(r"/api/music-clips/jobs/[^/]+/events$"), refuse)

    async with (
        running_stack(tmp_path, text_after_s=0.2, first_after_s=0.4, complete_after_s=3.0) as stack,
        opened(
            browser, stack.page("/"), before=refuse_events, allow="Failed to load resource"
        ) as page,
    ):
        job_id = await start_from_index(page, "channel_polling")
        await expect(page.locator("#live-mode")).to_have_text(
            "обновление каждые 3 с", timeout=WAIT_MS
        )
        await expect(page.locator("#stage")).to_have_text("STAGE_50_SUNO_SUCCESS", timeout=WAIT_MS)
        await expect(page.locator("#live-mode")).to_have_text("задача завершена")
        # One try and one retry of the stream, then polling only.
        assert len(stream_attempts) == 2
        assert all(job_id in url for url in stream_attempts)
        state = await stack.store.load(job_id)
        assert state is not None
        assert await page.get_attribute("#audio", "src") == state.audio_url


async def test_a_stale_warning_appears_when_suno_goes_silent(browser: Any, tmp_path: Path) -> None:
    """A task Suno never reports on (no callbacks, no polling) is flagged stale on the page."""
    async with (
        running_stack(tmp_path, scenario="stuck", stale_after_s=1.0) as stack,
        opened(browser, stack.page("/")) as page,
    ):
        job_id = await start_from_index(page, "channel_stale")
        stale = page.locator("#stale")
        await expect(stale).to_be_visible(timeout=WAIT_MS)
        await expect(stale).to_contain_text("Нет вестей от задачи")
        # The page says what the API says.
        state = await stack.store.load(job_id)
        assert state is not None and not state.done
        heartbeat = state.heartbeat(stack.service.clock.now(), 1.0)
        assert heartbeat.is_stale
        await expect(page.locator("#timer")).to_have_text(re.compile(r"^идёт "))
        await shot(page, "status-page-stale")


async def test_english_when_the_browser_asks_for_it(browser: Any, tmp_path: Path) -> None:
    """Under locale en-US both pages and the server's progress texts are in English."""
    async with (
        running_stack(tmp_path, text_after_s=0.2, first_after_s=0.4, complete_after_s=0.6) as stack,
        opened(browser, stack.page("/"), locale="en-US") as page,
    ):
        await expect(page.locator("#run")).to_have_text("Run Music Clips")
        assert await page.evaluate("document.documentElement.lang") == "en"
        await start_from_index(page, "channel_en")
        await expect(page.locator("#stage")).to_have_text("STAGE_50_SUNO_SUCCESS", timeout=WAIT_MS)
        await expect(page.locator("#progress-text")).to_have_text("Music generated successfully!")
        await expect(page.locator("#timer")).to_have_text(re.compile(r"^took \d+:\d\d$"))
        await expect(page.locator("#details-toggle")).to_have_text("Show details")
        await expect(page.locator("#copy-job-id")).to_have_text("Copy")
        await shot(page, "status-page-en")


@pytest.mark.parametrize(
    ("locale", "button"),
    [
        ("ru-RU", "Запустить Music Clips"),
        ("de-DE", "Запустить Music Clips"),
        ("en-GB", "Run Music Clips"),
    ],
)
async def test_russian_unless_english_is_asked_for(
    browser: Any, tmp_path: Path, locale: str, button: str
) -> None:
    """Russian is the default; any English locale switches the page to English."""
    async with (
        running_stack(tmp_path) as stack,
        opened(browser, stack.page("/"), locale=locale) as page,
    ):
        await expect(page.locator("#run")).to_have_text(button)


async def test_the_pages_work_when_the_api_is_mounted_under_a_prefix(
    browser: Any, tmp_path: Path
) -> None:
    """Mounted at /clips, the pages find their assets and the API through relative URLs."""
    async with (
        running_stack(
            tmp_path, prefix="/clips", text_after_s=0.2, first_after_s=0.4, complete_after_s=0.6
        ) as stack,
        opened(browser, stack.page("/")) as page,
    ):
        assert page.url.endswith("/clips/")
        job_id = await start_from_index(page, "channel_mounted")
        assert page.url.endswith(f"/clips/music-clips/jobs/{job_id}")
        await expect(page.locator("#stage")).to_have_text("STAGE_50_SUNO_SUCCESS", timeout=WAIT_MS)
        # The stylesheet applied: the card is styled, not the browser's default.
        radius = await page.locator("#job").evaluate("e => getComputedStyle(e).borderRadius")
        assert radius == "12px"
        await page.click("#again")
        await page.wait_for_url(re.compile(r"/clips/$"))


async def test_without_a_token_the_page_says_how_to_get_one(browser: Any, tmp_path: Path) -> None:
    """Opened without a token, the status page explains; the start page asks for one."""
    async with running_stack(tmp_path) as stack:
        job_page = stack.page("/music-clips/jobs/job_1767225600000_abcdef", token=None)
        async with opened(browser, job_page) as page:
            await expect(page.locator("#error")).to_contain_text("Нужен токен доступа")
        async with opened(browser, stack.page("/", token=None)) as page:
            await expect(page.locator("#token-row")).to_be_visible()
            await page.fill("#token", TOKEN)
            job_id = await start_from_index(page, "channel_typed_token")
            await expect(page.locator("#task-id")).not_to_have_text("—", timeout=WAIT_MS)
            state = await stack.store.load(job_id)
            assert state is not None and state.user_id == USER


async def test_an_unknown_job_is_reported_as_not_found(browser: Any, tmp_path: Path) -> None:
    """A job id nobody (or someone else) started shows «Задача не найдена», not a blank page."""
    async with (
        running_stack(tmp_path) as stack,
        opened(
            browser,
            stack.page("/music-clips/jobs/job_1767225600000_abcdef"),
            allow="Failed to load resource.*404",
        ) as page,
    ):
        await expect(page.locator("#error")).to_have_text("Задача не найдена")
        await expect(page.locator("#stage")).to_have_text("…")
