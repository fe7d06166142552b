"""The benchmarks still run: `bench/run.py --quick` end to end, figures present, no thresholds."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "run.py"),
            "--quick",
            "--only",
            "fold,sqlite,http,load,watchers",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    record = json.loads((out / "latest.json").read_text())
    return done.stdout, record, (out / "latest.md").read_text()


def figures_of(quick_run: tuple[str, dict[str, Any], str], bench: str) -> dict[str, Any]:
    """The figures one bench of the quick run wrote with ``--json``."""
    figures: dict[str, Any] = quick_run[1]["benches"][bench]["figures"]
    return figures


@pytest.mark.slow
def test_quick_run_records_the_machine_and_every_bench(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    """One command runs the five benches and records each with the machine's description."""
    _, record, md = quick_run
    assert record["quick"] is True
    machine = record["machine"]
    assert machine["cpus"] >= 1 and machine["python"] and "aiohttp" in machine["packages"]
    assert set(record["benches"]) == {"fold", "sqlite", "http", "load", "watchers"}
    for name, bench in record["benches"].items():
        assert bench["exit_code"] == 0, (name, bench["errors"])
        assert f"## {name}" in md
    assert "the former >= 100x goal is retired" in record["benches"]["fold"]["output"]
    assert "shared Machine" in record["benches"]["fold"]["output"]
    assert "appends/s" in record["benches"]["sqlite"]["output"]
    sqlite = figures_of(quick_run, "sqlite")
    assert sqlite["appends"]["clipjobs_appends_per_s"] > 0 and sqlite["loads"]["load_5_per_s"] > 0


@pytest.mark.slow
def test_http_bench_measures_get_run_once_and_progress(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    """The HTTP bench reports GET vs the bare handler, 5 vs 500 events, runOnce and SSE latency."""
    figures = figures_of(quick_run, "http")
    get = figures["get"]
    assert get["bare_rps"] > 0 and get["clipjobs_rps"] > 0
    assert get["ratio"] == pytest.approx(get["ratios"][0])
    assert get["body_bytes"] > 500  # a real job body with two tracks was copied
    assert figures["get_length"]["short_rps"] > 0 and figures["get_length"]["long_rps"] > 0
    assert figures["run_once"]["requests"] > 0 and figures["run_once"]["p99_ms"] > 0
    progress = figures["progress"]
    # Each SSE job got its "first" and "complete" callbacks, each seen once.
    assert progress["samples"] == 2 * figures["sizes"]["sse_jobs"]
    assert 0 < progress["p50_ms"] <= progress["p99_ms"]
    output = quick_run[1]["benches"]["http"]["output"]
    for label in ("bare aiohttp handler", "GET job, 64 connections", "runOnce", "SSE client"):
        assert label in output


@pytest.mark.slow
def test_load_bench_measures_latency_memory_budget_and_restart(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    """The load bench reports GET latency, server RSS, Suno calls on both sides, and restart."""
    figures = figures_of(quick_run, "load")
    load = figures["load"]
    assert load["get"]["requests"] > 0 and load["get"]["errors"] == 0
    assert set(load["get"]["statuses"]) == {"200"}
    assert 10 < load["rss_mb"]["peak"] < 24 * 1024
    suno = load["suno"]
    # The poller worked: it spent budget on polls, and the fake saw those calls.
    assert suno["budget_started"]["POLL"] > 0 and suno["fake_calls"] > 0
    assert suno["limit"] == 20 and suno["budget_peak"] >= 1 and suno["fake_peak"] >= 1
    fast = figures["restart_fast"]
    assert fast["all_resumed_s"] is not None  # every job got a new event after the restart
    assert fast["curve"][-1][1] == fast["jobs"]
    assert figures["restart_default"]["resumed_within_5s"] > 0


@pytest.mark.slow
def test_watchers_bench_measures_sse_and_polling_watchers(
    quick_run: tuple[str, dict[str, Any], str],
) -> None:
    """The watchers bench reports, for SSE and for polling, append -> seen latency, server CPU
    per change seen and server memory, every update accounted for (seen or counted unseen).
    """
    figures = figures_of(quick_run, "watchers")
    for mode in ("poll", "sse"):
        side = figures[mode]
        (run,) = side["runs"]
        assert run["watchers"] == figures["sizes"]["watchers"]
        assert run["updates_posted"] > 0 and run["changes_seen"] > 0
        assert run["posted_to_seen_ms"]["count"] == run["updates_posted"]
        assert 0 < side["appended_to_seen_ms"]["p50"] <= side["appended_to_seen_ms"]["p99"]
        assert side["server_cpu_ms_per_change_seen"] > 0
        assert side["server_rss_mb"]["peak"] >= side["server_rss_mb"]["after_seeding"] > 10
    assert figures["ratios"]["p99_sooner"] > 0


def test_a_request_answered_after_the_window_counts_as_late() -> None:
    """The load generator keeps a request still running when the window ends: it counts in the
    latencies (late, or unfinished after the drain), never dropped.
    """
    from _loadgen import run

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def handler(_request: web.Request) -> web.Response:
            if loop.time() - started > 0.2:  # the end of the window: stall
                await asyncio.sleep(0.6)
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        try:
            spec = {"url": url, "connections": 1, "duration_s": 0.4, "paths": ["/"]}
            drained = await run(spec)
            started = loop.time()
            cut = await run({**spec, "drain_s": 0.05})
        finally:
            await runner.cleanup()
        return drained, cut

    drained, cut = asyncio.run(main())
    # The stalled request outlived the window: late (answered in the drain), its latency kept.
    assert drained["late"] == 1 and drained["unfinished"] == 0
    assert drained["latency_ms"]["max"] >= 500
    # With too short a drain it is unfinished, still counted, with the latency it had.
    assert cut["unfinished"] == 1 and cut["late"] == 0
    assert cut["requests"] == cut["statuses"]["200"] + 1
