"""``CLIPJOBS_ADMIN_TOKENS`` (SPEC 10.3): admins' tokens, parsed and checked like user tokens."""

from __future__ import annotations

import pytest
from _core_harness import refusal

from clipjobs import Identity, TokenAuthenticator
from clipjobs.app.config import Settings


def test_admin_tokens_are_read_and_unset_by_default() -> None:
    """Unset, there are no admins; set, each token names an admin."""
    assert Settings.from_env({}).admin_tokens is None
    settings = Settings.from_env(
        {"CLIPJOBS_ADMIN_TOKENS": "root-token-0001=root, ops-token-0002=ops"}
    )
    assert settings.admin_tokens == {"root-token-0001": "root", "ops-token-0002": "ops"}
    assert "root-token-0001" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"CLIPJOBS_ADMIN_TOKENS": "short=root"}, "CLIPJOBS_ADMIN_TOKENS entry 1: tokens need 8+"),
        ({"CLIPJOBS_ADMIN_TOKENS": "no-equals-sign"}, "CLIPJOBS_ADMIN_TOKENS entry 1 is not"),
        ({"CLIPJOBS_ADMIN_TOKENS": ",,"}, "CLIPJOBS_ADMIN_TOKENS is set but holds no"),
        (
            {
                "CLIPJOBS_TOKENS": "shared-token-01=alice",
                "CLIPJOBS_ADMIN_TOKENS": "shared-token-01=root",
            },
            "both CLIPJOBS_TOKENS and CLIPJOBS_ADMIN_TOKENS",
        ),
    ],
)
def test_bad_admin_tokens_give_one_clear_line(env: dict[str, str], needle: str) -> None:
    """A malformed or ambiguous admin token is refused, naming the variable, never the token."""
    message = refusal(env)
    assert needle in message
    assert "shared-token-01" not in message


@pytest.mark.asyncio
async def test_the_token_authenticator_says_who_is_an_admin() -> None:
    """A user token gives its user id; an admin token an admin Identity; others None."""
    auth = TokenAuthenticator({"user-token-01": "alice"}, {"root-token-01": "root"})
    assert await auth.authenticate("user-token-01") == "alice"
    assert await auth.authenticate("root-token-01") == Identity("root", admin=True)
    assert await auth.authenticate("nobody-token") is None
    assert "root-token-01" not in repr(auth)
