"""The context a journey message is rendered with, read from the store (both stores): the
opened profile, the trigger's cart and order, recommendations, and signed links that the
real app's one-click unsubscribe and preference center open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from fastapi.testclient import TestClient

from consentry.config import Settings
from consentry.consent import links, policy
from consentry.journeys.templates import (
    PRODUCT_FIELDS,
    LinkMaker,
    MessageTemplate,
    mail_headers,
    message_context,
    render,
    template_problems,
)
from consentry.platform.db import Database, utcnow
from tests.support.delivery import EMAIL_PURPOSE, grant
from tests.support.segment import identify, track
from tests.support.store import profile_of, send


def _at(minutes: int) -> str:
    return (datetime.now(UTC) - timedelta(days=1) + timedelta(minutes=minutes)).isoformat()


def _shop(db: Database, workspace: str) -> str:
    traits = {
        "email": "Ada@Example.com",
        "firstName": "Ada",
        "last_name": "Lovelace",
        "plan": "gold",
        "address": {"city": "London", "country": "GB"},
        "phone": "+44 7700 900123",
    }
    old_cart = {"cart_id": "c-old", "product_id": "p-1", "name": "Mug", "price": 9.5}
    cart = {"cart_id": "c-9", "product_id": "p-7", "name": "Punch card notebook", "price": 100}
    second = {"cart_id": "c-9", "product_id": "p-8", "name": "Brass gear", "price": 12.25}
    order = {
        "order_id": "o-1001",
        "total": "29.90",
        "currency": "eur",
        "products": [{"product_id": "p-42", "name": "Engine mug", "price": 14.95, "quantity": 2}],
    }
    send(
        db,
        workspace,
        identify(userId="u-ada", traits=traits, timestamp=_at(1)),
        track("Order Completed", userId="u-ada", properties=order, timestamp=_at(5)),
        track("Product Added", userId="u-ada", properties=old_cart, timestamp=_at(8)),
        track("Product Added", userId="u-ada", properties=cart, timestamp=_at(9)),
        track("Product Added", userId="u-ada", properties=second, timestamp=_at(10)),
        track(
            "Product Added", userId="u-ada", properties=second | {"quantity": 2}, timestamp=_at(11)
        ),
    )
    return profile_of(db, workspace, user_id="u-ada").id


def test_the_context_holds_the_opened_profile_the_cart_the_order_and_links(
    db: Database, workspace: str, settings: Settings
) -> None:
    ada = _shop(db, workspace)
    maker = LinkMaker(secret=settings.secret_key, public_url="https://crm.example")
    with db.read() as session:
        context = message_context(
            session=session,
            workspace_id=workspace,
            profile_id=ada,
            trigger={"type": "event", "event": "Checkout Started", "cart_id": "c-9"},
            links=maker,
            purpose=EMAIL_PURPOSE,
        )
    profile = context["profile"]
    assert profile["id"] == ada
    assert (profile["first_name"], profile["last_name"], profile["name"]) == (
        "Ada",
        "Lovelace",
        "Ada Lovelace",
    )
    assert (profile["city"], profile["country"]) == ("London", "GB")
    assert profile["email"] == "Ada@Example.com" and profile["birthday"] is None
    assert context["traits"]["plan"] == "gold" and context["traits"]["no_such_trait"] is None
    cart = context["cart"]
    assert cart["id"] == "c-9"
    assert [(i["product_id"], i["quantity"]) for i in cart["items"]] == [("p-7", 1), ("p-8", 2)]
    assert cart["count"] == 3
    assert context["order"]["id"] == "o-1001" and context["order"]["total"] == 29.9
    assert context["order"]["items"][0]["name"] == "Engine mug"
    assert context["recommendations"] == []  # no model trained in this workspace
    assert context["event"]["name"] == "Checkout Started"
    assert context["brand"]["name"] == workspace

    unsubscribe = urlsplit(context["unsubscribe_url"])
    assert (unsubscribe.scheme, unsubscribe.netloc) == ("https", "crm.example")
    assert unsubscribe.path.startswith("/u/")
    opened = links.read(
        settings.secret_key, unsubscribe.path[3:], kind=links.UNSUBSCRIBE, now=utcnow()
    )
    assert opened.profile_id == ada and opened.workspace_id == workspace
    assert opened.extra == {"purpose": EMAIL_PURPOSE, "channel": "email"}
    assert opened.expires_at > utcnow() + timedelta(days=364)
    preferences = urlsplit(context["preferences_url"]).path
    assert links.read(settings.secret_key, preferences[3:], kind=links.PREFERENCES, now=utcnow())

    with db.read() as session:
        fallback = message_context(
            session=session,
            workspace_id=workspace,
            profile_id=ada,
            trigger={"type": "inactivity"},
            links=maker,
        )
    assert fallback["cart"]["id"] in ("c-9", "c-old")  # the newest open cart
    assert fallback["product"] == dict.fromkeys(PRODUCT_FIELDS)
    with db.read() as session:
        viewed = message_context(
            session=session,
            workspace_id=workspace,
            profile_id=ada,
            trigger={"event": "Product Viewed", "product_id": "p-8", "event_id": 7},
            links=maker,
        )
    assert viewed["product"]["product_id"] == "p-8"
    assert viewed["product"]["name"] == "Brass gear" and viewed["product"]["price"] == 12.25
    assert viewed["event"]["properties"] == {"product_id": "p-8"}
    assert fallback["unsubscribe_url"] == fallback["preferences_url"]  # no purpose: the centre


def test_a_rendered_mail_unsubscribes_its_reader_in_one_click(
    client: TestClient, db: Database, workspace: str, settings: Settings
) -> None:
    ada = _shop(db, workspace)
    grant(db, workspace, ada)
    template = MessageTemplate(
        subject="{{ cart.count }} items wait for you, {{ profile.first_name }}",
        text="{% for i in cart.items %}{{ i.name }} x{{ i.quantity }}\n{% endfor %}"
        "Leave: {{ unsubscribe_url }}",
    )
    assert template_problems(template, kind="email", field="template") == []
    with db.read() as session:
        context = message_context(
            session=session,
            workspace_id=workspace,
            profile_id=ada,
            trigger={"event": "Checkout Started", "properties": {"cart_id": "c-9"}},
            links=LinkMaker(secret=settings.secret_key, public_url=settings.public_url),
            purpose=EMAIL_PURPOSE,
        )
    out = render(template, kind="email", context=context)
    assert out.subject == "3 items wait for you, Ada"
    assert out.text.startswith("Punch card notebook x1\nBrass gear x2\nLeave: ")
    headers = mail_headers(unsubscribe_url=context["unsubscribe_url"], mailto="help@shop.example")
    url = headers["List-Unsubscribe"].split(">")[0][1:]
    assert url == context["unsubscribe_url"] and url in out.text
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    def allowed() -> bool:
        with db.read() as session:
            return policy.can_use(
                session=session,
                workspace_id=workspace,
                profile_id=ada,
                purpose=EMAIL_PURPOSE,
                channel="email",
            ).allowed

    assert allowed()
    done = client.post(
        urlsplit(url).path,
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert done.status_code == 200, done.text
    assert not allowed()
    page = client.get(urlsplit(context["preferences_url"]).path)
    assert page.status_code == 200
