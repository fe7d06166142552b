"""``clipjobs run``, ``watch`` and ``history`` as people run them, against a real server.

Every server here is ``clipjobs serve`` in its own process, on SQLite under
tmp_path, talking to ``clipjobs fake-suno`` (another process, a real HTTP
server) that calls it back on loopback. One server and fake per scenario
family, shared by the module; the fake's scenario is switched between tests
through its ``/_fake/config`` endpoint (a task keeps the scenario it was
created under).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from attrs import define

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-test-token"
OTHER_TOKEN = "cli-other-token"
API_KEY = "cli-test-suno-key"
#: How long any one client command may run before the test calls it hung.
COMMAND_LIMIT_S = 60.0
#: Fast fake Suno: text, first and complete callbacks this many seconds after generate.
FAST = ("--text-after-s", "0.3", "--first-after-s", "0.7", "--complete-after-s", "1.2")


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without any clipjobs/Suno settings or locale, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLIPJOBS_", "SUNO_", "PUBLIC_BASE_URL", "LC_", "LANG"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _default_sigint() -> None:
    # A shell running the suite in the background ignores SIGINT, and children inherit that.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@define
class Process:
    """A long-running ``python -m clipjobs_cli …`` whose stdout is read up to a marker line."""

    proc: subprocess.Popen[str]
    lines: list[str]

    @classmethod
    def start(cls, args: list[str], env: Mapping[str, str], log: Path, marker: str) -> Process:
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "clipjobs_cli", *args],
                env=dict(env),
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                preexec_fn=_default_sigint,
            )
        process = cls(proc, [])
        assert proc.stdout is not None
        for line in proc.stdout:  # the servers print a handful of lines, then only log to stderr
            process.lines.append(line.rstrip("\n"))
            if marker in line:
                return process
        process.stop()
        raise RuntimeError(f"{args[0]} exited early:\n{process.lines}\n{log.read_text()}")

    def url_after(self, marker: str) -> str:
        line = next(line for line in self.lines if marker in line)
        return line.split(marker, 1)[1].strip()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@define
class Server:
    """A ``clipjobs serve`` and the fake Suno it uses."""

    url: str
    fake_url: str
    env: dict[str, str]

    def client_env(self, token: str | None = TOKEN, **extra: str) -> dict[str, str]:
        env = _clean_env(CLIPJOBS_URL=self.url, **extra)
        if token is not None:
            env["CLIPJOBS_TOKEN"] = token
        return env

    def configure_fake(self, **changes: Any) -> None:
        request = urllib.request.Request(
            f"{self.fake_url}/_fake/config",
            data=json.dumps(changes).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200

    @contextlib.contextmanager
    def fake_scenario(self, name: str) -> Iterator[None]:
        """Jobs started in the block get the fake's ``name`` scenario; ``success`` after it."""
        self.configure_fake(scenario=name)
        try:
            yield
        finally:
            self.configure_fake(scenario="success")


@contextlib.contextmanager
def _fake_suno(tmp: Path, args: tuple[str, ...]) -> Iterator[str]:
    """``clipjobs fake-suno ARGS`` on a free port: its base URL."""
    index = len(list(tmp.glob("fake-*.err")))
    fake = Process.start(
        ["fake-suno", "--port", "0", "--api-key", API_KEY, *args],
        _clean_env(),
        tmp / f"fake-{index}.err",
        "fake Suno listening on ",
    )
    try:
        yield fake.url_after("fake Suno listening on ")
    finally:
        fake.stop()


def _serve_env(tmp: Path, fake_url: str, port: int, **settings: str) -> dict[str, str]:
    """``clipjobs serve`` on ``port`` with its own SQLite file, using the fake at ``fake_url``."""
    return _clean_env(
        CLIPJOBS_DB=f"sqlite:///{tmp / 'clipjobs.db'}",
        CLIPJOBS_PORT=str(port),
        CLIPJOBS_TOKENS=f"{TOKEN}=alice,{OTHER_TOKEN}=bob",
        CLIPJOBS_MEDIA_DIR=str(tmp / "media"),
        SUNO_API_KEY=API_KEY,
        SUNO_BASE_URL=fake_url,
        # Chosen before start so Suno's callbacks can name it.
        PUBLIC_BASE_URL=f"http://127.0.0.1:{port}",
        **settings,
    )


