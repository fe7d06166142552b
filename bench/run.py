"""Run every benchmark and record the figures with the machine they ran on.

    python bench/run.py [--quick] [--only NAME[,NAME…]] [--out DIR]

Each bench runs in its own process, one after the other (they would skew each
other on a 2-core machine). Their printed tables go to ``DIR/latest.md``;
``DIR/latest.json`` holds the machine's description, each bench's command,
exit code, time and output, and, for the benches that write one, their
figures as JSON (``--json PATH``). ``--quick`` runs each at its smallest size (a smoke test,
well under a minute; its figures mean nothing). A bench whose file is absent,
or that needs a server nobody named (bench_postgres.py and bench_budget_pg.py
without ``CLIPJOBS_TEST_PG_DSN``), is skipped; one that fails is recorded and the rest
still run; the exit code is 1 if any failed. ``--only`` refreshes the named
benches in ``DIR/latest.*`` and keeps the others' last figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import PG_DSN_VARIABLES, machine  # noqa: E402 -- after the path insert

#: name, file, extra args for --quick (a bench that writes figures takes ``--json PATH``)
BENCHES: list[tuple[str, str, list[str]]] = [
    ("fold", "bench_fold.py", []),
    ("sqlite", "bench_sqlite.py", ["--repeats", "1", "--load-calls", "200"]),
    ("postgres", "bench_postgres.py", ["--repeats", "1", "--read-calls", "200"]),
    ("http", "bench_http.py", ["--quick"]),
    ("load", "bench_load.py", ["--quick"]),
    ("budget_pg", "bench_budget_pg.py", ["--quick"]),
    ("clip", "bench_clip.py", ["--quick"]),
    ("watchers", "bench_watchers.py", ["--quick"]),
    ("fair", "bench_fair.py", ["--quick"]),
    ("prune", "bench_prune.py", ["--quick"]),
    ("webhooks", "bench_webhooks.py", ["--quick"]),
    ("fleet", "bench_fleet.py", ["--quick"]),
]
#: Benches that need a server: run only when one of these variables names it.
NEEDS = {"postgres": PG_DSN_VARIABLES, "budget_pg": PG_DSN_VARIABLES}
#: No bench may hang the harness (the full run takes about 14 minutes).
TIMEOUT_S = 600


def describe_machine() -> dict[str, Any]:
    """What the figures depend on: CPU, memory, Python, library versions, commit."""
    info: dict[str, Any] = {
        "summary": machine(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        first = meminfo.read_text().splitlines()[0]
        info["memory_gib"] = round(int(first.split()[1]) / 1024 / 1024, 1)
    with contextlib.suppress(OSError):
        info["load_avg"] = [round(x, 2) for x in os.getloadavg()]
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("aiohttp", "asyncpg", "cattrs", "eventsourcing", "transitions"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            continue
    info["packages"] = versions
    try:
        info["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["commit"] = None
    return info


def run_bench(file: Path, args: list[str], wants_json: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        figures_path = Path(tmp, "figures.json")
        cmd = [sys.executable, str(file), *args]
        if wants_json:
            cmd += ["--json", str(figures_path)]
        started = time.perf_counter()
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
            )
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            code, err = -1, f"timed out after {TIMEOUT_S} s"
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        figures = json.loads(figures_path.read_text()) if figures_path.exists() else None
    return {
        "command": " ".join(["python", f"bench/{file.name}", *args]),
        "exit_code": code,
        "seconds": round(time.perf_counter() - started, 1),
        "output": out,
        "errors": err[-4000:] if code else "",
        "figures": figures,
    }


def markdown(mach: dict[str, Any], results: dict[str, Any], quick: bool, when: str) -> str:
    lines = [
        "# Benchmark results" + (" (--quick: smoke sizes, figures meaningless)" if quick else ""),
        "",
        f"Run {when} by `python bench/run.py{' --quick' if quick else ''}` at commit"
        f" `{mach.get('commit')}`.",
        "",
        f"Machine: {mach.get('cpu', '?')}, {mach['cpus']} cores, {mach.get('memory_gib', '?')} GiB,"
        f" {mach['platform']}, {mach['implementation']} {mach['python']};"
        f" load average at start {mach.get('load_avg', '?')}.",
        "Packages: " + ", ".join(f"{k} {v}" for k, v in mach["packages"].items()) + ".",
        "",
        "See docs/benchmarks.md for what each figure measures and against what.",
    ]
    for name, r in results.items():
        lines += ["", f"## {name}", ""]
        if r.get("skipped"):
            lines.append(f"Skipped ({r['when']}): {r['skipped']}.")
            continue
        status = "ok" if r["exit_code"] == 0 else f"FAILED (exit code {r['exit_code']})"
        lines.append(
            f"`{r['command']}` — {status}, {r['seconds']} s, run {r['when']} at `{r['commit']}`"
        )
        lines += ["", "```", r["output"].rstrip(), "```"]
        if r["exit_code"] != 0 and r["errors"]:
            lines += ["", "```", r["errors"].rstrip()[-2000:], "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smallest sizes, for smoke tests")
    parser.add_argument(
        "--only", help="comma-separated bench names: " + ", ".join(b[0] for b in BENCHES)
    )
    parser.add_argument("--out", default=str(HERE / "results"), help="where latest.md/json go")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {b[0] for b in BENCHES}
    unknown = wanted - {b[0] for b in BENCHES}
    if unknown:
        parser.error(f"unknown bench(es): {', '.join(sorted(unknown))}")

    mach = describe_machine()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    results: dict[str, Any] = {}
    failed = False
    for name, filename, quick_args in BENCHES:
        if name not in wanted:
            continue
        file = HERE / filename
        if not file.exists():
            results[name] = {"skipped": f"bench/{filename} does not exist yet"}
            print(f"== {name}: skipped ({filename} absent)", flush=True)
            continue
        needed = NEEDS.get(name, ())
        if needed and not any(os.environ.get(var) for var in needed):
            results[name] = {"skipped": f"no server: set {' or '.join(needed)}"}
            print(f"== {name}: skipped (set {' or '.join(needed)})", flush=True)
            continue
        print(f"== {name}: running bench/{filename}", flush=True)
        # Flags go only to a bench that knows them (bench_postgres.py may not).
        text = file.read_text()
        quick = [a for a in quick_args if not a.startswith("--") or a in text]
        result = run_bench(file, quick if args.quick else [], "--json" in text)
        results[name] = result
        print(result["output"].rstrip(), flush=True)
        if result["exit_code"] != 0:
            failed = True
            print(f"== {name}: FAILED (exit code {result['exit_code']})", flush=True)
            print(result["errors"].rstrip()[-2000:], file=sys.stderr, flush=True)
        print(f"== {name}: {result['seconds']} s", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for result in results.values():
        result["when"], result["commit"] = when, mach.get("commit")
    previous = out / "latest.json"
    if args.only and previous.exists():
        # --only refreshes those benches; the others keep their last figures (with their date).
        kept = json.loads(previous.read_text())
        for old in kept["benches"].values():
            old.setdefault("when", kept["when"])
            old.setdefault("commit", kept["machine"].get("commit"))
        if kept.get("quick") == args.quick:
            results = {**kept["benches"], **results}
            results = {b[0]: results[b[0]] for b in BENCHES if b[0] in results}
    (out / "latest.md").write_text(markdown(mach, results, args.quick, when))
    (out / "latest.json").write_text(
        json.dumps(
            {"when": when, "quick": args.quick, "machine": mach, "benches": results}, indent=2
        )
        + "\n"
    )
    print(f"== wrote {out / 'latest.md'} and {out / 'latest.json'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
