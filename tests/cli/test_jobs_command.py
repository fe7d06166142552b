"""``clipjobs jobs`` (SPEC 10.3) against a real ``clipjobs serve`` with an admin token."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_client import OTHER_TOKEN, TOKEN, Server, _serving, clipjobs

ADMIN_TOKEN = "cli-admin-token-01"


@pytest.fixture(scope="module")
def fleet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with _serving(
        tmp_path_factory.mktemp("fleet"), CLIPJOBS_ADMIN_TOKENS=f"{ADMIN_TOKEN}=root"
    ) as running:
        yield running


def _env(server: Server, token: str) -> dict[str, str]:
    return {**server.env, "CLIPJOBS_URL": server.url, "CLIPJOBS_TOKEN": token}


def test_jobs_lists_what_the_token_may_see(fleet_server: Server) -> None:
    """A user lists their jobs; an admin everyone's, as a table or one JSON line per job."""
    alice = clipjobs("run", "--channel", "fleet-a", "--json", env=_env(fleet_server, TOKEN))
    bob = clipjobs("run", "--channel", "fleet-b", "--json", env=_env(fleet_server, OTHER_TOKEN))
    assert alice.code == 0 and bob.code == 0, (alice.err, bob.err)
    alice_id, bob_id = alice.views[0]["jobId"], bob.views[0]["jobId"]

    mine = clipjobs("jobs", "--json", env=_env(fleet_server, TOKEN))
    assert mine.code == 0, mine.err
    assert [v["jobId"] for v in mine.views] == [alice_id]
    everyone = clipjobs("jobs", "--json", env=_env(fleet_server, ADMIN_TOKEN))
    assert {v["jobId"] for v in everyone.views} == {alice_id, bob_id}
    assert {v["userId"] for v in everyone.views} == {"alice", "bob"}

    table = clipjobs(
        "jobs", "--lang", "en", "--channel", "fleet-b", env=_env(fleet_server, ADMIN_TOKEN)
    )
    assert table.code == 0, table.err
    header, *rows = table.out.splitlines()
    assert header.split()[:3] == ["JOB", "STAGE", "AGE"]
    assert len(rows) == 1 and rows[0].startswith(bob_id) and "bob" in rows[0]

    limited = clipjobs("jobs", "--json", "--limit", "1", env=_env(fleet_server, ADMIN_TOKEN))
    assert len(limited.views) == 1
    none = clipjobs("jobs", "--lang", "en", "--stale", env=_env(fleet_server, TOKEN))
    assert (none.code, none.out) == (0, "no jobs match\n")
    staged = clipjobs(
        "jobs",
        "--json",
        "--stage",
        "90",
        "--stage",
        "STAGE_99_TIMEOUT",
        env=_env(fleet_server, TOKEN),
    )
    assert staged.code == 0 and all(
        v["stage"] in ("STAGE_90_FAILED", "STAGE_99_TIMEOUT") for v in staged.views
    )


@pytest.mark.parametrize(
    "args",
    [("--limit", "0"), ("--limit", "10000"), ("--stage", "STAGE_55_NOPE")],
)
def test_bad_options_are_usage_errors(fleet_server: Server, args: tuple[str, ...]) -> None:
    """A limit out of 1–200 or an unknown stage exits 2 before asking the server."""
    result = clipjobs("jobs", *args, env=_env(fleet_server, TOKEN))
    assert result.code == 2 and result.err


def test_a_user_naming_another_user_is_refused(fleet_server: Server) -> None:
    """--user someone else with a user token: the server's 403, exit 4, its code in --json."""
    result = clipjobs("jobs", "--json", "--user", "bob", env=_env(fleet_server, TOKEN))
    assert result.code == 4
    assert json.loads(result.out.splitlines()[-1])["error"] == "FORBIDDEN"


def test_docs_name_every_option_of_clipjobs_jobs() -> None:
    """docs/cli.md describes clipjobs jobs and each of its options."""
    import re

    doc = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert "clipjobs jobs" in doc
    help_text = clipjobs("jobs", "--help", env={}).out
    for option in set(re.findall(r"--[a-z][a-z-]+", help_text)) - {"--help"}:
        assert option in doc, f"{option} of clipjobs jobs is not in docs/cli.md"
