"""Consent in the generated demo shop: the cookie banner and GPC on events, in the shape
ingestion reads, and the newsletter and SMS choices the shop's backend sends to the consent
API; deterministic, spread through time, with rates that differ by country."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any

import pytest

from consentry.consent.models import DEFAULT_PURPOSES, ConsentIn
from consentry.consent.signals import (
    DEFAULT_CATEGORY_MAP,
    category_preferences,
    has_gpc,
    read_categories,
)
from consentry.demo.consent import NEWSLETTER, PREFERENCE_EVENT, SMS
from consentry.demo.generator import ApiConsent, ShopSpec, shop_stream, window
from consentry.demo.seeding import chunks

SPEC = ShopSpec(customers=250, months=6, seed=3)
PURPOSES = frozenset(p.key for p in DEFAULT_PURPOSES)
EU = ("GB", "DE", "FR")

Message = dict[str, Any]


@pytest.fixture(scope="module")
def stream() -> list[Message | ApiConsent]:
    return list(shop_stream(SPEC))


@pytest.fixture(scope="module")
def messages(stream: list[Message | ApiConsent]) -> list[Message]:
    return [m for m in stream if isinstance(m, dict)]


@pytest.fixture(scope="module")
def calls(stream: list[Message | ApiConsent]) -> list[dict[str, Any]]:
    return [c.body for c in stream if isinstance(c, ApiConsent)]


def _country(message: Message) -> str:
    return str(message["context"]["locale"])[-2:]


def _when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_the_same_seed_gives_the_same_consent(stream: list[Message | ApiConsent]) -> None:
    again = list(shop_stream(SPEC))
    assert again == stream
    other = [c for c in shop_stream(ShopSpec(customers=40, months=6, seed=4)) if c not in stream]
    assert other


def test_banner_answers_ride_on_events_in_the_shape_ingestion_reads(
    messages: list[Message],
) -> None:
    carrying = [m for m in messages if category_preferences(m) is not None]
    assert len(carrying) > len(messages) * 0.8  # every web and app event once answered
    for message in carrying:
        reading = read_categories(
            category_preferences(message) or {}, DEFAULT_CATEGORY_MAP, PURPOSES
        )
        assert reading.unknown == reading.invalid == 0
        assert set(reading.states) == {
            "analytics",
            "personalize",
            "marketing.advertising.third_party",
        }
    announced = [m for m in messages if m.get("event") == PREFERENCE_EVENT]
    assert all(category_preferences(m) is not None for m in announced)
    # one answer per device on its first visit, and some later changes of mind
    per_device = Counter(m["anonymousId"] for m in announced)
    assert len(per_device) > 200 and 10 < sum(n - 1 for n in per_device.values())
    backend = ("analytics-node", "analytics-python")  # the shop's server and store tills
    server = [m for m in messages if m["context"]["library"]["name"] in backend]
    assert server and not any(category_preferences(m) or has_gpc(m) for m in server)


def test_eu_visitors_refuse_the_banner_more_often(messages: list[Message]) -> None:
    first: dict[str, Message] = {}
    for message in messages:
        if message.get("event") == PREFERENCE_EVENT:
            first.setdefault(message["anonymousId"], message)
    granted: dict[str, list[bool]] = defaultdict(list)
    for message in first.values():
        prefs = category_preferences(message) or {}
        granted[_country(message)].append(prefs["Analytics"] is True)
    rate = {country: sum(votes) / len(votes) for country, votes in granted.items()}
    assert set(rate) == {"US", *EU}
    assert all(rate["US"] > rate[eu] for eu in EU), rate
    assert rate["US"] - sum(rate[eu] for eu in EU) / len(EU) > 0.15, rate
    assert all(0 < r < 1 for r in rate.values())


def test_some_browsers_send_gpc_and_their_banner_refuses_advertising(
    messages: list[Message],
) -> None:
    gpc = [m for m in messages if has_gpc(m)]
    assert (
        0
        < len({m["anonymousId"] for m in gpc})
        < len({m.get("anonymousId") for m in messages}) * 0.1
    )
    assert all("app" not in m["context"] for m in gpc)
    for message in gpc:
        prefs = category_preferences(message)
        assert prefs is None or prefs["Advertising"] is False


def test_newsletter_and_sms_choices_are_consent_api_items(
    messages: list[Message], calls: list[dict[str, Any]]
) -> None:
    items = [ConsentIn.model_validate(body) for body in calls]
    assert {(i.purpose, i.channel) for i in items} == {(NEWSLETTER, "email"), (SMS, "sms")}
    states = Counter((i.purpose, i.state) for i in items)
    for purpose in (NEWSLETTER, SMS):
        assert states[(purpose, "granted")] and states[(purpose, "denied")]
        assert states[(purpose, "withdrawn")]
    assert states[(SMS, "granted")] < states[(NEWSLETTER, "granted")] / 2  # SMS: a few
    assert {i.source for i in items} == {"checkout", "web_form", "api"}
    signed_up = [i for i in items if i.state != "withdrawn" and i.source == "checkout"]
    assert all(i.proof and i.proof.ip and i.proof.user_agent for i in signed_up)
    # each names a customer whose userId an earlier event carried (the backend can name them)
    seen: set[str] = set()
    first_seen: dict[str, datetime] = {}
    for message in messages:
        if message.get("userId") and message["userId"] not in seen:
            seen.add(message["userId"])
            first_seen[message["userId"]] = _when(message["timestamp"])
    for item in items:
        assert item.user_id in first_seen and item.occurred_at
        assert first_seen[item.user_id] < item.occurred_at


def test_unsubscriptions_follow_their_subscription(calls: list[dict[str, Any]]) -> None:
    granted: dict[tuple[str, str], datetime] = {}
    for body in calls:
        key = (body["user_id"], body["purpose"])
        if body["state"] == "granted":
            granted.setdefault(key, _when(body["occurred_at"]))
        elif body["state"] == "withdrawn":
            assert key in granted and granted[key] < _when(body["occurred_at"])


def test_consent_is_spread_through_the_shop_history(
    stream: list[Message | ApiConsent], messages: list[Message], calls: list[dict[str, Any]]
) -> None:
    start, end = window(SPEC)
    months = {body["occurred_at"][:7] for body in calls}
    banner_months = {m["timestamp"][:7] for m in messages if m.get("event") == PREFERENCE_EVENT}
    assert len(months) >= 5 and len(banner_months) == 6
    stamps = [
        _when(c.body["occurred_at"] if isinstance(c, ApiConsent) else c["timestamp"])
        for c in stream
    ]
    assert stamps == sorted(stamps)
    assert start <= stamps[0] and stamps[-1] < end


def test_newsletter_opt_in_is_rarer_in_the_eu(
    messages: list[Message], calls: list[dict[str, Any]]
) -> None:
    country: dict[str, str] = {}
    for message in messages:
        address = (message.get("traits") or {}).get("address")
        if message["type"] == "identify" and address and message.get("userId"):
            country.setdefault(message["userId"], address["country"])
    # the sign-up form's checkbox (at checkout or on the account page: it names its notice),
    # the EU and UK together: a few dozen choices per country would make it a coin toss
    votes: dict[str, list[bool]] = defaultdict(list)
    for body in calls:
        where = country.get(body["user_id"])  # None: the sign-up's userId was a junk value
        if body["purpose"] == NEWSLETTER and body.get("notice_version") and where:
            votes["EU" if where in EU else where].append(body["state"] == "granted")
    rate = {c: sum(v) / len(v) for c, v in votes.items()}
    assert len(votes["US"]) > 30 and len(votes["EU"]) > 30, rate
    assert rate["US"] > rate["EU"], rate


def test_seeding_chunks_carry_the_consent_items_after_their_events() -> None:
    spec = ShopSpec(customers=60, months=3, seed=5)
    parts = list(chunks(spec, received_at=datetime.now().astimezone(), size=500))
    items = [item for part in parts for item in part.consents]
    assert len(items) == sum(isinstance(c, ApiConsent) for c in shop_stream(spec)) > 0
    seen: set[str] = set()
    for part in parts:
        seen |= {e.user_id for e in part.envelopes if e.user_id}
        assert all(item.user_id in seen for item in part.consents)
