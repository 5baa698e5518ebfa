"""Signed, expiring customer links: pure rules, with hypothesis for the token parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consentry.consent import links

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
KEY = links.link_key("server-secret", "shop-a")


def make(**kw: object) -> str:
    values: dict[str, object] = {
        "workspace_id": "shop-a",
        "profile_id": "p-1",
        "kind": links.PREFERENCES,
        "now": NOW,
    }
    values.update(kw)
    return links.sign(KEY, **values)  # type: ignore[arg-type]


def test_a_token_opens_its_own_kind_until_it_expires() -> None:
    token = make(purpose="marketing.communications.email")
    link = links.verify(KEY, token, kind=links.PREFERENCES, now=NOW + timedelta(days=29))
    assert (link.workspace_id, link.profile_id) == ("shop-a", "p-1")
    assert link.extra == {"purpose": "marketing.communications.email"}
    assert links.workspace_of(token) == "shop-a"
    with pytest.raises(links.LinkError) as expired:
        links.verify(KEY, token, kind=links.PREFERENCES, now=NOW + timedelta(days=30))
    assert expired.value.reason == "expired"
    with pytest.raises(links.LinkError) as other_kind:
        links.verify(KEY, token, kind=links.UNSUBSCRIBE, now=NOW)
    assert other_kind.value.reason == "kind"


def test_another_workspace_or_secret_cannot_open_it() -> None:
    token = make()
    for key in (links.link_key("server-secret", "shop-b"), links.link_key("other", "shop-a")):
        with pytest.raises(links.LinkError) as caught:
            links.verify(key, token, kind=links.PREFERENCES, now=NOW)
        assert caught.value.reason == "forged"


def test_an_edited_payload_is_forged() -> None:
    body, mac = make().split(".")
    edited = make(profile_id="p-2").split(".")[0]
    with pytest.raises(links.LinkError) as caught:
        links.verify(KEY, f"{edited}.{mac}", kind=links.PREFERENCES, now=NOW)
    assert caught.value.reason == "forged"
    assert body != edited


@given(st.text(max_size=300))
def test_any_string_is_refused_cleanly(garbage: str) -> None:
    with pytest.raises(links.LinkError):
        links.verify(KEY, garbage, kind=links.PREFERENCES, now=NOW)


@given(st.integers(min_value=0, max_value=200), st.integers(min_value=0, max_value=255))
def test_flipping_any_character_breaks_the_token(position: int, replacement: int) -> None:
    token = make()
    index = position % len(token)
    flipped = token[:index] + chr(replacement) + token[index + 1 :]
    if flipped == token:
        return
    with pytest.raises(links.LinkError):
        links.verify(KEY, flipped, kind=links.PREFERENCES, now=NOW)
