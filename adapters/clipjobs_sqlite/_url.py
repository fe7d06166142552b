"""``sqlite:///…`` URLs (``CLIPJOBS_DB``) to the path SQLite opens."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from clipjobs.domain.errors import ConfigError

__all__ = ["MEMORY", "parse_sqlite_url"]

#: The path that means "a private in-memory database" (nothing survives the store).
MEMORY = ":memory:"


def parse_sqlite_url(url: str) -> str:
    """The database path a ``sqlite:`` URL names.

    ``sqlite:///clipjobs.db`` is relative to the working directory,
    ``sqlite:////var/lib/clipjobs.db`` is absolute (four slashes, as in
    SQLAlchemy), ``sqlite:///:memory:`` is an in-memory database. Anything
    else raises :class:`~clipjobs.domain.errors.ConfigError` with one clear line.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != "sqlite":
        raise ConfigError(f"not an SQLite URL (expected sqlite:///path): {url!r}")
    if parts.netloc:
        raise ConfigError(
            f"an SQLite URL has no host: use sqlite:///relative.db or sqlite:////abs/path.db,"
            f" not {url!r}"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"an SQLite URL takes no ?query or #fragment: {url!r}")
    # urlsplit keeps the slash after the empty host: "/relative.db", "//abs/path.db".
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not path or path.endswith("/"):
        raise ConfigError(f"an SQLite URL needs a file name, as in sqlite:///clipjobs.db: {url!r}")
    if "\x00" in path:
        raise ConfigError(f"an SQLite path cannot contain NUL: {url!r}")
    return path
