"""Browser fixtures: the real app served by uvicorn in a thread, a seeded shop, headless Chromium.

The browser tests run on SQLite only: the PostgreSQL parameter of ``db`` is skipped here, since
the pages hold no SQL of their own and the HTTP page tests already run on both stores.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from consentry.api import create_app
from consentry.config import Settings
from consentry.platform.db import Database
from tests.support.postgres import free_port, wait_for
from tests.support.segment import basic, bearer, identify, track

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = Path(__file__).parent / ".artifacts"
ADA_EVENTS = 40  # more than one page of the timeline (25)


@dataclass(frozen=True)
class Shop:
    """A seeded workspace behind a live server."""

    base_url: str
    token: str
    ada_id: str
    grace_id: str  # the unified profile of the merge
    merge: dict[str, Any]

    def api(self, path: str, **params: Any) -> Any:
        """GET an admin API path with the token; return its JSON."""
        response = httpx.get(
            self.base_url + path, params=params, headers=bearer(self.token), timeout=10
        )
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run `make test` (or apt-get install -y chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def live_server(settings: Settings, db: Database) -> Iterator[str]:
    if db.dialect != "sqlite":
        pytest.skip("browser tests run on SQLite only")
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, db), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=10)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def _at(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(days=2) + timedelta(minutes=minutes)).isoformat()


def _ada() -> list[dict[str, Any]]:
    traits = {
        "email": "ada@example.com",
        "first_name": "Ada",
        "last_name": "Lovelace",
        "plan": "gold",
        "address": {"city": "London"},
        "newsletter": True,
    }
    products = [
        {"product_id": "p-42", "name": "Analytical Engine mug", "price": 14.95, "quantity": 2},
        {"product_id": "p-7", "name": "Punch card notebook", "price": 100, "quantity": 1},
    ]
    order = {"order_id": "o-1001", "total": "129.90", "currency": "eur", "products": products}
    cart = {"cart_id": "c-9", "product_id": "p-7", "name": "Punch card notebook", "price": 100}
    views = [
        track("Product Viewed", userId="u-ada", timestamp=_at(10 + i), properties={"n": i})
        for i in range(ADA_EVENTS - 4)
    ]
    return [
        identify(userId="u-ada", traits=traits, timestamp=_at(1)),
        *views,
        track("Order Completed", userId="u-ada", properties=order, timestamp=_at(100)),
        track(
            "Order Completed",
            userId="u-ada",
            timestamp=_at(110),
            properties={"order_id": "o-1002", "total": 20, "currency": "eur"},
        ),
        track("Product Added", userId="u-ada", properties=cart, timestamp=_at(120)),
    ]


def _grace() -> list[dict[str, Any]]:
    """An anonymous visitor and a signed-up user, joined by an identify naming both."""
    return [
        identify(anonymousId="anon-grace", traits={"email": "grace@example.com"}, timestamp=_at(1)),
        track("Product Viewed", anonymousId="anon-grace", timestamp=_at(2)),
        identify(userId="u-grace", traits={"first_name": "Grace"}, timestamp=_at(3)),
        identify(userId="u-grace", anonymousId="anon-grace", timestamp=_at(4)),
    ]


@pytest.fixture
def shop(live_server: str, write_key: str, admin_token: str) -> Shop:
    batch = {"batch": [*_ada(), *_grace()]}
    response = httpx.post(f"{live_server}/v1/batch", json=batch, headers=basic(write_key))
    assert response.status_code == 200, response.text
    found = Shop(live_server, admin_token, "", "", {})
    wait_for(lambda: found.api("/v1/ingest/status")["pending"] == 0, timeout=10)  # applied
    ada = found.api("/v1/profiles", email="ada@example.com")["profiles"][0]
    grace = found.api("/v1/profiles", user_id="u-grace")["profiles"][0]
    merges = found.api(f"/v1/profiles/{grace['id']}")["merges"]
    assert len(merges) == 1, merges
    return Shop(live_server, admin_token, ada["id"], grace["id"], merges[0])


@pytest.fixture
def console_errors() -> list[str]:
    """Errors the browser console logged; a test that expects one removes it."""
    return []


@pytest.fixture
def page(browser: Browser, console_errors: list[str]) -> Iterator[Page]:
    """A fresh browser context (no cookies) per test; the page must log no console errors."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(5_000)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            console_errors.append(message.text)

    tab.on("console", on_console)
    yield tab
    context.close()
    assert console_errors == [], "the browser console logged errors"
