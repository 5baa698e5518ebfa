"""Recommendations end to end on both stores: a generated shop ingested through the services,
trained, served with consent deciding the kind of list, versions, erasure, isolation.

``shop_messages`` is also what the HTTP tests and ``bench/recommend_serving.py`` ingest.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consentry.config import RecommendSettings
from consentry.consent import service as consent
from consentry.consent.models import ConsentIn
from consentry.errors import Conflict, Invalid, NotFound
from consentry.platform.db import Database
from consentry.privacy import erasure_service
from consentry.recommend import service
from tests.conftest import new_workspace
from tests.support.segment import identify, track
from tests.support.store import profile_of, send

# within the browsing window (the last 180 days) and in the past
START = (datetime.now(UTC) - timedelta(days=120)).replace(microsecond=0)
CATEGORIES = {
    # name: (replenishable, products)
    "Coffee": (True, 6),
    "Tea": (True, 6),
    "Baby": (True, 6),
    "Pets": (True, 6),
    "Garden": (False, 8),
    "Books": (False, 10),
}
COUNTRIES = ("US", "US", "DE", "GB", "FR", "CA")
SETTINGS = RecommendSettings(evaluate=True, top_n=40, neighbours=30)


def product(category: str, j: int) -> dict[str, Any]:
    return {
        "product_id": f"{category.lower()}-{j}",
        "name": f"{category} {j}",
        "category": category,
        "price": 5 + 3 * j,
    }


def catalogue() -> dict[str, list[dict[str, Any]]]:
    return {c: [product(c, j) for j in range(n)] for c, (_, n) in CATEGORIES.items()}


def shop_messages(
    customers: int = 120, seed: int = 5, prefix: str = "c", *, start: datetime = START
) -> Iterator[dict[str, Any]]:
    """A shop whose customers each like one or two categories: they view its products, add
    them to carts and order them again and again (staples: coffee, tea, baby, pets) or once
    (garden, books). ``{prefix}{i}`` is the userId of customer i; its country comes from
    ``COUNTRIES`` by ``i % 6`` (0, 1: US; 2: DE; 3: GB; 4: FR; 5: CA)."""
    rng = random.Random(seed)
    products = catalogue()
    names = list(products)
    for i in range(customers):
        user = f"{prefix}{i}"
        liked = rng.sample(names, rng.choice((1, 2)))
        at = start + timedelta(hours=rng.randrange(24 * 20))
        yield identify(userId=user, traits={"country": COUNTRIES[i % 6]}, timestamp=at.isoformat())
        staples = [rng.choice(products[c]) for c in liked if CATEGORIES[c][0]]
        owned: set[str] = set()  # one-offs (garden, books) are bought once
        for k in range(rng.randint(1, 5)):
            at += timedelta(days=rng.randint(3, 12), minutes=rng.randrange(600))
            seen = [rng.choice(products[rng.choice(liked)]) for _ in range(rng.randint(2, 5))]
            for p in seen:
                at += timedelta(minutes=1)
                yield track("Product Viewed", userId=user, timestamp=at.isoformat(), properties=p)
            new = [p for p in seen if p["product_id"] not in owned]
            basket = {p["product_id"]: p for p in [*staples, *new[: rng.randint(0, 2)]]}
            if not basket:
                continue
            owned.update(p for p in basket if not CATEGORIES[basket[p]["category"]][0])
            for p in basket.values():
                at += timedelta(minutes=1)
                yield track("Product Added", userId=user, timestamp=at.isoformat(), properties=p)
            at += timedelta(minutes=2)
            lines = [{**p, "quantity": 1} for p in basket.values()]
            yield track(
                "Order Completed",
                userId=user,
                timestamp=at.isoformat(),
                properties={
                    "order_id": f"{user}-o{k}",
                    "total": sum(p["price"] for p in lines),
                    "currency": "USD",
                    "products": lines,
                },
            )


def seed_shop(db: Database, workspace: str, **kwargs: Any) -> None:
    messages = list(shop_messages(**kwargs))
    for start in range(0, len(messages), 500):
        send(db, workspace, *messages[start : start + 500])


def grant(db: Database, workspace: str, profile_id: str, state: str = "granted") -> None:
    with db.write() as session:
        consent.record_request(
            session=session,
            workspace_id=workspace,
            item=ConsentIn.model_validate(
                {
                    "profile_id": profile_id,
                    "purpose": "personalize",
                    "channel": "any",
                    "state": state,
                    "source": "preference_center",
                }
            ),
            actor="test",
        )


@pytest.fixture(scope="module")
def trained(db: Database) -> tuple[str, service.TrainReport]:
    """One shop for the module's read-only tests, trained once."""
    workspace = new_workspace(db)
    seed_shop(db, workspace)
    return workspace, service.train(db, workspace, SETTINGS)


