"""The fleet page (/music-clips/admin) in headless Chromium against a real server on SQLite.

Filters change the URL (and a URL brings its filters back), a job created while
the page is open appears live, a job quiet for longer than a short
``stale_after_s`` is marked, bulk cancel shows the matched count and asks
first, and the page speaks English when the browser asks for it. With
``CLIPJOBS_UPDATE_SCREENSHOT=1`` a screenshot replaces docs/img/admin-page.png.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from _browser_harness import ARTIFACTS, ROOT
from aiohttp.test_utils import TestServer
from attrs import define
from playwright.async_api import Page, expect

from _backends import scripted_service
from clipjobs import (
    JobState,
    SystemClock,
    TokenAuthenticator,
)
from clipjobs.domain.commands import FailJob
from clipjobs.testing import new_job, step
from clipjobs_aiohttp import ApiConfig, create_app
from clipjobs_sqlite import SQLiteEventStore

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

WAIT_MS = 15_000
ADMIN = "admin-page-token-01"
ALICE = "alice-page-token-01"


@define
class Site:
    url: str
    store: SQLiteEventStore

    def page(self, query: str = "", token: str = ADMIN) -> str:
        return f"{self.url}/music-clips/admin{query}#token={token}"

    async def add(
        self, user: str, channel: str, *, failed: bool = False, ago_s: float = 0
    ) -> JobState:
        at = datetime.now(UTC) - timedelta(seconds=ago_s)
        commit = new_job(at=at, user_id=user, channel_id=channel)
        await self.store.append(commit)
        state = commit.state
        if failed:
            c = step(state, FailJob("SUNO_REJECTED", "Suno refused the prompt", at))
            await self.store.append(c)
            state = c.state
        return state


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, *, stale_after_s: float = 60.0) -> AsyncIterator[Site]:
    async with SQLiteEventStore(tmp_path / "admin.db", synchronous="NORMAL") as store:
        app = create_app(
            scripted_service(store, SystemClock()),
            TokenAuthenticator({ALICE: "alice"}, {ADMIN: "root"}),
            ApiConfig(stale_after_s=stale_after_s, sse_keepalive_s=1.0),
        )
        server = TestServer(app, host="127.0.0.1", port=0)
        await server.start_server()
        try:
            yield Site(str(server.make_url("")).rstrip("/"), store)
        finally:
            await server.close()


@contextlib.asynccontextmanager
async def opened(browser: Any, url: str, *, locale: str = "ru-RU") -> AsyncIterator[Page]:
    """A fresh context at ``url``; fails the test on any console error or page error."""
    ctx = await browser.new_context(locale=locale, viewport={"width": 1100, "height": 700})
    problems: list[str] = []
    try:
        page = await ctx.new_page()
        page.on(
            "console",
            lambda m: problems.append(m.text) if m.type in ("error", "warning") else None,
        )
        page.on("pageerror", lambda e: problems.append(str(e)))
        await page.goto(url)
        yield page
        assert problems == []
    finally:
        await ctx.close()


def _row(page: Page, job: JobState) -> Any:
    return page.locator(f'tr[data-job-id="{job.job_id}"]')


async def test_filters_change_the_url_and_a_url_brings_them_back(
    browser: Any, tmp_path: Path
) -> None:
    """Ticking a stage and typing a channel put them in the query string; opening that
    URL shows the same filtered table, the token still in the fragment only.
    """
    async with serving(tmp_path) as site:
        news = await site.add("alice", "news")
        sport = await site.add("bob", "sport")
        failed = await site.add("bob", "news", failed=True)
        async with opened(browser, site.page()) as page:
            for job in (news, sport, failed):
                await expect(_row(page, job)).to_be_visible(timeout=WAIT_MS)
            assert "token" not in page.url
            await page.check('#stages input[value="STAGE_10_REQUEST_ACCEPTED"]')
            await expect(page).to_have_url(re.compile(r"stage=STAGE_10_REQUEST_ACCEPTED"))
            await expect(_row(page, failed)).to_have_count(0, timeout=WAIT_MS)
            await page.fill("#f-channel", "news")
            await page.press("#f-channel", "Enter")
            await expect(page).to_have_url(re.compile(r"channelId=news"))
            await expect(_row(page, sport)).to_have_count(0, timeout=WAIT_MS)
            await expect(_row(page, news)).to_be_visible()
            shared = page.url
        async with opened(browser, shared + f"#token={ADMIN}") as page:
            await expect(_row(page, news)).to_be_visible(timeout=WAIT_MS)
            await expect(page.locator("#f-channel")).to_have_value("news")
            stage10 = page.locator('#stages input[value="STAGE_10_REQUEST_ACCEPTED"]')
            await expect(stage10).to_be_checked()
            await expect(page.locator("#jobs tr")).to_have_count(1)


async def test_a_new_job_appears_live_with_the_counts(browser: Any, tmp_path: Path) -> None:
    """A job created while the page is open shows in the table and the counts, no reload."""
    async with serving(tmp_path) as site:
        first = await site.add("alice", "news")
        async with opened(browser, site.page()) as page:
            await expect(_row(page, first)).to_be_visible(timeout=WAIT_MS)
            await expect(page.locator("body[data-live]")).to_have_count(1, timeout=WAIT_MS)
            await expect(page.locator("#count-active b")).to_have_text("1", timeout=WAIT_MS)
            later = await site.add("bob", "sport")
            row = _row(page, later)
            await expect(row).to_be_visible(timeout=WAIT_MS)
            await expect(row.locator("td.user")).to_have_text("bob")
            await expect(page.locator("#jobs tr").first).to_have_attribute(
                "data-job-id", later.job_id
            )
            await expect(page.locator("#count-active b")).to_have_text("2", timeout=WAIT_MS)
            link = row.locator("td.stage a")
            assert (await link.get_attribute("href") or "").endswith(
                f"/music-clips/jobs/{later.job_id}"
            )


async def test_a_quiet_job_is_marked_stale(browser: Any, tmp_path: Path) -> None:
    """With a short stale_after_s a running job that stays quiet is marked; a finished one never."""
    async with serving(tmp_path, stale_after_s=1.0) as site:
        quiet = await site.add("alice", "news")
        done = await site.add("alice", "sport", failed=True)
        async with opened(browser, site.page()) as page:
            await expect(_row(page, quiet)).to_have_class(re.compile(r"\bstale\b"), timeout=WAIT_MS)
            await expect(_row(page, quiet).locator("td.beat")).to_contain_text("завис")
            await expect(_row(page, done)).not_to_have_class(re.compile(r"\bstale\b"))
            await expect(_row(page, done).locator("td.err")).to_have_text("Suno refused the prompt")
            ARTIFACTS.mkdir(exist_ok=True)
            path = ARTIFACTS / "admin-page.png"
            await page.screenshot(path=str(path), full_page=True)
            if os.environ.get("CLIPJOBS_UPDATE_SCREENSHOT") == "1":
                target = ROOT / "docs" / "img" / "admin-page.png"
                target.parent.mkdir(exist_ok=True)
                shutil.copyfile(path, target)


async def test_bulk_cancel_shows_the_matched_count_and_asks_first(
    browser: Any, tmp_path: Path
) -> None:
    """The matched count comes from a dry run and is shown in the confirmation; declining
    changes nothing. A user's page counts only their own jobs.
    """
    async with serving(tmp_path) as site:
        jobs = [await site.add("alice", "news"), await site.add("alice", "news")]
        await site.add("bob", "news")
        async with opened(browser, site.page("?channelId=news", token=ALICE)) as page:
            await expect(_row(page, jobs[0])).to_be_visible(timeout=WAIT_MS)
            asked: list[str] = []

            async def decline(dialog: Any) -> None:
                asked.append(dialog.message)
                await dialog.dismiss()

            page.on("dialog", decline)
            await page.click("#bulk-cancel")
            await expect(page.locator("#bulk-result")).to_have_attribute(
                "data-matched", "2", timeout=WAIT_MS
            )
            assert asked and "2" in asked[0]
        for job in jobs:
            stored = await site.store.load(job.job_id)
            assert stored is not None and stored.version == job.version


async def test_english_when_the_browser_asks_for_it(browser: Any, tmp_path: Path) -> None:
    """Russian by default; English texts when the browser's language is English."""
    async with serving(tmp_path) as site:
        await site.add("alice", "news")
        async with opened(browser, site.page()) as page:
            await expect(page.locator("h1")).to_have_text("Все задачи")
        async with opened(browser, site.page(), locale="en-US") as page:
            await expect(page.locator("h1")).to_have_text("All jobs")
            await expect(page.locator("html")).to_have_attribute("lang", "en")
