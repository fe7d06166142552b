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
from ._notify_http import add_subscriptions, new_webhook_secret
from ._notify_send import NotifyConfig, WebhookSender
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
    "NotifyConfig",
    "RedactedAccessLogger",
    "WebhookSender",
    "add_kept_media",
    "add_media",
    "add_subscriptions",
    "create_app",
    "load_openapi",
    "new_webhook_secret",
]