def serve(db: Database, workspace: str, profile_id: str, **kwargs: Any) -> dict[str, Any]:
    with db.read() as session:
        return service.for_profile(
            session=session,
            workspace_id=workspace,
            profile_id=profile_id,
            settings=kwargs.pop("settings", SETTINGS),
            **kwargs,
        )


def test_training_stores_an_active_version_with_offline_metrics(
    db: Database, trained: tuple[str, service.TrainReport]
) -> None:
    workspace, report = trained
    assert report.version == 1
    assert 110 <= report.counts["customers"] <= 120 and report.counts["views"] > 0
    assert report.counts["cart_adds"] > 0 and report.counts["catalogue"] == 42
    # learned from the customers' habits, it beats listing the most popular products
    assert report.metrics["recall@10"] > report.metrics["popular_recall@10"]
    with db.read() as session:
        listed = service.models(session=session, workspace_id=workspace)
    assert [(m["version"], m["active"]) for m in listed] == [(1, True)]
    assert listed[0]["bytes"] > 0 and listed[0]["counts"]["order_lines"] > 0


def test_a_consenting_customer_gets_a_personalised_list_others_the_popular_one(
    db: Database, trained: tuple[str, service.TrainReport]
) -> None:
    workspace, _ = trained
    # c2 lives in Germany: opt-in, nothing without a grant
    german = profile_of(db, workspace, user_id="c2").id
    refused = serve(db, workspace, german)
    assert refused["kind"] == "non_personalized"
    assert refused["reason"] == "no_personalization_consent"
    assert refused["consent"] == {
        "purpose": "personalize",
        "channel": "web",
        "allowed": False,
        "reason": "no_consent",
        "regime": "opt_in",
    }
    grant(db, workspace, german)
    personal = serve(db, workspace, german)
    assert personal["kind"] == "personalized" and personal["reason"] == "consented"
    assert personal["consent"]["allowed"] is True and personal["consent"]["reason"] == "granted"
    ours = [i["product_id"] for i in personal["items"]]
    theirs = [i["product_id"] for i in refused["items"]]
    assert ours != theirs and len(ours) == len(theirs) == 10
    assert [i["rank"] for i in personal["items"]] == list(range(1, 11))
    # the popular list is everyone's: another refusing customer gets the very same one
    other = profile_of(db, workspace, user_id="c8").id  # Germany too
    assert [i["product_id"] for i in serve(db, workspace, other)["items"]] == theirs
    # the personal list is about what the customer likes
    liked = _categories_bought(db, workspace, german)
    assert sum(i["category"] in liked for i in personal["items"][:3]) >= 2


def _categories_bought(db: Database, workspace: str, profile_id: str) -> set[str]:
    from consentry.commerce import service as commerce

    with db.read() as session:
        orders = commerce.orders_of(
            session=session, workspace_id=workspace, profile_ids=[profile_id]
        )
    return {item["category"] for o in orders for item in o.items}


def test_opt_out_regime_personalises_until_the_customer_withdraws(
    db: Database, trained: tuple[str, service.TrainReport]
) -> None:
    workspace, _ = trained
    american = profile_of(db, workspace, user_id="c6").id  # US: opt-out
    first = serve(db, workspace, american)
    assert first["kind"] == "personalized"
    assert first["consent"]["reason"] == "opt_out_regime_default"
    grant(db, workspace, american, state="withdrawn")
    after = serve(db, workspace, american)
    assert after["kind"] == "non_personalized"
    assert after["consent"] == {
        "purpose": "personalize",
        "channel": "web",
        "allowed": False,
        "reason": "withdrawn",
        "regime": "opt_out",
    }


