"""The status page plays the server's kept copy of the song (SPEC 10.4) in real Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect
from test_status_page import WAIT_MS, opened

from clipjobs.app.config import Settings
from clipjobs_cli import running_server

pytestmark = [pytest.mark.asyncio, pytest.mark.browser]

TOKEN = "kept-page-token-1"

#: Resolves once the audio element can play (rejects on a load error).
CAN_PLAY = """el => new Promise((resolve, reject) => {
  if (el.readyState >= 3) return resolve(el.currentSrc);
  el.oncanplay = () => resolve(el.currentSrc);
  el.onerror = () => reject(new Error("media error " + (el.error && el.error.code)));
  el.preload = "auto";
  el.load();
})"""


async def test_the_status_page_plays_the_kept_copy_of_the_song(
    browser: Any, tmp_path: Path
) -> None:
    """Once the song is kept the page's <audio> plays storedAudioUrl (a signed /media/kept/ URL
    without a bearer header) and Chromium reaches ``canplay`` on it.
    """
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / 'clipjobs.db'}",
        port=0,
        tokens={TOKEN: "alice"},
        media_dir=tmp_path / "media",
    )
    async with running_server(settings) as server:
        assert server.fake_suno is not None
        server.fake_suno.configure(text_after_s=0.1, first_after_s=0.2, complete_after_s=0.3)
        async with opened(browser, f"{server.url}/#token={TOKEN}") as page:
            await page.fill("#channel", "kept_page")
            await page.click("#run")
            await expect(page.locator("#stage")).to_have_text(
                "STAGE_50_SUNO_SUCCESS", timeout=WAIT_MS
            )
            audio = page.locator("#audio")
            await expect(audio).to_have_attribute("src", _kept(), timeout=WAIT_MS)
            src = await audio.get_attribute("src")
            assert src is not None and "sig=" in src
            played = await audio.evaluate(CAN_PLAY)
            assert "/media/kept/" in played


def _kept() -> Any:
    import re

    return re.compile(r"^/media/kept/[0-9a-f]{64}\.mp3\?exp=\d+&sig=[0-9a-f]{64}$")
