"""The fleet API (SPEC 10.3) on a real SQLite file and a real PostgreSQL schema.

Lists, counts, the live feed and bulk cancel: every filter alone and
combined, keyset pages over 1,000 jobs while more arrive, users who never see
others' jobs, admins who see all, and bad input that changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from _fleet_harness import ALICE, BOB, ROOT, T0, Fleet, auth, open_store, running_fleet
from aiohttp import ClientResponse

from _backends import BACKENDS
from clipjobs import EventStore, JobState, Stage

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EventStore]:
    async with open_store(request.param, tmp_path) as opened:
        yield opened


@pytest_asyncio.fixture
async def fleet(store: EventStore) -> AsyncIterator[Fleet]:
    async with running_fleet(store) as running:
        yield running


def _strip(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("requestId", "userId")}


async def _jobs_by_name(fleet: Fleet) -> dict[str, JobState]:
    now = fleet.clock.now()
    return {
        "a1": await fleet.add("alice", channel="ch-x", at=T0),
        "a2": await fleet.add("alice", channel="ch-y", at=T0 + timedelta(minutes=1), stage="sent"),
        "a3": await fleet.add(
            "alice", channel="ch-x", at=T0 + timedelta(minutes=2), stage="failed"
        ),
        "a4": await fleet.add("alice", channel="ch-z", at=now),
        "b1": await fleet.add("bob", channel="ch-x", at=T0 + timedelta(minutes=3)),
    }


async def test_every_filter_alone_and_combined(fleet: Fleet) -> None:
    """Each filter, alone and combined, selects exactly its jobs, newest first."""
    j = await _jobs_by_name(fleet)
    ids = {name: s.job_id for name, s in j.items()}

    def named(*names: str) -> list[str]:
        return [ids[n] for n in names]

    stage10, stage90 = "STAGE_10_REQUEST_ACCEPTED", "STAGE_90_FAILED"
    after, before = (T0 + timedelta(minutes=1)).isoformat(), (T0 + timedelta(minutes=2)).isoformat()
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({}, named("a4", "b1", "a3", "a2", "a1")),
        ({"stage": stage10}, named("a4", "b1", "a1")),
        ({"stage": [stage10, stage90]}, named("a4", "b1", "a3", "a1")),
        ({"channelId": "ch-x"}, named("b1", "a3", "a1")),
        ({"userId": "bob"}, named("b1")),
        ({"stale": "true"}, named("b1", "a2", "a1")),
        ({"done": "true"}, named("a3")),
        ({"done": "false"}, named("a4", "b1", "a2", "a1")),
        ({"createdAfter": after}, named("a4", "b1", "a3", "a2")),
        ({"createdBefore": before}, named("a2", "a1")),
        ({"createdAfter": after, "createdBefore": before}, named("a2")),
        ({"stage": stage10, "channelId": "ch-x", "userId": "alice"}, named("a1")),
        ({"stale": "true", "userId": "alice", "createdAfter": after}, named("a2")),
        ({"done": "false", "channelId": "ch-x"}, named("b1", "a1")),
    ]
    for params, want in cases:
        query = [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]
        response = await fleet.client.get("/api/music-clips/jobs", headers=auth(ROOT), params=query)
        body = await response.json()
        assert response.status == 200, body
        assert [x["jobId"] for x in body["jobs"]] == want, params
        assert body["nextCursor"] is None and body["ok"] is True
    # Each item is the job's GET body.
    _, body = await fleet.jobs(userId="bob")
    single = await fleet.client.get(f"/api/music-clips/jobs/{ids['b1']}", headers=auth(BOB))
    assert _strip(body["jobs"][0]) == _strip(await single.json())


async def test_users_see_only_their_own_jobs_and_admins_all(fleet: Fleet) -> None:
    """A user's list and counts hold only their jobs, whatever they filter; admins see all."""
    j = await _jobs_by_name(fleet)
    alice = {s.job_id for n, s in j.items() if n.startswith("a")}
    assert set(await fleet.ids(ALICE)) == alice
    assert set(await fleet.ids(ALICE, channelId="ch-x")) == {j["a1"].job_id, j["a3"].job_id}
    assert set(await fleet.ids(ALICE, userId="alice")) == alice
    assert await fleet.ids(BOB) == [j["b1"].job_id]
    assert set(await fleet.ids(ROOT)) == {s.job_id for s in j.values()}
    status, body = await fleet.jobs(ALICE, userId="bob")
    assert status == 403 and body["error"] == "FORBIDDEN" and body["field"] == "userId"
    # An admin reads any job by id; a user still cannot read another's.
    response = await fleet.client.get(f"/api/music-clips/jobs/{j['a1'].job_id}", headers=auth(ROOT))
    assert response.status == 200 and (await response.json())["jobId"] == j["a1"].job_id
    response = await fleet.client.get(f"/api/music-clips/jobs/{j['a1'].job_id}", headers=auth(BOB))
    assert response.status == 404
    history = await fleet.client.get(
        f"/api/music-clips/jobs/{j['a3'].job_id}/history", headers=auth(ROOT)
    )
    assert history.status == 200 and len((await history.json())["events"]) == 3