@contextlib.contextmanager
def _serve_process(env: Mapping[str, str], tmp: Path) -> Iterator[str]:
    """``clipjobs serve`` until the block ends (SIGTERM): its URL."""
    index = len(list(tmp.glob("serve-*.err")))
    server = Process.start(["serve"], env, tmp / f"serve-{index}.err", "listening on ")
    try:
        yield server.url_after("listening on ")
    finally:
        server.stop()


@contextlib.contextmanager
def _serving(tmp: Path, fake_args: tuple[str, ...] = FAST, **settings: str) -> Iterator[Server]:
    """A fake Suno and ``clipjobs serve`` wired to it, both stopped when the block ends."""
    with _fake_suno(tmp, fake_args) as fake_url:
        env = _serve_env(tmp, fake_url, _free_port(), **settings)
        with _serve_process(env, tmp) as url:
            yield Server(url, fake_url, env)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server: fast fake Suno, the default job timeout."""
    with _serving(tmp_path_factory.mktemp("main")) as running:
        yield running


@pytest.fixture
def scenario(server: Server, request: pytest.FixtureRequest) -> Iterator[str]:
    """The fake's scenario for jobs started in this test (``success`` unless parametrized)."""
    name = getattr(request, "param", "success")
    with server.fake_scenario(name):
        yield name


