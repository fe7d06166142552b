"""The default ``Authenticator`` and ``GenerationParamsProvider``."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from attrs import frozen

from ..domain.errors import ConfigError
from ..domain.events import GenerationParams
from .ports import Identity, ParamOverrides

__all__ = ["ChannelDefaults", "TokenAuthenticator", "parse_tokens"]


def parse_tokens(spec: str, name: str = "CLIPJOBS_TOKENS") -> dict[str, str]:
    """``CLIPJOBS_TOKENS``: ``token=user,token2=user2`` into ``{token: user}``.

    ``name`` is the variable errors name (``CLIPJOBS_ADMIN_TOKENS`` reads alike).
    """
    tokens: dict[str, str] = {}
    for index, item in enumerate(part.strip() for part in spec.split(",")):
        if not item:
            continue
        token, sep, user = item.partition("=")
        token, user = token.strip(), user.strip()
        if not sep or not token or not user:
            raise ConfigError(f"{name} entry {index + 1} is not token=user (tokens stay unprinted)")
        if len(token) < 8:
            raise ConfigError(f"{name} entry {index + 1}: tokens need 8+ characters")
        tokens[token] = user
    if not tokens:
        raise ConfigError(f"{name} is set but holds no token=user entry")
    return tokens


class TokenAuthenticator:
    """Bearer tokens from fixed mappings, compared in constant time.

    ``admin_tokens`` (``CLIPJOBS_ADMIN_TOKENS``) name admins: they see and
    act on every job. A token in both mappings is an admin's.
    """

    def __init__(
        self, tokens: Mapping[str, str], admin_tokens: Mapping[str, str] | None = None
    ) -> None:
        self._tokens: dict[str, str | Identity] = dict(tokens)
        for token, name in (admin_tokens or {}).items():
            self._tokens[token] = Identity(name, admin=True)

    def __repr__(self) -> str:
        return f"TokenAuthenticator(<{len(self._tokens)} tokens>)"

    async def authenticate(self, token: str) -> str | Identity | None:
        try:
            # Header bytes that are not UTF-8 arrive as lone surrogates: no token of
            # ours (they come from the environment, as text) can be spelled that way.
            candidate = token.encode()
        except UnicodeEncodeError:
            return None
        found: str | Identity | None = None
        for known, user in self._tokens.items():
            if hmac.compare_digest(known.encode(), candidate):
                found = user
        return found


_DEFAULT_PARAMS = GenerationParams(
    prompt="An upbeat instrumental track for a short video", instrumental=True
)


@frozen
class ChannelDefaults:
    """The same base params for every channel, with the request's overrides on top."""

    base: GenerationParams = _DEFAULT_PARAMS

    async def params_for(
        self, channel_id: str, user_id: str, overrides: ParamOverrides
    ) -> GenerationParams:
        b = self.base
        return GenerationParams(
            prompt=b.prompt if overrides.prompt is None else overrides.prompt,
            style=b.style if overrides.style is None else overrides.style,
            title=b.title if overrides.title is None else overrides.title,
            custom_mode=b.custom_mode if overrides.custom_mode is None else overrides.custom_mode,
            instrumental=(
                b.instrumental if overrides.instrumental is None else overrides.instrumental
            ),
            model=b.model if overrides.model is None else overrides.model,
            negative_tags=(
                b.negative_tags if overrides.negative_tags is None else overrides.negative_tags
            ),
        )
