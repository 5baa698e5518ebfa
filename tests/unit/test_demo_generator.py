"""The demo-shop generator: determinism, Segment shape, identity dirt, behaviour, volume."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from typing import Any

import phonenumbers
import pytest

from consentry.demo.catalog import CATEGORY_NAMES, MARKETS, build_catalog
from consentry.demo.generator import (
    JUNK_IDS,
    ShopSpec,
    generate_shop,
    planted_duplicates,
    window,
)
from consentry.demo.people import SECOND_APPEARANCE_SHARE, Person
from consentry.profiles.dedupe_records import fold
from consentry.profiles.models import (
    ANONYMOUS_ID,
    USER_ID,
    Identifier,
    extract_identifiers,
    normalize_email,
    normalize_phone,
)

Message = dict[str, Any]

SMALL = ShopSpec(customers=300, months=6)  # 2026-05-01 .. 2026-11-01
TYPES = {"identify", "track", "page", "screen", "alias"}
PRODUCT_KEYS = {"product_id", "sku", "name", "category", "brand", "price", "quantity"}


@pytest.fixture(scope="module")
def small() -> list[Message]:
    return list(generate_shop(SMALL))


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != "" and value not in JUNK_IDS


def _ts(message: Message) -> datetime:
    return datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))


def _events(messages: list[Message], name: str) -> list[Message]:
    return [m for m in messages if m["type"] == "track" and m["event"] == name]


def _is_store(message: Message) -> bool:
    return str(message.get("anonymousId", "")).startswith("pos_")


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_messages(small: list[Message]) -> None:
    assert list(generate_shop(SMALL)) == small


def test_different_seed_gives_different_messages(small: list[Message]) -> None:
    other = generate_shop(ShopSpec(customers=300, months=6, seed=7))
    first = [next(other) for _ in range(50)]
    assert [m["messageId"] for m in first] != [m["messageId"] for m in small[:50]]


def test_generator_is_lazy() -> None:
    stream = generate_shop(ShopSpec(customers=50, months=2))
    assert next(stream)["type"] in TYPES


def test_spec_validates_and_accepts_naive_end() -> None:
    with pytest.raises(ValueError):
        ShopSpec(customers=0)
    start, end = window(ShopSpec(months=3, end=datetime(2026, 3, 31)))
    assert (start, end) == (datetime(2025, 12, 31, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC))


# --------------------------------------------------------------------------- Segment shape


def test_messages_are_json_serialisable(small: list[Message]) -> None:
    assert json.loads(json.dumps(small)) == small


def test_timestamps_are_ordered_iso_z_and_inside_the_window(small: list[Message]) -> None:
    start, end = window(SMALL)
    assert start == datetime(2026, 5, 1, tzinfo=UTC)
    stamps = [m["timestamp"] for m in small]
    assert all(s.endswith("Z") for s in stamps)
    parsed = [_ts(m) for m in small]
    assert parsed == sorted(parsed)
    assert start <= parsed[0] and parsed[-1] < end


def test_every_message_has_type_unique_id_and_an_identity(small: list[Message]) -> None:
    ids = [m["messageId"] for m in small]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 for i in ids[:1000])
    for m in small:
        assert m["type"] in TYPES
        assert _valid_id(m.get("userId")) or _valid_id(m.get("anonymousId")), m
        assert {"library", "ip"} <= m["context"].keys()
        if m["type"] == "alias":
            assert _valid_id(m["previousId"]) and _valid_id(m["userId"])


def test_calls_carry_their_type_specific_fields(small: list[Message]) -> None:
    for m in small:
        kind = m["type"]
        if kind == "track":
            assert m["event"] and isinstance(m["properties"], dict)
        elif kind in ("page", "screen"):
            assert m["name"] and isinstance(m["properties"], dict)
        elif kind == "identify":
            assert m["traits"]
        if kind == "page":
            assert m["context"]["page"]["url"].startswith("https://")
            assert m["context"]["userAgent"]
        if kind == "screen":
            assert {"app", "device", "os"} <= m["context"].keys()


def test_junk_ids_appear_but_never_as_the_only_id(small: list[Message]) -> None:
    junk = [m for m in small if m.get("userId") in JUNK_IDS or m.get("anonymousId") in JUNK_IDS]
    assert 0 < len(junk) < len(small) * 0.02
    assert {m.get("userId") for m in junk} & {"undefined", "null", "guest", "0", "None"}
    for m in junk:
        assert _valid_id(m.get("userId")) or _valid_id(m.get("anonymousId"))


# --------------------------------------------------------------------------- e-commerce spec


def test_order_completed_properties_follow_the_spec(small: list[Message]) -> None:
    orders = _events(small, "Order Completed")
    assert orders
    ids = [o["properties"]["order_id"] for o in orders]
    assert len(set(ids)) == len(ids)
    keys = {"order_id", "checkout_id", "total", "revenue", "shipping", "tax", "discount"}
    for order in orders:
        props = order["properties"]
        assert keys | {"currency", "products"} <= props.keys()
        assert props["products"]
        for product in props["products"]:
            assert PRODUCT_KEYS <= product.keys() and product["quantity"] >= 1
        subtotal = sum(p["price"] * p["quantity"] for p in props["products"])
        assert props["revenue"] == pytest.approx(subtotal - props["discount"], abs=0.011)
        total = props["revenue"] + props["shipping"] + props["tax"]
        assert props["total"] == pytest.approx(total, abs=0.011)
    assert any("coupon" in o["properties"] for o in orders)
    assert {o["properties"]["currency"] for o in orders} == {"USD", "GBP", "EUR"}


def test_browsing_events_follow_the_spec(small: list[Message]) -> None:
    for name in ("Product Viewed", "Product Added", "Product Removed"):
        events = _events(small, name)
        assert events, name
        for event in events:
            assert PRODUCT_KEYS | {"cart_id", "currency"} <= event["properties"].keys()
    for name in ("Cart Viewed", "Checkout Started"):
        for event in _events(small, name):
            props = event["properties"]
            assert {"cart_id", "products", "value", "currency"} <= props.keys()
    assert all(e["properties"]["query"] for e in _events(small, "Products Searched"))


def test_abandoned_carts_and_checkouts_exist(small: list[Message]) -> None:
    bought_carts = {m["properties"]["cart_id"] for m in _events(small, "Cart Viewed")} & {
        m["properties"]["cart_id"] for m in _events(small, "Checkout Started")
    }
    checkouts = {m["properties"]["checkout_id"] for m in _events(small, "Checkout Started")}
    completed = {m["properties"]["checkout_id"] for m in _events(small, "Order Completed")}
    added = {m["properties"]["cart_id"] for m in _events(small, "Product Added")}
    assert len(added - bought_carts) > 50
    assert len(checkouts - completed) > 10


def test_refunds_and_cancellations_follow_their_orders(small: list[Message]) -> None:
    placed = {m["properties"]["order_id"]: _ts(m) for m in _events(small, "Order Completed")}
    refunds, cancels = _events(small, "Order Refunded"), _events(small, "Order Cancelled")
    assert refunds and cancels
    for event in refunds + cancels:
        props = event["properties"]
        assert {"order_id", "total", "currency"} <= props.keys()
        assert placed[props["order_id"]] < _ts(event)
    assert any("products" in r["properties"] for r in refunds)


def test_catalogue_has_about_200_products_in_10_categories() -> None:
    catalog = build_catalog()
    assert 180 <= len(catalog) <= 230
    assert len({p.category for p in catalog}) == len(CATEGORY_NAMES) == 10
    assert len({p.sku for p in catalog}) == len({p.product_id for p in catalog}) == len(catalog)
    assert any(p.replenishable for p in catalog) and not all(p.replenishable for p in catalog)
    currencies = {m.currency for m in MARKETS}
    assert all(set(p.prices) == currencies and min(p.prices.values()) > 0 for p in catalog)


# --------------------------------------------------------------------------- identity


def test_anonymous_browsing_is_linked_by_a_later_identify(small: list[Message]) -> None:
    anonymous_first: set[str] = set()
    linked = 0
    for m in small:
        anon = str(m.get("anonymousId"))
        if m["type"] != "identify" and "userId" not in m:
            anonymous_first.add(anon)
        elif m["type"] == "identify" and _valid_id(m.get("userId")) and anon in anonymous_first:
            linked += 1
    assert linked > 30


def test_support_emails_differ_from_web_emails_only_by_case_and_space(
    small: list[Message],
) -> None:
    web = {
        m["traits"]["email"]
        for m in small
        if m["type"] == "identify" and _valid_id(m.get("userId")) and "email" in m["traits"]
    }
    support = [
        m["traits"]["email"]
        for m in small
        if m["type"] == "identify" and "userId" not in m and set(m["traits"]) == {"email"}
    ]
    assert support
    matches = [e for e in support if e.strip().lower() in web]
    assert len(matches) > 10
    assert all(e not in web for e in matches)
    assert any(e != e.strip() for e in matches) and any(e.strip() != e.lower() for e in matches)


def test_store_orders_are_known_only_by_email_or_phone(small: list[Message]) -> None:
    store = [m for m in _events(small, "Order Completed") if m["properties"]["channel"] == "store"]
    assert len(store) > 20
    assert all(_is_store(m) and "userId" not in m for m in store)
    contacts = Counter(tuple(sorted(m["context"].get("traits", {}))) for m in store)
    assert contacts[("email",)] and contacts[("phone",)]


def test_phones_are_written_differently_but_all_parse(small: list[Message]) -> None:
    phones: list[tuple[str, str]] = []
    for m in small:
        for traits in (m.get("traits"), m["context"].get("traits")):
            if traits and "phone" in traits:
                address = traits.get("address") or {}
                phones.append((traits["phone"], address.get("country", "US")))
    assert len(phones) > 50
    for raw, region in phones:
        text = "+" + raw[2:] if raw.startswith("00") else raw
        assert phonenumbers.is_valid_number(phonenumbers.parse(text, region)), raw
    spellings = {raw[0] if raw[0] in "+(0" else "digits" for raw, _ in phones}
    assert {"+", "("} <= spellings


def test_people_use_several_channels_and_aliases_exist(small: list[Message]) -> None:
    channels: dict[str, set[str]] = defaultdict(set)
    for m in small:
        if _valid_id(m.get("userId")) and m["type"] != "alias":
            channels[m["userId"]].add("app" if "app" in m["context"] else "web")
    assert sum(1 for c in channels.values() if c == {"app", "web"}) > 10
    aliases = [m for m in small if m["type"] == "alias"]
    assert aliases and all(a["previousId"] == a["anonymousId"] for a in aliases)


def test_a_few_invalid_emails_are_included(small: list[Message]) -> None:
    emails = [
        traits["email"]
        for m in small
        for traits in (m.get("traits"), m["context"].get("traits"))
        if traits and "email" in traits
    ]
    invalid = [e for e in emails if e.count("@") != 1 or " " in e.strip() or "." not in e[-5:]]
    assert 0 < len(invalid) < len(emails) * 0.05


def _joined_by_identifiers(messages: list[Message]) -> dict[Identifier, Identifier]:
    """What deterministic resolution could join at most (no caps): each identifier's group,
    as a representative identifier."""
    parent: dict[Identifier, Identifier] = {}

    def find(x: Identifier) -> Identifier:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for m in messages:
        found = extract_identifiers(m)
        if m["type"] == "alias" and _valid_id(m.get("previousId")):
            found.append(Identifier(ANONYMOUS_ID, m["previousId"]))
        for other in found:
            parent[find(other)] = find(found[0])
    return {x: find(x) for x in parent}


def _person_ids(person: Person) -> set[Identifier]:
    ids = {Identifier(ANONYMOUS_ID, d.anonymous_id) for d in person.web}
    if person.user_id:
        ids.add(Identifier(USER_ID, person.user_id))
    return ids


def test_a_few_customers_come_back_unlinked_but_recognisable(small: list[Message]) -> None:
    pairs = planted_duplicates(SMALL)
    assert len(pairs) == round(SMALL.customers * SECOND_APPEARANCE_SHARE) == 11
    assert [t.email for _, t in pairs] == [t.email for _, t in planted_duplicates(SMALL)]
    assert {t.twin_kind for _, t in pairs} == {"guest", "store", "account"}
    other = planted_duplicates(ShopSpec(customers=300, months=6, seed=7))
    assert [o.index for o, _ in other] != [o.index for o, _ in pairs]
    for original, twin in pairs:
        assert original.user_id and original.twin_of is None and twin.twin_of == original.index
        assert twin.user_id != original.user_id and twin.support_id != original.support_id
        assert (twin.user_id is not None) == (twin.twin_kind == "account")
        assert normalize_email(twin.email) != normalize_email(original.email)
        assert twin.phone is None or normalize_phone(twin.phone) != normalize_phone(original.phone)
        assert not _person_ids(twin) & _person_ids(original)
        # the evidence: the name (perhaps misspelled, nicknamed or swapped), birthday, address
        names = {fold(original.first_name), fold(original.last_name)}
        again = {fold(twin.first_name), fold(twin.last_name)}
        assert names & again, (original, twin)  # one of the two is written the same
        assert twin.birthday == original.birthday and twin.market is original.market
        assert twin.address["postal_code"] == original.address["postal_code"]
        assert twin.address["country"] == original.address["country"]
        assert fold(twin.address["city"]) == fold(original.address["city"])
    assert any(fold(t.last_name) not in {fold(o.first_name), fold(o.last_name)} for o, t in pairs)


def test_second_appearances_are_real_profiles_that_identifiers_do_not_join(
    small: list[Message],
) -> None:
    group = _joined_by_identifiers(small)
    by_group: dict[Identifier, list[Message]] = defaultdict(list)
    for m in small:
        found = extract_identifiers(m)
        if found:
            by_group[group[found[0]]].append(m)
    for original, twin in planted_duplicates(SMALL):
        assert original.user_id is not None
        mine = group[Identifier(USER_ID, original.user_id)]
        theirs = group[Identifier("email", str(normalize_email(twin.email)))]
        assert mine != theirs, (original, twin)
        messages = by_group[theirs]
        assert any(m.get("event") == "Order Completed" for m in messages) or twin.user_id
        assert len(messages) >= 2
        told = [m["traits"] for m in messages if m["type"] == "identify" and "traits" in m]
        assert any({"first_name", "last_name", "address"} <= t.keys() for t in told), twin
        assert all(t.get("birthday", twin.birthday) == twin.birthday for t in told)
        if twin.twin_kind == "store":  # the loyalty form, typed in capitals at the till
            assert any(t.get("last_name") == twin.last_name.upper() for t in told)
            assert all(_is_store(m) for m in messages)


# --------------------------------------------------------------------------- behaviour


def test_repeat_and_one_time_buyers_exist(small: list[Message]) -> None:
    per_user = Counter(
        m["userId"] for m in _events(small, "Order Completed") if _valid_id(m.get("userId"))
    )
    counts = Counter(per_user.values())
    assert counts[1] > sum(n for k, n in counts.items() if k >= 2) * 0.6
    assert sum(n for k, n in counts.items() if k >= 2) > 30
    assert max(per_user.values()) >= 6


def test_orders_peak_in_november_and_december() -> None:
    spec = ShopSpec(customers=400, months=12, end=datetime(2027, 1, 1, tzinfo=UTC))
    per_month = Counter(
        m["timestamp"][:7]
        for m in generate_shop(spec)
        if m["type"] == "track" and m["event"] == "Order Completed"
    )
    summer = (per_month["2026-06"] + per_month["2026-07"] + per_month["2026-08"]) / 3
    assert per_month["2026-11"] > summer and per_month["2026-12"] > summer


def test_default_spec_meets_the_volume_floors() -> None:
    started = time.process_time()  # CPU time: robust to a busy machine
    total, orders = 0, 0
    users: set[str] = set()
    months: set[str] = set()
    for m in generate_shop(ShopSpec()):
        total += 1
        if m["type"] == "track" and m["event"] == "Order Completed":
            orders += 1
        if _valid_id(m.get("userId")):
            users.add(m["userId"])
        months.add(m["timestamp"][:7])
    assert time.process_time() - started < 30
    assert total >= 50_000 and orders >= 10_000 and len(users) >= 5_000
    assert len(months) == 18 and min(months) == "2025-05" and max(months) == "2026-10"