def test_cold_start_unknown_and_bad_input(
    db: Database, trained: tuple[str, service.TrainReport]
) -> None:
    workspace, _ = trained
    send(db, workspace, identify(userId="newcomer", traits={"country": "US"}))
    newcomer = profile_of(db, workspace, user_id="newcomer").id
    found = serve(db, workspace, newcomer, count=5)
    assert found["kind"] == "non_personalized" and found["reason"] == "cold_start"
    assert len(found["items"]) == 5 and found["consent"]["allowed"] is True
    with pytest.raises(NotFound):
        serve(db, workspace, "no-such-profile")
    for count in (0, 101):
        with pytest.raises(Invalid) as caught:
            serve(db, workspace, newcomer, count=count)
        assert caught.value.errors[0].field == "count"
    with pytest.raises(Invalid) as caught:
        serve(db, workspace, newcomer, context="billboard")
    assert caught.value.errors[0].field == "context"


def test_already_bought_one_offs_are_not_recommended_staples_are(
    db: Database, trained: tuple[str, service.TrainReport]
) -> None:
    workspace, _ = trained
    from consentry.commerce import service as commerce

    checked = 0
    for i in range(0, 60, 6):  # US customers: personalised by default
        person = profile_of(db, workspace, user_id=f"c{i}").id
        with db.read() as session:
            orders = commerce.orders_of(
                session=session, workspace_id=workspace, profile_ids=[person]
            )
        bought = {item["product_id"]: item["category"] for o in orders for item in o.items}
        listed = serve(db, workspace, person, count=30)["items"]
        one_offs = {p for p, c in bought.items() if c in ("Garden", "Books")}
        assert not one_offs & {i["product_id"] for i in listed}
        checked += bool(one_offs)
        # diversity: at most three products of one category
        per_category: dict[str, int] = {}
        for item in listed:
            per_category[item["category"]] = per_category.get(item["category"], 0) + 1
        assert max(per_category.values()) <= SETTINGS.max_per_category  # type: ignore[operator]
    assert checked > 0


def test_item_recommendations(db: Database, trained: tuple[str, service.TrainReport]) -> None:
    workspace, _ = trained
    with db.read() as session:
        bought = service.for_item(
            session=session, workspace_id=workspace, product_id="coffee-1", settings=SETTINGS
        )
        viewed = service.for_item(
            session=session,
            workspace_id=workspace,
            product_id="coffee-1",
            settings=SETTINGS,
            kind="also_viewed",
            count=20,
        )
        with pytest.raises(NotFound):
            service.for_item(
                session=session, workspace_id=workspace, product_id="nope", settings=SETTINGS
            )
        with pytest.raises(Invalid) as caught:
            service.for_item(
                session=session,
                workspace_id=workspace,
                product_id="coffee-1",
                settings=SETTINGS,
                kind="also_liked",
            )
    assert caught.value.errors[0].field == "kind"
    ids = [i["product_id"] for i in bought["items"]]
    assert "coffee-1" not in ids and len(ids) == 10 == len(set(ids))
    assert bought["items"][0]["source"] == "also_bought"
    assert len(viewed["items"]) == 20 and viewed["items"][0]["source"] == "also_viewed"
    # customers who like coffee like... coffee: its neighbours are mostly coffee
    assert sum(i["category"] == "Coffee" for i in bought["items"][:5]) >= 3


def test_out_of_stock_products_are_left_out(db: Database) -> None:
    workspace = new_workspace(db)
    seed_shop(db, workspace, customers=60, seed=9)
    service.train(db, workspace, SETTINGS)
    american = profile_of(db, workspace, user_id="c0").id
    before = [i["product_id"] for i in serve(db, workspace, american)["items"]]
    gone = before[0]
    category, j = gone.split("-")
    send(
        db,
        workspace,
        track(
            "Product Viewed",
            userId="c1",
            properties={**product(category.capitalize(), int(j)), "in_stock": False},
        ),
    )
    after = [i["product_id"] for i in serve(db, workspace, american)["items"]]
    assert gone not in after and len(after) == 10
    with db.read() as session:
        neighbours = service.for_item(
            session=session, workspace_id=workspace, product_id=before[1], settings=SETTINGS
        )
    assert gone not in {i["product_id"] for i in neighbours["items"]}
    send(
        db,
        workspace,
        track(
            "Product Viewed",
            userId="c1",
            properties={**product(category.capitalize(), int(j)), "available": "InStock"},
        ),
    )
    assert [i["product_id"] for i in serve(db, workspace, american)["items"]] == before