async def test_stats_count_what_the_caller_may_see(fleet: Fleet) -> None:
    """byStage, active and stale count the caller's jobs, or everyone's for an admin."""
    await _jobs_by_name(fleet)
    status, body = await fleet.get("/api/music-clips/stats", ROOT)
    assert status == 200, body
    assert body["byStage"]["STAGE_10_REQUEST_ACCEPTED"] == 3
    assert body["byStage"]["STAGE_20_SUNO_REQUEST_SENT"] == 1
    assert body["byStage"]["STAGE_90_FAILED"] == 1
    assert body["byStage"]["STAGE_70_CLIP_READY"] == 0
    assert (body["active"], body["stale"]) == (4, 3)
    assert body["usersWaiting"] == 2  # alice and bob have jobs waiting to be sent
    status, body = await fleet.get("/api/music-clips/stats", BOB)
    assert body["byStage"]["STAGE_10_REQUEST_ACCEPTED"] == 1
    assert (body["active"], body["stale"], body["usersWaiting"]) == (1, 1, 1)
    assert sum(body["byStage"].values()) == 1
    status, body = await fleet.get("/api/music-clips/stats", ALICE, channelId="ch-x")
    assert sum(body["byStage"].values()) == 2 and body["active"] == 1
    status, body = await fleet.get("/api/music-clips/stats", BOB, userId="alice")
    assert status == 403


async def test_pages_over_1000_jobs_have_no_gaps_or_duplicates_while_jobs_arrive(
    fleet: Fleet,
) -> None:
    """Cursor pages over 1,000 jobs (some created at the same instant) while new jobs
    keep arriving: every old job exactly once, in order; the new ones on no page.
    """
    users = ("alice", "bob", "carol")
    created: list[JobState] = []
    for chunk in range(10):
        batch = [
            fleet.add(users[i % 3], at=T0 + timedelta(seconds=(chunk * 100 + i) // 2))
            for i in range(100)
        ]
        created.extend(await asyncio.gather(*batch))
    want = [s.job_id for s in sorted(created, key=lambda s: (s.created_at, s.job_id), reverse=True)]
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "73", **({"cursor": cursor} if cursor else {})}
        status, body = await fleet.jobs(ROOT, **params)
        assert status == 200, body
        seen.extend(j["jobId"] for j in body["jobs"])
        pages += 1
        await fleet.add("dave", at=fleet.clock.now() + timedelta(seconds=pages))
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 1000
    assert seen == want
    assert pages == 14
    # A user's pages hold only their jobs.
    bob: list[str] = []
    cursor = None
    while True:
        status, body = await fleet.jobs(BOB, limit="50", **({"cursor": cursor} if cursor else {}))
        bob.extend(j["jobId"] for j in body["jobs"])
        cursor = body["nextCursor"]
        if cursor is None:
            break
    assert bob == [s for s in want if s in {c.job_id for c in created if c.user_id == "bob"}]


async def _stored(store: EventStore, ids: Sequence[str]) -> list[int]:
    return [(await store.load(i)).version for i in ids]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"stage": "STAGE_11_NOPE"}, 400, "stage"),
        ({"stage": ""}, 400, "stage"),
        ({"createdAfter": "yesterday"}, 400, "createdAfter"),
        ({"createdAfter": "2026-06-01T12:00:00"}, 400, "createdAfter"),
        ({"createdBefore": "2026-13-01T00:00:00Z"}, 400, "createdBefore"),
        (
            {"createdAfter": "2026-06-02T00:00:00Z", "createdBefore": "2026-06-01T00:00:00Z"},
            400,
            "createdAfter",
        ),
        ({"limit": "0"}, 400, "limit"),
        ({"limit": "10000"}, 400, "limit"),
        ({"limit": "201"}, 400, "limit"),
        ({"limit": "-1"}, 400, "limit"),
        ({"limit": "ten"}, 400, "limit"),
        ({"cursor": "bm90IGEgY3Vyc29y.0000000000000000000000000000000"}, 400, "cursor"),
        ({"cursor": "garbage"}, 400, "cursor"),
        ({"cursor": "é.é"}, 400, "cursor"),
        ({"stale": "false"}, 400, "stale"),
        ({"done": "maybe"}, 400, "done"),
        ({"stages": "STAGE_90_FAILED"}, 400, "stages"),
        ({"userId": "alice"}, 403, "userId"),
    ],
)
async def test_bad_list_input_gets_a_clear_error(
    fleet: Fleet, params: dict[str, str], status: int, field: str
) -> None:
    """Unknown stages, bad dates, out-of-range limits, forged cursors, a user asking for
    someone else's jobs: a clear 400/403 naming the field.
    """
    await fleet.add("alice")
    got, body = await fleet.jobs(BOB, **params)
    assert got == status, body
    assert body["ok"] is False and body["field"] == field
    assert body["error"] == ("FORBIDDEN" if status == 403 else "INVALID_REQUEST")
    assert body["message"]


