"""The core stays pure and its public surface is deliberate."""

from __future__ import annotations

import json
import subprocess
import sys

import clipjobs
import clipjobs.domain.errors


def test_import_pulls_in_no_io_library() -> None:
    """`import clipjobs` loads no aiohttp, aiosqlite, asyncpg or sqlite3 (SPEC section 1)."""
    code = (
        "import sys, json, clipjobs, clipjobs.testing;"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not loaded & {"aiohttp", "aiosqlite", "asyncpg", "sqlite3", "_sqlite3", "psycopg"}


def test_all_lists_exactly_the_public_names() -> None:
    """`clipjobs.__all__` names every public attribute of the package and nothing else."""
    public = {
        name
        for name in vars(clipjobs)
        if not name.startswith("_")
        and not isinstance(getattr(clipjobs, name), type(sys))
        and name != "annotations"  # `from __future__ import annotations`
    }
    # Submodules are reachable but not part of the star-import surface, except `errors`.
    assert set(clipjobs.__all__) == public | {"errors"}
    assert clipjobs.__all__ == sorted(clipjobs.__all__, key=lambda n: (not n.isupper(), n))


def test_error_tree_has_one_root() -> None:
    """Every error class in clipjobs.domain.errors derives from ClipjobsError."""
    for name in clipjobs.domain.errors.__all__:
        cls = getattr(clipjobs.domain.errors, name)
        assert issubclass(cls, clipjobs.domain.errors.ClipjobsError), name


#: What the domain may import: the standard library's pure parts, attrs, cattrs, transitions,
#: and itself.
DOMAIN_MAY_IMPORT = {
    "__future__", "collections", "contextlib", "datetime", "enum", "functools", "hashlib",
    "json", "math", "types", "typing", "zlib", "attrs", "cattrs", "transitions",
}  # fmt: skip


def test_the_domain_imports_no_runtime() -> None:
    """`clipjobs.domain` (issue 16: what a job is and how it moves) imports no asyncio, no I/O
    and nothing of `clipjobs.app` (service, workers, budget, config, metrics, ports): it decides
    and folds, and never waits, sleeps, reads a clock or touches a file, socket or database."""
    import ast
    from pathlib import Path

    domain = Path(clipjobs.__file__).parent / "domain"
    modules_seen = sorted(path.stem for path in domain.glob("*.py"))
    assert {"_decide", "_fold", "_machine", "events", "state"} <= set(modules_seen)
    for path in domain.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0:  # relative: only the domain's own modules
                    assert node.level == 1, (path.name, node.module)
                    continue
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                allowed = module.split(".")[0] in DOMAIN_MAY_IMPORT
                assert allowed or module.startswith("clipjobs.domain"), (path.name, module)