def test_versions_activate_and_roll_back(db: Database) -> None:
    workspace = new_workspace(db)
    with pytest.raises(Conflict):
        service.train(db, workspace, SETTINGS)
    seed_shop(db, workspace, customers=40, seed=1)
    american = profile_of(db, workspace, user_id="c0").id
    with pytest.raises(Conflict):
        serve(db, workspace, american)
    first = service.train(db, workspace, SETTINGS)
    seed_shop(db, workspace, customers=40, seed=2, prefix="d")
    keep_two = SETTINGS.model_copy(update={"keep_versions": 2})
    second = service.train(db, workspace, keep_two)
    assert (first.version, second.version) == (1, 2)
    assert serve(db, workspace, american)["model"]["version"] == 2
    with db.write() as session:
        service.activate(session=session, workspace_id=workspace, version=1)
    assert serve(db, workspace, american)["model"]["version"] == 1
    third = service.train(db, workspace, keep_two)
    assert third.removed_versions == [1]  # past the two newest, and no longer active
    with db.write() as session:
        with pytest.raises(NotFound):
            service.activate(session=session, workspace_id=workspace, version=1)
        service.activate(session=session, workspace_id=workspace, version=2)
        listed = service.models(session=session, workspace_id=workspace)
    assert [(m["version"], m["active"]) for m in listed] == [(3, False), (2, True)]
    assert serve(db, workspace, american)["model"]["version"] == 2


def test_erasure_removes_the_person_from_every_stored_artefact(db: Database) -> None:
    workspace = new_workspace(db)
    seed_shop(db, workspace, customers=50, seed=4)
    service.train(db, workspace, SETTINGS)
    service.train(db, workspace, SETTINGS)
    person = profile_of(db, workspace, user_id="c0").id
    assert serve(db, workspace, person)["kind"] == "personalized"
    with db.read() as session:
        model = service.active_model(session=session, workspace_id=workspace)
    assert person in model.profile_index
    with db.write() as session:
        done = erasure_service.erase(
            session=session,
            workspace_id=workspace,
            profile_id=person,
            actor="test:recommend",
            reason="data subject request",
        )
    assert done.certificate["erased"]["recommendations"] == 2  # one entry in each version
    with db.read() as session:
        rows = service.models(session=session, workspace_id=workspace)
        model = service.active_model(session=session, workspace_id=workspace)
        assert (
            service.erase_subject(session=session, workspace_id=workspace, profile_ids=[person])
            == 0
        )
    assert all(r["erased"] == 1 and r["revision"] == 1 for r in rows)
    assert person not in model.profile_index and model.revision == 1
    assert "" not in model.profile_index
    (erased,) = set(range(model.artefact.user_items.shape[0])) - set(model.profile_index.values())
    assert (model.artefact.user_items[erased] == -1).all()
    assert model.artefact.user_segments[erased] == -1 and model.user_orders[erased] == 0


def test_workspaces_are_isolated(db: Database, trained: tuple[str, service.TrainReport]) -> None:
    workspace, _ = trained
    other = new_workspace(db)
    person = profile_of(db, workspace, user_id="c0").id
    seed_shop(db, other, customers=30, seed=8)
    service.train(db, other, SETTINGS)
    send(db, workspace, track("Product Viewed", userId="c0", properties=product("Secret", 1)))
    with db.read() as session:
        with pytest.raises(NotFound):
            service.for_profile(
                session=session, workspace_id=other, profile_id=person, settings=SETTINGS
            )
        with pytest.raises(NotFound):
            service.for_item(
                session=session, workspace_id=other, product_id="secret-1", settings=SETTINGS
            )
        theirs = service.active_model(session=session, workspace_id=other)
        ours = service.active_model(session=session, workspace_id=workspace)
    assert person not in theirs.profile_index and person in ours.profile_index
    assert not set(theirs.profile_index) & set(ours.profile_index)
