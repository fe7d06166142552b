"""The clipjobs HTTP API on aiohttp: a sub-application you serve or mount.

::

    from clipjobs_aiohttp import ApiConfig, create_app

    app = create_app(service, TokenAuthenticator({"token": "user"}), ApiConfig())
    parent.add_subapp("/clips", app)      # or serve ``app`` itself
"""

from __future__ import annotations

from ._app import RedactedAccessLogger, create_app, load_openapi
from ._config import ApiConfig
from ._kept import KEPT_PREFIX, MediaUrlSigner, add_kept_media
from ._keys import AUTHENTICATOR, CONFIG, METRICS, SERVICE
from ._media import add_media
from ._site import DEFAULT_HEAD_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, BoundedSockSite

__all__ = [
    "AUTHENTICATOR",
    "CONFIG",
    "DEFAULT_HEAD_TIMEOUT_S",
    "DEFAULT_MAX_CONNECTIONS",
    "KEPT_PREFIX",
    "METRICS",
    "SERVICE",
    "ApiConfig",
    "BoundedSockSite",
    "MediaUrlSigner",
    "RedactedAccessLogger",
    "add_kept_media",
    "add_media",
    "create_app",
    "load_openapi",
]
