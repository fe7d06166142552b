"""The core stays pure and its public surface is deliberate."""

from __future__ import annotations

import json
import subprocess
import sys

import clipjobs
import clipjobs.errors


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
    """Every error class in clipjobs.errors derives from ClipjobsError."""
    for name in clipjobs.errors.__all__:
        cls = getattr(clipjobs.errors, name)
        assert issubclass(cls, clipjobs.errors.ClipjobsError), name
