"""The real Segment and RudderStack Python SDKs, pointed at a live ``consentry serve``.

One journey per SDK: a visitor browses anonymously on two devices, signs in (identify links the
current anonymousId to a userId and brings an email), an alias links the old device's anonymousId,
and an order completes. The admin API must then show one unified profile holding every identifier,
the traits, every event and the order; the SDK must have reported no error.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
import rudderstack.analytics as rudder_analytics
import segment.analytics as segment_analytics
from fastapi.testclient import TestClient

from consentry.platform.db import Database
from tests.support.segment import basic, bearer
from tests.support.server import Credentials, LiveServer, credentials_via_services

pytestmark = pytest.mark.slow


class SdkClient(Protocol):
    """What the two SDKs' ``Client`` classes have in common (their calls take keywords)."""

    def identify(self, **kwargs: Any) -> Any: ...
    def track(self, **kwargs: Any) -> Any: ...
    def page(self, **kwargs: Any) -> Any: ...
    def alias(self, **kwargs: Any) -> Any: ...
    def flush(self) -> None: ...
    def join(self) -> None: ...


@dataclass(frozen=True)
class Sdk:
    """One way to send: which SDK, gzip or not, batched in a thread or one request per call."""

    id: str
    factory: Callable[..., SdkClient]
    gzip: bool
    sync_mode: bool


SDKS = [
    Sdk("segment-batched-gzip", segment_analytics.Client, gzip=True, sync_mode=False),
    Sdk("segment-sync-plain", segment_analytics.Client, gzip=False, sync_mode=True),
    Sdk("rudderstack-batched-gzip", rudder_analytics.Client, gzip=True, sync_mode=False),
    Sdk("rudderstack-sync-plain", rudder_analytics.Client, gzip=False, sync_mode=True),
]


@pytest.fixture(scope="module")
def server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """One live server per backend for this module; each test gets a workspace of its own."""
    live = LiveServer(database_url, Path(tmp_path_factory.mktemp("serve")))
    try:
        yield live.start()
    finally:
        live.close()


@pytest.fixture
def creds(db: Database) -> Credentials:
    return credentials_via_services(db)


@dataclass(frozen=True)
class Journey:
    user_id: str
    old_anonymous_id: str
    anonymous_id: str
    email: str
    order_id: str


ORDER = {
    "total": 59.9,
    "revenue": 54.9,
    "shipping": 5.0,
    "currency": "EUR",
    "products": [
        {
            "product_id": "sku-tea",
            "sku": "sku-tea",
            "name": "Green tea",
            "price": 12.45,
            "quantity": 2,
        },
        {"product_id": "sku-pot", "sku": "sku-pot", "name": "Teapot", "price": 30.0, "quantity": 1},
    ],
}
SENT_EVENTS = 7  # the calls made by play(), in order


def play(client: SdkClient, journey: Journey) -> None:
    """Anonymous browsing on two devices, sign-in, alias of the old device, an order."""
    j = journey
    client.page(anonymous_id=j.old_anonymous_id, name="Home", properties={"path": "/"})
    client.page(anonymous_id=j.anonymous_id, name="Tea", properties={"path": "/tea"})
    client.track(
        anonymous_id=j.anonymous_id, event="Product Viewed", properties={"product_id": "sku-tea"}
    )
    client.identify(
        user_id=j.user_id,
        anonymous_id=j.anonymous_id,
        traits={"email": j.email, "first_name": "Ada", "plan": "gold"},
    )
    client.alias(previous_id=j.old_anonymous_id, user_id=j.user_id)
    client.track(user_id=j.user_id, event="Signed In", properties={"method": "password"})
    client.track(
        user_id=j.user_id, event="Order Completed", properties={"order_id": j.order_id, **ORDER}
    )


def send(sdk: Sdk, server: LiveServer, creds: Credentials, journey: Journey) -> list[str]:
    """Play the journey through the SDK; return the errors it reported."""
    errors: list[str] = []

    def on_error(error: Exception, items: list[Any]) -> None:
        errors.append(f"{error!r} ({len(items)} messages)")

    client = sdk.factory(
        creds.write_key,
        host=server.url,
        gzip=sdk.gzip,
        sync_mode=sdk.sync_mode,
        on_error=on_error,
        max_retries=1,
        timeout=10,
    )
    try:
        play(client, journey)
    finally:
        if not sdk.sync_mode:
            client.flush()  # returns once every queued message was sent or reported
            client.join()
    return errors