async def test_a_tampered_cursor_is_refused(fleet: Fleet) -> None:
    """A cursor edited to jump elsewhere (same shape, other key) is refused with 400."""
    for i in range(3):
        await fleet.add("alice", at=T0 + timedelta(seconds=i))
    _, body = await fleet.jobs(ROOT, limit="1")
    cursor = body["nextCursor"]
    payload, _, signature = cursor.partition(".")
    import base64

    forged_key = base64.urlsafe_b64encode(b'["2030-01-01T00:00:00+00:00","job_x"]').decode()
    flipped = signature[:-1] + ("1" if signature[-1] == "0" else "0")
    for bad in (f"{forged_key.rstrip('=')}.{signature}", f"{payload}.{flipped}"):
        got, answer = await fleet.jobs(ROOT, cursor=bad)
        assert got == 400 and answer["field"] == "cursor", answer
    got, answer = await fleet.jobs(ROOT, cursor=cursor, limit="1")
    assert got == 200 and len(answer["jobs"]) == 1


async def _cancel(fleet: Fleet, token: str, body: Any) -> tuple[int, dict[str, Any]]:
    response = await fleet.client.post(
        "/api/music-clips/jobs/cancel", headers=auth(token), data=json.dumps(body)
    )
    return response.status, await response.json()


async def test_bulk_cancel_dry_run_counts_what_the_caller_may_see(fleet: Fleet) -> None:
    """dryRun answers the matched count: undone jobs only, the caller's own unless an admin."""
    j = await _jobs_by_name(fleet)
    before = await _stored(fleet.store, [s.job_id for s in j.values()])
    assert (await _cancel(fleet, ROOT, {"channelId": "ch-x", "dryRun": True}))[1]["matched"] == 2
    status, body = await _cancel(fleet, ALICE, {"channelId": "ch-x", "dryRun": True})
    assert status == 200 and body["matched"] == 1 and body["more"] is False
    status, body = await _cancel(
        fleet, BOB, {"stage": ["STAGE_10_REQUEST_ACCEPTED"], "dryRun": True}
    )
    assert body["matched"] == 1
    status, body = await _cancel(fleet, ALICE, {"done": True, "dryRun": True})
    assert body["matched"] == 0
    status, body = await _cancel(fleet, BOB, {"userId": "alice", "dryRun": True})
    assert status == 403
    assert await _stored(fleet.store, [s.job_id for s in j.values()]) == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"dryRun": True},
        {"stage": "STAGE_11_NOPE", "dryRun": True},
        {"stage": [1], "dryRun": True},
        {"channelId": "ch-x", "dryRun": "yes"},
        {"channelId": "ch-x", "jobIds": ["x"]},
        {"channelId": "ch-x", "reason": 5},
        {"createdAfter": "soon"},
        [],
        "cancel",
    ],
)
async def test_bad_bulk_cancel_input_changes_nothing(fleet: Fleet, body: Any) -> None:
    """A bulk cancel with no filter, an unknown field or a bad value: 400, nothing changes."""
    j = await _jobs_by_name(fleet)
    before = await _stored(fleet.store, [s.job_id for s in j.values()])
    status, answer = await _cancel(fleet, ROOT, body)
    assert status == 400 and answer["error"] == "INVALID_REQUEST", answer
    assert await _stored(fleet.store, [s.job_id for s in j.values()]) == before


