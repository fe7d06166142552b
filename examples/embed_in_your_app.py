"""Mount the clipjobs API inside your own aiohttp application.

Runs on its own: ``python examples/embed_in_your_app.py``. It builds a parent
app with a route of its own, mounts clipjobs under ``/clips`` with the
in-memory store and the scripted Suno, serves on 127.0.0.1 (a free port),
starts a job with runOnce, reads it back, and prints its stage.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from clipjobs import (
    ChannelDefaults,
    InMemoryEventStore,
    JobService,
    ServiceConfig,
    SystemClock,
    TokenAuthenticator,
    WebhookSigner,
)
from clipjobs.app.webhook import new_secret
from clipjobs.testing import ScriptedSuno
from clipjobs_aiohttp import ApiConfig, RedactedAccessLogger, create_app

TOKEN = "example-token-123"  # noqa: S105  (a demo token for a loopback server)


async def your_own_page(request: web.Request) -> web.Response:
    return web.Response(text="your app's own page")


async def main() -> None:
    async with InMemoryEventStore() as store:
        service = JobService(
            store,
            ScriptedSuno(),
            ChannelDefaults(),
            WebhookSigner(new_secret()),
            clock=SystemClock(),
            config=ServiceConfig(callback_base_url="https://clips.example"),
        )
        parent = web.Application()
        parent.router.add_get("/", your_own_page)
        parent.add_subapp(
            "/clips", create_app(service, TokenAuthenticator({TOKEN: "demo-user"}), ApiConfig())
        )

        # The access log of the runner would print webhook tokens: use the redacting one.
        runner = web.AppRunner(parent, access_log_class=RedactedAccessLogger)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        try:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with aiohttp.ClientSession(base, headers=headers) as session:
                async with session.post(
                    "/clips/api/music-clips/channels/channel_xyz/runOnce", json={"prompt": "sea"}
                ) as response:
                    accepted = await response.json()
                    print("runOnce:", response.status, accepted["jobId"])
                    location = response.headers["Location"]
                async with session.get(location) as response:
                    job = await response.json()
                    print("stage:", job["stage"])
        finally:
            await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