def _profile_id(api: httpx.Client, **query: str) -> str:
    found = api.get("/v1/profiles", params=query)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["total"] == 1, (query, body)
    return str(body["profiles"][0]["id"])


@pytest.mark.parametrize("sdk", SDKS, ids=[s.id for s in SDKS])
def test_sdk_journey_lands_in_one_unified_profile(
    sdk: Sdk, server: LiveServer, creds: Credentials
) -> None:
    tag = uuid.uuid4().hex[:8]
    journey = Journey(
        user_id=f"user-{tag}",
        old_anonymous_id=f"anon-old-{tag}",
        anonymous_id=f"anon-new-{tag}",
        email=f"ada.{tag}@example.com",
        order_id=f"order-{tag}",
    )

    errors = send(sdk, server, creds, journey)

    assert errors == [], f"the SDK reported errors:\n{server.log_tail()}"
    server.wait_processed(creds.admin_token)
    with httpx.Client(base_url=server.url, headers=bearer(creds.admin_token), timeout=10) as api:
        profile = assert_unified_profile(api, journey)
        counts = api.get("/v1/workspace").json()["counts"]
    assert counts["events"] == SENT_EVENTS
    assert counts["profiles"] == 1
    assert counts["orders"] == 1
    expected = {"email": journey.email, "first_name": "Ada", "plan": "gold"}
    traits = {k: profile["traits"].get(k) for k in expected}
    assert traits == expected


def assert_unified_profile(api: httpx.Client, journey: Journey) -> dict[str, Any]:
    """One profile holds the journey's identifiers, events and order; return its 360 view."""
    j = journey
    profile_id = _profile_id(api, user_id=j.user_id)
    for query in (
        {"anonymous_id": j.anonymous_id},
        {"anonymous_id": j.old_anonymous_id},
        {"email": j.email.upper()},  # emails are compared normalised
    ):
        assert _profile_id(api, **query) == profile_id, query

    response = api.get(f"/v1/profiles/{profile_id}")
    assert response.status_code == 200, response.text
    profile = response.json()
    identifiers = {(i["type"], i["value"]) for i in profile["identifiers"]}
    assert {
        ("user_id", j.user_id),
        ("anonymous_id", j.anonymous_id),
        ("anonymous_id", j.old_anonymous_id),
        ("email", j.email),
    } <= identifiers
    events = profile["timeline"]["events"]
    assert len(events) == SENT_EVENTS
    assert sorted(e["type"] for e in events) == sorted(
        ["page", "page", "track", "identify", "alias", "track", "track"]
    )
    assert all(e["payload"]["context"]["library"]["name"] == "analytics-python" for e in events)

    (order,) = profile["orders"]
    assert order["order_id"] == j.order_id
    assert order["status"] == "completed"
    assert order["currency"] == "EUR"
    assert float(order["total"]) == pytest.approx(59.9)
    assert sorted((i["product_id"], i["quantity"]) for i in order["items"]) == [
        ("sku-pot", 1),
        ("sku-tea", 2),
    ]
    return profile


def test_identify_traits_in_context_become_traits(
    client: TestClient, write_key: str, admin_token: str
) -> None:
    """Minimal reproduction: rudder-sdk-python's identify carries its traits only in context."""
    identify = {
        "type": "identify",
        "messageId": f"m-{uuid.uuid4()}",
        "userId": "u-context-traits",
        "context": {"traits": {"email": "ada@example.com", "first_name": "Ada"}},
        "integrations": {"All": True},
        "channel": "server",
    }
    sent = client.post("/v1/batch", json={"batch": [identify]}, headers=basic(write_key))
    assert sent.status_code == 200, sent.text
    client.app.state.ingest_writer.settle()

    found = client.get(
        "/v1/profiles", params={"user_id": "u-context-traits"}, headers=bearer(admin_token)
    ).json()
    assert found["profiles"][0]["traits"] == {"email": "ada@example.com", "first_name": "Ada"}
