"""``clipjobs cancel`` and ``clipjobs retry`` against a real ``clipjobs serve`` and fake Suno
(the harness of ``test_client``: both run as their own processes)."""

from __future__ import annotations

import pytest
from test_client import Server, _channel, _job_id, clipjobs, scenario, server

__all__ = ["scenario", "server"]  # the shared fixtures


@pytest.mark.parametrize("scenario", ["no-callback"], indirect=True)
def test_cancel_a_running_job_then_again_then_watch(server: Server, scenario: str) -> None:
    run = clipjobs("run", "--channel", _channel(), "--json", env=server.client_env())
    job_id = run.views[0]["jobId"]
    result = clipjobs("cancel", job_id, "--reason", "wrong prompt", env=server.client_env())
    assert result.code == 0, result
    assert "STAGE_98_CANCELLED" in result.out
    again = clipjobs("cancel", job_id, "--json", env=server.client_env())
    assert again.code == 0 and again.views[-1]["stage"] == "STAGE_98_CANCELLED"
    watched = clipjobs("watch", job_id, "--json", env=server.client_env())
    assert watched.code == 1 and watched.views[-1]["errorCode"] == "JOB_CANCELLED"
    other = clipjobs("cancel", job_id, "--json", env=server.client_env(token="cli-other-token"))
    assert other.code == 4 and other.views[-1]["error"] == "JOB_NOT_FOUND"


def test_cancel_a_finished_job_exits_4(server: Server) -> None:
    run = clipjobs("run", "--channel", _channel(), "--watch", env=server.client_env())
    assert run.code == 0, run
    result = clipjobs("cancel", _job_id(run), env=server.client_env())
    assert result.code == 4, result
    assert "409 JOB_ALREADY_FINISHED" in result.err and "Traceback" not in result.err


def test_retry_after_a_failure_watches_the_new_job_to_success(server: Server) -> None:
    with server.fake_scenario("generate-failed"):
        run = clipjobs("run", "--channel", _channel(), "--watch", "--json", env=server.client_env())
    assert run.code == 1
    parent = run.views[-1]["jobId"]
    result = clipjobs("retry", parent, "--watch", "--json", env=server.client_env())
    assert result.code == 0, result
    assert result.views[-1]["retryOf"] == parent
    assert result.views[-1]["stage"] == "STAGE_50_SUNO_SUCCESS"
    # The parent is done and retried; a succeeded job cannot be retried (exit 4).
    child = result.views[-1]["jobId"]
    refused = clipjobs("retry", child, env=server.client_env())
    assert refused.code == 4 and "409 JOB_NOT_RETRYABLE" in refused.err
    usage = clipjobs("retry", parent, "--from", "middle", env=server.client_env())
    assert usage.code == 2
