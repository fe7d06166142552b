"""Per-job webhook tokens: an HMAC of the job id under a server secret.

Suno signs nothing, so the callback URL given to it carries
``?job={jobId}&token={t}``; a callback whose token does not match is refused
and nothing is recorded. The secret lives in the event store, so tokens issued
before a restart still verify after it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlencode

__all__ = ["WEBHOOK_PATH", "WEBHOOK_SECRET_NAME", "WebhookSigner", "new_secret"]

WEBHOOK_PATH = "/api/webhooks/suno/music"
WEBHOOK_SECRET_NAME = "webhook-hmac-v1"  # noqa: S105  (a name, not the secret)


def new_secret() -> str:
    return secrets.token_hex(32)


class WebhookSigner:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def __repr__(self) -> str:
        return "WebhookSigner(<secret>)"

    def token(self, job_id: str) -> str:
        return hmac.new(self._key, job_id.encode(), hashlib.sha256).hexdigest()[:32]

    def verify(self, job_id: str, token: str | None) -> bool:
        # Tokens are hex: anything else is forged (and compare_digest refuses non-ASCII str).
        if not token or not token.isascii():
            return False
        return hmac.compare_digest(self.token(job_id), token)

    def callback_url(self, base_url: str, job_id: str) -> str:
        query = urlencode({"job": job_id, "token": self.token(job_id)})
        return f"{base_url.rstrip('/')}{WEBHOOK_PATH}?{query}"
