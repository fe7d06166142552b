"""The status page's «Отменить», «Повторить» and «Пересобрать клип» in headless Chromium,
against the whole server (the harness of ``test_status_page``)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from _browser_harness import USER, running_stack
from playwright.async_api import expect
from test_status_page import JOB_URL, WAIT_MS, opened, start_from_index

from clipjobs import (
    Commit,
    GenerationParams,
    JobAccepted,
    JobFailed,
    JobPolicy,
    Source,
    SunoSucceeded,
    fold,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]


async def test_cancel_with_confirmation_then_retry_follows_the_new_job(
    browser: Any, tmp_path: Path
) -> None:
    async with (
        running_stack(tmp_path, scenario="stuck") as stack,
        opened(browser, stack.page("/")) as page,
    ):
        parent = await start_from_index(page, "channel_cancel")
        cancel = page.locator("#cancel")
        await expect(cancel).to_be_visible(timeout=WAIT_MS)
        await expect(cancel).to_have_text("Отменить")
        await expect(page.locator("#retry")).to_be_hidden()

        # Declined: nothing happens.
        page.once("dialog", lambda dialog: dialog.dismiss())
        await cancel.click()
        await expect(cancel).to_be_enabled()
        state = await stack.store.load(parent)
        assert state is not None and not state.done

        page.once("dialog", lambda dialog: dialog.accept())
        await cancel.click()
        await expect(page.locator("#stage")).to_have_text("STAGE_98_CANCELLED", timeout=WAIT_MS)
        await expect(page.locator("#progress-text")).to_have_text("Отменено")
        await expect(cancel).to_be_hidden()
        retry = page.locator("#retry")
        await expect(retry).to_be_visible()
        await expect(retry).to_have_text("Повторить")
        await expect(page.locator("#rerender")).to_be_hidden()

        await retry.click()
        await page.wait_for_url(JOB_URL, timeout=WAIT_MS)
        await expect(page.locator("#job-id")).not_to_have_text(parent)
        child = await page.locator("#job-id").text_content()
        assert child is not None and child != parent
        await expect(page.locator("#cancel")).to_be_visible(timeout=WAIT_MS)
        state = await stack.store.load(child)
        assert state is not None and state.retry_of == parent
        parent_state = await stack.store.load(parent)
        assert parent_state is not None and parent_state.retried_by == child


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not on PATH")
async def test_rerender_a_failed_clip_follows_the_new_job_to_the_video(
    browser: Any, tmp_path: Path
) -> None:
    """A job whose clip failed but whose song exists offers «Пересобрать клип»: the new job
    reuses the song and ends with a video; Suno is not asked again."""
    async with running_stack(
        tmp_path, clip_render=True, text_after_s=0.2, first_after_s=0.4, complete_after_s=0.6
    ) as stack:
        async with opened(browser, stack.page("/")) as page:
            made = await start_from_index(page, "channel_song")
            await expect(page.locator("#stage")).to_have_text(
                "STAGE_70_CLIP_READY", timeout=WAIT_MS
            )
        song = await stack.store.load(made)
        assert song is not None and song.tracks
        # A job with that song whose render failed (as after an ffmpeg crash).
        at = song.updated_at
        events = (
            JobAccepted(
                job_id="job_1700000000000_failedclip",
                channel_id="channel_failed",
                user_id=USER,
                request_id="req_1700000000000_failedclip",
                params=GenerationParams(prompt="A calm piano piece"),
                at=at,
                policy=JobPolicy(clip_render=True),
            ),
            SunoSucceeded(Source.CALLBACK, song.tracks, at),
            JobFailed("CLIP_RENDER_FAILED", "ffmpeg exited 1", at),
        )
        failed = fold(events)
        await stack.store.append(Commit(failed.job_id, 0, events, failed))
        generated = len(stack.fake.tasks())

        async with opened(browser, stack.page(f"/music-clips/jobs/{failed.job_id}")) as page:
            rerender = page.locator("#rerender")
            await expect(rerender).to_be_visible(timeout=WAIT_MS)
            await expect(rerender).to_have_text("Пересобрать клип")
            await expect(page.locator("#retry")).to_be_visible()
            await rerender.click()
            await page.wait_for_url(JOB_URL, timeout=WAIT_MS)
            await expect(page.locator("#stage")).to_have_text(
                "STAGE_70_CLIP_READY", timeout=WAIT_MS
            )
            await expect(page.locator("#clip")).to_be_visible()
            child = await page.locator("#job-id").text_content()
        state = await stack.store.load(str(child))
        assert state is not None and state.retry_of == failed.job_id and state.clip_url
        assert len(stack.fake.tasks()) == generated  # no Suno task for the re-render