@define
class Result:
    code: int
    out: str
    err: str

    @property
    def views(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


def clipjobs(*args: str, env: Mapping[str, str]) -> Result:
    """Run ``python -m clipjobs_cli ARGS`` to the end, stdout not a terminal."""
    done = subprocess.run(
        [sys.executable, "-m", "clipjobs_cli", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=COMMAND_LIMIT_S,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def _job_id(result: Result) -> str:
    match = re.search(r"job_\d+_[a-z0-9]+", result.out)
    assert match, result.out
    return match.group(0)


_counter = iter(range(1, 10_000))


def _channel() -> str:
    """A channel no other test used (one running job per channel is the server's rule)."""
    return f"cli-{next(_counter)}"


def _stuck_job(server: Server) -> str:
    """The id of a job started under the ``stuck`` scenario: Suno never finishes it.

    The fake picks a task's scenario when the generate call arrives, which the workers make
    after runOnce has answered: the scenario stays until the job has its task.
    """
    with server.fake_scenario("stuck"):
        started = clipjobs("run", "--channel", _channel(), "--json", env=server.client_env())
        job_id = str(started.views[0]["jobId"])
        request = urllib.request.Request(
            f"{server.url}/api/music-clips/jobs/{job_id}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        for _ in range(300):
            with urllib.request.urlopen(request, timeout=10) as answer:
                if json.load(answer).get("sunoTaskId"):
                    break
            time.sleep(0.1)
        else:
            raise AssertionError(f"job {job_id} got no Suno task in 30 s")
    return job_id


# --- success -------------------------------------------------------------------------------


def test_run_watch_succeeds_with_plain_lines_and_the_audio_url(
    server: Server, scenario: str
) -> None:
    """run --watch into a pipe: job id and page, a plain line per change, the audio URL, exit 0."""
    result = clipjobs("run", "--channel", _channel(), "--watch", env=server.client_env())
    assert result.code == 0, result
    job_id = _job_id(result)
    assert f"{server.url}/music-clips/jobs/{job_id}" in result.out
    assert "\r" not in result.out and "\x1b" not in result.out
    lines = result.out.splitlines()
    stage_lines = [line for line in lines if line.startswith("[")]
    stages = [line.split()[1] for line in stage_lines]
    assert stages[-1] == "STAGE_50_SUNO_SUCCESS"
    assert "STAGE_40_SUNO_PENDING" in stages
    assert stages == sorted(stages), "stages never go down"
    assert all(re.match(r"\[\d+:\d\d\] STAGE_\d\d_", line) for line in stage_lines)
    audio = [line for line in lines if line.startswith("audio: ")]
    assert len(audio) == 1
    assert re.fullmatch(
        rf"audio: {re.escape(server.fake_url)}/files/[0-9a-f]{{32}}/1\.mp3", audio[0]
    )
    assert result.err == ""


def test_run_watch_json_prints_each_view_and_ends_with_the_final_one(
    server: Server, scenario: str
) -> None:
    """run --watch --json: every stdout line is a job view, versions rise, the last one is done."""
    result = clipjobs("run", "--channel", _channel(), "--watch", "--json", env=server.client_env())
    assert result.code == 0, result
    views = result.views
    assert len(views) >= 2
    versions = [v["version"] for v in views]
    assert versions == sorted(set(versions))
    assert {v["jobId"] for v in views} == {views[0]["jobId"]}
    final = views[-1]
    assert final["done"] is True and final["stage"] == "STAGE_50_SUNO_SUCCESS"
    assert final["audioUrl"].startswith(server.fake_url)
    assert all(not v["done"] for v in views[:-1])


def test_run_without_watch_returns_at_once_and_watch_follows_later(
    server: Server, scenario: str
) -> None:
    """run alone prints the 202 body (--json), exit 0; watch JOB_ID then follows it to the end."""
    started = clipjobs("run", "--channel", _channel(), "--json", env=server.client_env())
    assert started.code == 0, started
    (body,) = started.views
    assert body["stage"] == "STAGE_10_REQUEST_ACCEPTED" and body["jobId"].startswith("job_")

    watched = clipjobs("watch", body["jobId"], "--lang", "en", env=server.client_env())
    assert watched.code == 0, watched
    assert "STAGE_50_SUNO_SUCCESS in " in watched.out
    assert "Music generated successfully!" in watched.out
    # Watching a finished job again is instant and ends the same way.
    again = clipjobs("watch", body["jobId"], "--json", env=server.client_env())
    assert again.code == 0 and again.views[-1]["stage"] == "STAGE_50_SUNO_SUCCESS"


def test_history_lists_contiguous_versions_with_the_stage_after_each(
    server: Server, scenario: str
) -> None:
    """history: a table of versions 1..N with times, types and the stage each event led to."""
    run = clipjobs("run", "--channel", _channel(), "--watch", "--json", env=server.client_env())
    assert run.code == 0, run
    final = run.views[-1]
    job_id = final["jobId"]

    as_json = clipjobs("history", job_id, "--json", env=server.client_env())
    assert as_json.code == 0, as_json
    (body,) = as_json.views
    events = body["events"]
    assert [e["version"] for e in events] == list(range(1, len(events) + 1))
    assert len(events) >= final["version"]
    assert events[0]["type"] == "JobAccepted"
    assert events[0]["stageAfter"] == "STAGE_10_REQUEST_ACCEPTED"
    assert events[final["version"] - 1]["stageAfter"] == "STAGE_50_SUNO_SUCCESS"

    table = clipjobs("history", job_id, "--lang", "en", env=server.client_env())
    assert table.code == 0, table
    header, *rows = table.out.splitlines()
    assert header.split()[:4] == ["version", "time", "(UTC)", "event"]
    assert [int(row.split()[0]) for row in rows] == list(range(1, len(events) + 1))
    for row, event in zip(rows, events, strict=True):
        _, at, type_, stage = row.split()[:4]
        assert (at, type_, stage) == (event["at"], event["type"], event["stageAfter"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", at)


def test_english_and_russian_texts_follow_lang(server: Server, scenario: str) -> None:
    """--lang picks the server's texts (Accept-Language); LANG=ru_RU sets the default."""
    run = clipjobs("run", "--channel", _channel(), "--watch", "--json", env=server.client_env())
    job_id = run.views[-1]["jobId"]
    en = clipjobs("watch", job_id, "--lang", "en", env=server.client_env(LANG="ru_RU.UTF-8"))
    ru = clipjobs("watch", job_id, env=server.client_env(LANG="ru_RU.UTF-8"))
    assert "Music generated successfully!" in en.out and "audio: " in en.out
    assert "Музыка сгенерирована успешно!" in ru.out and "аудио: " in ru.out


# --- failure -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "code"),
    [("generate-failed", "GENERATE_AUDIO_FAILED"), ("sensitive-word", "SENSITIVE_WORD_ERROR")],
    indirect=["scenario"],
)
def test_a_failed_job_exits_1_with_its_error(server: Server, scenario: str, code: str) -> None:
    """Suno fails the task: run --watch ends at STAGE_90 with the error and its code, exit 1."""
    result = clipjobs("run", "--channel", _channel(), "--watch", env=server.client_env())
    assert result.code == 1, result
    assert "STAGE_90_FAILED" in result.out
    final = clipjobs("watch", _job_id(result), "--json", env=server.client_env())
    assert final.code == 1
    view = final.views[-1]
    assert view["stage"] == "STAGE_90_FAILED" and view["errorCode"] == code
    error_line = next(line for line in result.out.splitlines() if line.startswith("error: "))
    assert error_line == f"error: {view['error']} ({code})"
    assert "audio: " not in result.out


def test_history_of_a_failed_job_exits_1(server: Server) -> None:
    """history exits like the job ended: 1 for a failed job, its last row STAGE_90."""
    with server.fake_scenario("generate-failed"):
        run = clipjobs("run", "--channel", _channel(), "--watch", "--json", env=server.client_env())
    result = clipjobs("history", run.views[-1]["jobId"], env=server.client_env())
    assert result.code == 1, result
    assert "JobFailed" in result.out
    assert result.out.splitlines()[-1].split()[3] == "STAGE_90_FAILED"


# --- refusals and usage ----------------------------------------------------------------------


def test_unknown_job_exits_4_with_the_servers_code(server: Server) -> None:
    """watch and history of a job that does not exist: JOB_NOT_FOUND on stderr, exit 4."""
    for command in ("watch", "history"):
        result = clipjobs(command, "job_1767225600000_nosuch", env=server.client_env())
        assert result.code == 4, result
        assert "404 JOB_NOT_FOUND" in result.err
        assert "Traceback" not in result.err


def test_someone_elses_job_is_not_found(server: Server, scenario: str) -> None:
    """A job is its owner's: bob's token gets 404 (exit 4) for alice's job, --json says so too."""
    run = clipjobs("run", "--channel", _channel(), "--json", env=server.client_env())
    job_id = run.views[0]["jobId"]
    result = clipjobs("watch", job_id, "--json", env=server.client_env(token=OTHER_TOKEN))
    assert result.code == 4
    (body,) = result.views
    assert body["error"] == "JOB_NOT_FOUND" and body["ok"] is False


def test_no_token_is_a_usage_error(server: Server) -> None:
    """Without CLIPJOBS_TOKEN or --token every client command exits 2 with one clear line."""
    for args in (("run", "--channel", "x"), ("watch", "job_1_abcdef"), ("history", "job_1_abcdef")):
        result = clipjobs(*args, env=server.client_env(token=None))
        assert result.code == 2, result
        assert result.err.startswith(
            "clipjobs: error: no token: set CLIPJOBS_TOKEN or pass --token"
        )
        assert len(result.err.splitlines()) == 1 and result.out == ""


def test_a_wrong_token_is_refused_with_exit_4(server: Server) -> None:
    """A token the server does not know: 401 UNAUTHORIZED printed, exit 4, nothing started."""
    result = clipjobs("run", "--channel", _channel(), env=server.client_env(token="not-a-token"))
    assert result.code == 4
    assert "HTTP 401 UNAUTHORIZED" in result.err
    assert result.out == ""


def test_token_and_url_options_override_the_environment(server: Server, scenario: str) -> None:
    """--url and --token win over CLIPJOBS_URL/CLIPJOBS_TOKEN."""
    env = _clean_env(CLIPJOBS_URL="http://127.0.0.1:9", CLIPJOBS_TOKEN="wrong-token")
    result = clipjobs(
        "run", "--channel", _channel(), "--url", server.url, "--token", TOKEN, "--watch", env=env
    )
    assert result.code == 0, result


def test_a_bad_url_is_a_usage_error() -> None:
    """CLIPJOBS_URL that is not http(s) stops the command before any request: exit 2."""
    result = clipjobs(
        "watch", "job_1_abcdef", env=_clean_env(CLIPJOBS_URL="ftp://x", CLIPJOBS_TOKEN="t")
    )
    assert result.code == 2
    assert "must be an http(s):// URL" in result.err


def test_an_unreachable_server_exits_4(tmp_path: Path) -> None:
    """Nobody listening: one line naming the URL, exit 4, and --json says UNREACHABLE."""
    url = f"http://127.0.0.1:{_free_port()}"
    env = _clean_env(CLIPJOBS_URL=url, CLIPJOBS_TOKEN=TOKEN)
    for args in (
        ("run", "--channel", "c", "--watch"),
        ("watch", "job_1_abcdef"),
        ("history", "job_1_abcdef"),
    ):
        result = clipjobs(*args, env=env)
        assert result.code == 4, result
        assert result.err.startswith(f"clipjobs: error: cannot reach clipjobs at {url}")
    as_json = clipjobs("watch", "job_1_abcdef", "--json", env=env)
    assert as_json.code == 4 and as_json.views[-1]["error"] == "UNREACHABLE"


def test_a_second_run_on_a_busy_channel_is_refused_with_the_running_job(server: Server) -> None:
    """409 JOB_ALREADY_RUNNING: exit 4 and the running job's id printed; the retry with the
    same Idempotency-Key gets the same job instead."""
    with server.fake_scenario("stuck"):
        channel = _channel()
        keyed = ("run", "--channel", channel, "--idempotency-key", "k1", "--json")
        first = clipjobs(*keyed, env=server.client_env())
        assert first.code == 0, first
        job_id = first.views[0]["jobId"]
        retry = clipjobs(*keyed, env=server.client_env())
        assert retry.code == 0 and retry.views[0]["jobId"] == job_id
        second = clipjobs("run", "--channel", channel, env=server.client_env())
    assert second.code == 4, second
    assert "HTTP 409 JOB_ALREADY_RUNNING" in second.err and job_id in second.err


# --- following: timeouts, terminals, Ctrl-C ------------------------------------------------------


def test_watch_timeout_gives_up_with_exit_3_and_the_job_keeps_running(server: Server) -> None:
    """--timeout passes before the job ends: exit 3, a line saying it is still running."""
    job_id = _stuck_job(server)
    result = clipjobs("watch", job_id, "--timeout", "1", "--json", env=server.client_env())
    assert result.code == 3, result
    assert result.views and not result.views[-1]["done"]
    assert f"gave up after --timeout 1 s; job {job_id} is still STAGE_" in result.err


def _on_a_terminal(*args: str, env: Mapping[str, str]) -> tuple[int, str, str]:
    """Run ``python -m clipjobs_cli ARGS`` with stdout a pseudo-terminal: code, output, stderr."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipjobs_cli", *args],
        env={**env, "COLUMNS": "300", "TERM": "xterm"},
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    chunks = []
    with contextlib.suppress(OSError):  # EIO once the child closed the terminal
        while True:
            ready, _, _ = select.select([master], [], [], COMMAND_LIMIT_S)
            assert ready, "the client hung"
            chunk = os.read(master, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(master)
    code = proc.wait(COMMAND_LIMIT_S)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return code, b"".join(chunks).decode(), err


def test_on_a_terminal_one_line_is_rewritten_in_place(server: Server, scenario: str) -> None:
    """stdout a TTY: the live line is redrawn with \\r and erase, with stage, timer and heartbeat;
    the result follows on clean lines."""
    code, output, err = _on_a_terminal(
        "run", "--channel", _channel(), "--watch", "--lang", "en", env=server.client_env()
    )
    assert code == 0, (output, err)
    frames = output.split("\r\x1b[2K")
    live = [f for f in frames[1:-1] if f]
    assert live, output
    assert all("\n" not in f for f in live), "the live line never scrolls"
    assert any(
        re.search(r"\[40\] SUNO_PENDING · .* · elapsed \d+:\d\d · heartbeat \d+ s ago", f)
        for f in live
    )
    assert "STAGE_50_SUNO_SUCCESS in " in frames[-1]
    assert "audio: " in frames[-1]


def test_a_silent_job_is_marked_stale_on_the_terminal(server: Server) -> None:
    """No sign of life for --stale-after seconds: the live line says STALE; --timeout then ends
    the watch with exit 3 and leaves the last state on screen."""
    job_id = _stuck_job(server)
    code, output, err = _on_a_terminal(
        "watch",
        job_id,
        "--stale-after",
        "1",
        "--timeout",
        "2.5",
        "--lang",
        "en",
        env=server.client_env(),
    )
    assert code == 3, (output, err)
    frames = output.split("\r\x1b[2K")
    assert any(f.endswith("!! STALE") for f in frames[2:-1]), output
    assert re.fullmatch(r"\S \[30\] SUNO_TASK_CREATED · .* · !! STALE\r\n", frames[-1]), frames[-1]
    assert f"gave up after --timeout 2.5 s; job {job_id} is still STAGE_30" in err


def test_generation_options_reach_the_job(server: Server, scenario: str) -> None:
    """--prompt, --title and --no-instrumental are sent with runOnce and recorded in JobAccepted."""
    run = clipjobs(
        "run",
        "--channel",
        _channel(),
        "--prompt",
        "sea waves",
        "--title",
        "Tide",
        "--no-instrumental",
        "--json",
        env=server.client_env(),
    )
    assert run.code == 0, run
    history = clipjobs("history", run.views[0]["jobId"], "--json", env=server.client_env())
    params = history.views[0]["events"][0]["data"]["params"]
    assert (params["prompt"], params["title"], params["instrumental"]) == (
        "sea waves",
        "Tide",
        False,
    )


def test_ctrl_c_stops_watching_with_130_and_no_traceback(server: Server) -> None:
    """SIGINT while following: exit 130, one line saying the job keeps running, no traceback."""
    with server.fake_scenario("stuck"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "clipjobs_cli", "run", "--channel", _channel(), "--watch"],
            env=server.client_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,
        )
        assert proc.stdout is not None and proc.stderr is not None
        seen = []
        for line in proc.stdout:
            seen.append(line)
            if "STAGE_30_SUNO_TASK_CREATED" in line:
                break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=COMMAND_LIMIT_S)
    assert proc.returncode == 130, (seen, out, err)
    job_id = _job_id(Result(0, "".join(seen), ""))
    assert err == f"clipjobs: stopped watching; the job keeps running (clipjobs watch {job_id})\n"


@pytest.mark.slow
def test_a_job_timed_out_by_the_server_exits_3(tmp_path: Path) -> None:
    """Suno never answers and CLIPJOBS_JOB_TIMEOUT_S=2: STAGE_99 with its error text, exit 3."""
    with _serving(tmp_path, ("--scenario", "stuck"), CLIPJOBS_JOB_TIMEOUT_S="2") as timing_out:
        result = clipjobs(
            "run", "--channel", "c", "--watch", "--lang", "en", env=timing_out.client_env()
        )
        history = clipjobs("history", _job_id(result), env=timing_out.client_env())
    assert result.code == 3, result
    assert "STAGE_99_TIMEOUT in " in result.out
    assert "error: Generation timed out" in result.out
    assert history.code == 3 and "JobTimedOut" in history.out


@pytest.mark.slow
def test_no_credits_is_a_failed_job_exit_1(tmp_path: Path) -> None:
    """402 SUNO_NO_CREDITS: the job exists and failed at once, so exit 1 with the code and job."""
    with _serving(tmp_path, ("--credits", "0")) as broke:
        result = clipjobs("run", "--channel", "c", "--watch", env=broke.client_env())
        as_json = clipjobs("run", "--channel", "d", "--json", env=broke.client_env())
    assert result.code == 1, result
    assert "HTTP 402 SUNO_NO_CREDITS" in result.err and "(jobId job_" in result.err
    assert as_json.code == 1
    (body,) = as_json.views
    assert body["error"] == "SUNO_NO_CREDITS" and body["jobId"].startswith("job_")


@pytest.mark.slow
def test_watch_survives_a_server_restart_by_long_polling(tmp_path: Path) -> None:
    """The SSE stream ends when the server stops; watch falls back to Prefer: wait, waits for the
    server to come back on the same URL, and still reports the job's success."""
    port = _free_port()
    slow = ("--text-after-s", "0.2", "--first-after-s", "0.4", "--complete-after-s", "4")
    with _fake_suno(tmp_path, slow) as fake_url:
        env = _serve_env(
            tmp_path, fake_url, port, CLIPJOBS_POLL_AFTER_S="1", CLIPJOBS_POLL_INTERVAL_S="1"
        )
        client_env = _clean_env(CLIPJOBS_URL=f"http://127.0.0.1:{port}", CLIPJOBS_TOKEN=TOKEN)
        with _serve_process(env, tmp_path):
            started = clipjobs("run", "--channel", "c", "--json", env=client_env)
            job_id = started.views[0]["jobId"]
            watcher = subprocess.Popen(
                [sys.executable, "-m", "clipjobs_cli", "watch", job_id, "--json"],
                env=client_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            assert watcher.stdout is not None
            views = [json.loads(watcher.stdout.readline())]
            assert not views[0]["done"]
        # The server went away mid-job; it comes back on the same port and database.
        with _serve_process(env, tmp_path):
            out, err = watcher.communicate(timeout=COMMAND_LIMIT_S)
    views += [json.loads(line) for line in out.splitlines()]
    assert watcher.returncode == 0, (views, err)
    assert views[-1]["stage"] == "STAGE_50_SUNO_SUCCESS" and views[-1]["jobId"] == job_id
    versions = [v["version"] for v in views]
    assert versions == sorted(set(versions))
    # The second server was only long-polled: the client did not go back to the stream.
    second_log = (tmp_path / "serve-1.err").read_text()
    assert f"GET /api/music-clips/jobs/{job_id} " in second_log
    assert f"/api/music-clips/jobs/{job_id}/events" not in second_log


# --- the docs ----------------------------------------------------------------------------------


def test_docs_name_every_option_of_every_client_command() -> None:
    """docs/cli.md mentions each client command and each of its options, and every exit code."""
    doc = (ROOT / "docs" / "cli.md").read_text()
    for command in ("run", "watch", "history"):
        help_text = clipjobs(command, "--help", env=_clean_env()).out
        assert f"clipjobs {command}" in doc
        for option in set(re.findall(r"--[a-z][a-z-]+", help_text)) - {"--help"}:
            assert option in doc, f"{option} of clipjobs {command} is not in docs/cli.md"
    for code in ("0", "1", "2", "3", "4", "130"):
        assert re.search(rf"^\| `?{code}`? \|", doc, re.M), f"exit code {code} missing"
    for variable in ("CLIPJOBS_URL", "CLIPJOBS_TOKEN", "LANG"):
        assert variable in doc