async def test_bulk_cancel_goes_job_by_job_and_is_bounded(store: EventStore) -> None:
    """A real run cancels each matched job through the service (each its own
    ``JobCancelled``, by the caller), at most 1,000 a call, and says when more matched; a
    user's run touches only their jobs.
    """
    async with running_fleet(store) as fleet:
        mine = await asyncio.gather(*(fleet.add("alice", channel="bulk") for _ in range(1003)))
        bobs = await fleet.add("bob", channel="bulk")
        status, body = await _cancel(fleet, ALICE, {"channelId": "bulk", "dryRun": True})
        assert body["matched"] == 1003 and body["more"] is True
        status, body = await _cancel(fleet, ALICE, {"channelId": "bulk", "reason": "bad night"})
        assert status == 200, body
        assert (body["cancelled"], body["more"]) == (1000, True)
        status, body = await _cancel(fleet, ALICE, {"channelId": "bulk"})
        assert (body["cancelled"], body["more"]) == (3, False)
        for state in mine:
            after = await store.load(state.job_id)
            assert after is not None and after.stage is Stage.CANCELLED
            assert after.cancelled_by == "alice"
        assert (await store.load(bobs.job_id)).done is False  # type: ignore[union-attr]
        status, body = await _cancel(fleet, ROOT, {"channelId": "bulk", "dryRun": True})
        assert body["matched"] == 1


async def _sse_events(response: ClientResponse, count: int) -> list[dict[str, Any]]:
    """The first ``count`` ``job`` events' data."""
    events: list[dict[str, Any]] = []
    kind = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind == "job":
            events.append(json.loads(line[6:]))
            if len(events) == count:
                break
    return events


async def _until_seen(response: ClientResponse, ids: set[str]) -> None:
    """Read ``job`` events until each of ``ids`` came; fail on any other job."""
    seen: set[str] = set()
    while seen != ids:
        (event,) = await _sse_events(response, 1)
        assert event["jobId"] in ids
        seen.add(event["jobId"])


@contextlib.asynccontextmanager
async def _stream(fleet: Fleet, token: str, **params: str) -> AsyncIterator[ClientResponse]:
    response = await fleet.client.get("/api/music-clips/events", headers=auth(token), params=params)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    # The retry line comes first: the feed is open once it arrived.
    assert (await response.content.readline()).startswith(b"retry:")
    try:
        yield response
    finally:
        response.close()


async def test_fleet_events_show_every_change_the_caller_may_see(fleet: Fleet) -> None:
    """The admin's stream carries every user's changes; a user's only their own."""
    async with _stream(fleet, ROOT) as root, _stream(fleet, BOB) as bob:
        b = await fleet.add("bob", channel="live")
        a = await fleet.add("alice", channel="live", stage="failed")
        b2 = await fleet.add("bob", channel="other")
        await asyncio.wait_for(_until_seen(root, {b.job_id, a.job_id, b2.job_id}), 10)
        mine = await asyncio.wait_for(_sse_events(bob, 2), 10)
        assert [e["jobId"] for e in mine] == [b.job_id, b2.job_id]
        assert all(e["channelId"] for e in mine)
    async with _stream(fleet, ROOT, channelId="live") as live:
        c = await fleet.add("carol", channel="elsewhere")
        d = await fleet.add("dave", channel="live")
        got = await asyncio.wait_for(_sse_events(live, 1), 10)
        assert [e["jobId"] for e in got] == [d.job_id] and c.job_id != d.job_id
