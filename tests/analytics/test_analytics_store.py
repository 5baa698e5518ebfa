"""Analytics runs on both stores: the scores stored for each customer equal an independent
computation over the generated orders; merges, guests, refunds, cancellations, currencies and
too little history are handled as documented."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from sqlalchemy import select

from consentry.analytics import kpi_service, periods, rfm, service
from consentry.analytics.tables import CustomerScoreRow
from consentry.config import AnalyticsSettings
from consentry.platform.db import Database
from tests.analytics.shop import (
    AS_OF,
    START,
    Order,
    buyer,
    expected_customers,
    generate,
    order_message,
)
from tests.conftest import new_workspace
from tests.support.segment import identify, track
from tests.support.store import profile_of, send


def _scores(db: Database, workspace: str) -> dict[str, CustomerScoreRow]:
    with db.read() as session:
        rows = session.scalars(
            select(CustomerScoreRow).where(CustomerScoreRow.workspace_id == workspace)
        ).all()
        session.expunge_all()
    return {r.profile_id: r for r in rows}


def _profile(db: Database, workspace: str, who: str) -> str:
    if who.startswith("anon:"):
        return profile_of(db, workspace, anonymous_id=who[5:]).id
    return profile_of(db, workspace, user_id=who).id


@pytest.fixture(scope="module")
def shop_db(db: Database) -> tuple[str, object]:
    workspace = new_workspace(db)
    shop = generate()
    send(db, workspace, *shop.messages)
    return workspace, shop


def test_scores_equal_an_independent_computation(db: Database, shop_db: tuple[str, object]) -> None:
    workspace, shop = shop_db
    report = service.run(db, workspace, AnalyticsSettings(), as_of=AS_OF)
    expected = expected_customers(shop.orders, AS_OF)  # type: ignore[attr-defined]
    stored = _scores(db, workspace)
    assert report.customers == len(expected) == len(stored)
    assert report.orders == sum(e["orders"] for e in expected.values())
    for user, e in expected.items():
        pid = _profile(db, workspace, user)
        row = stored[pid]
        assert (row.orders, row.total_cents, row.recency_days) == (
            e["orders"], e["total"], e["recency_days"]
        )  # fmt: skip
        assert (row.r, row.f, row.m) == (e["r"], e["f"], e["m"]), user
        assert row.rfm_segment == rfm.segment_of(e["r"], e["f"], e["m"])
        assert row.computed_at == AS_OF and row.run_id == report.run_id
    assert report.models["fitted"] is True, report.models
    for row in stored.values():
        assert row.p_alive is not None and 0 <= row.p_alive <= 1
        assert row.clv_cents is not None and row.clv_cents >= 0
        assert row.churn_risk is not None and 0 <= row.churn_risk <= 1 and row.churn_reason
        assert row.expected_orders_90d is not None and row.expected_orders_90d >= 0
    # one-time buyers have P(alive) 1 in BG/NBD; a repeat buyer silent for long is less alive
    with db.read() as session:
        latest = service.latest_run(session=session, workspace_id=workspace)
        grid = service.segment_grid(session=session, workspace_id=workspace)
    assert latest is not None and latest["run_id"] == report.run_id
    assert sum(map(sum, grid["grid"])) == len(expected)
    assert {
        s["name"]: s["customers"] for s in grid["segments"] if s["customers"]
    } == report.segments


def test_a_second_run_replaces_the_first(db: Database, shop_db: tuple[str, object]) -> None:
    workspace, _ = shop_db
    first = service.run(db, workspace, AnalyticsSettings(), as_of=AS_OF)
    later = service.run(db, workspace, AnalyticsSettings(), as_of=AS_OF + timedelta(days=30))
    stored = _scores(db, workspace)
    assert len(stored) == first.customers == later.customers
    assert {r.run_id for r in stored.values()} == {later.run_id}
    # thirty days later everyone is thirty days less recent
    assert all(r.recency_days >= 30 for r in stored.values())


def test_merged_profiles_count_as_one_customer(db: Database) -> None:
    workspace = new_workspace(db)
    a = Order(None, "m-1", START + timedelta(days=10), 5_000)
    b = Order(None, "m-2", START + timedelta(days=40), 7_000)
    first = order_message(a, a.cents) | {"anonymousId": "device-a"}
    second = order_message(b, b.cents) | {"anonymousId": "device-b"}
    send(db, workspace, first, second)
    send(
        db,
        workspace,
        identify(anonymousId="device-a", userId="merged-1"),
        identify(anonymousId="device-b", userId="merged-1"),
    )
    report = service.run(db, workspace, AnalyticsSettings(), as_of=AS_OF)
    person = profile_of(db, workspace, user_id="merged-1")
    stored = _scores(db, workspace)
    assert report.customers == 1 and list(stored) == [person.id]
    assert stored[person.id].orders == 2 and stored[person.id].total_cents == 12_000


def test_too_little_history_gives_rfm_only_and_says_why(db: Database) -> None:
    workspace = new_workspace(db)
    send(db, workspace, *generate(customers=6, seed=3, prefix="few").messages)
    report = service.run(db, workspace, AnalyticsSettings(), as_of=AS_OF)
    assert report.models["fitted"] is False
    assert "at least 50" in report.models["reason"]
    assert any("RFM only" in w for w in report.warnings)
    stored = _scores(db, workspace)
    assert len(stored) == report.customers > 0
    assert all(r.p_alive is None and r.clv_cents is None and r.rfm_segment for r in stored.values())


def test_an_empty_workspace_runs_and_stores_nothing(db: Database) -> None:
    workspace = new_workspace(db)
    report = service.run(db, workspace, AnalyticsSettings(), as_of=AS_OF)
    assert report.customers == 0 and report.orders == 0 and not report.models["fitted"]
    assert _scores(db, workspace) == {}


def test_orders_in_other_currencies_need_a_rate(db: Database) -> None:
    workspace = new_workspace(db)
    usd = Order("fx-1", "fx-o1", START + timedelta(days=3), 10_000)
    eur = Order("fx-1", "fx-o2", START + timedelta(days=9), 10_000, currency="EUR")
    send(db, workspace, order_message(usd, usd.cents), order_message(eur, eur.cents))
    without = service.run(db, workspace, AnalyticsSettings(), as_of=AS_OF)
    assert without.skipped_orders == {"EUR": 1} and without.orders == 1
    assert any("EUR" in w for w in without.warnings)
    with_rate = service.run(db, workspace, AnalyticsSettings(fx_rates={"eur": 1.5}), as_of=AS_OF)
    assert with_rate.skipped_orders == {} and with_rate.orders == 2
    (row,) = _scores(db, workspace).values()
    assert row.total_cents == 10_000 + 15_000


def test_kpis_and_cohorts_equal_an_independent_count(
    db: Database, shop_db: tuple[str, object]
) -> None:
    workspace, shop = shop_db
    orders = [o for o in shop.orders if o.cents > 0]  # type: ignore[attr-defined]
    window = periods.Range.of(START, AS_OF, "month")
    found = kpi_service.kpis(db, workspace, AnalyticsSettings(), window)
    first_month: dict[str, str] = {}
    for o in sorted(orders, key=lambda o: o.at):
        first_month.setdefault(buyer(o), o.at.strftime("%Y-%m"))
    by_month: dict[str, list[Order]] = {}
    for o in orders:
        by_month.setdefault(o.at.strftime("%Y-%m"), []).append(o)
    rows = {p["period"][:7]: p for p in found["periods"]}
    assert set(rows) >= set(by_month)
    for month, placed in by_month.items():
        row = rows[month]
        buyers = {buyer(o) for o in placed}
        assert row["orders"] == len(placed)
        assert row["revenue"] == pytest.approx(sum(o.cents for o in placed) / 100)
        assert row["customers"] == len(buyers)
        assert row["new_customers"] == sum(1 for u in buyers if first_month[u] == month)
        assert row["guest_orders"] == 0  # every order in the stream has a profile
    totals = found["totals"]
    assert totals["orders"] == len(orders)
    assert totals["customers"] == len(first_month)
    repeaters = {u for u in first_month if len({o.at.date() for o in orders if buyer(o) == u}) > 1}
    assert totals["repeat_purchase_rate"] == pytest.approx(len(repeaters) / len(first_month))

    cohorts = kpi_service.cohorts(db, workspace, AnalyticsSettings(), window)
    sizes = {c["cohort"]: c["customers"] for c in cohorts["cohorts"]}
    expected_sizes: dict[str, int] = {}
    for month in first_month.values():
        expected_sizes[month] = expected_sizes.get(month, 0) + 1
    assert sizes == expected_sizes
    for c in cohorts["cohorts"]:
        assert c["retention"][0] == 1.0 and all(0 <= v <= 1 for v in c["retention"])
        assert not math.isnan(sum(c["retention"]))
    # a run keeps the whole history's cohort table: the same as asked for over that range
    report = service.run(db, workspace, AnalyticsSettings(), as_of=AS_OF)
    assert report.cohorts == cohorts["cohorts"] and report.document()["cohorts"] == report.cohorts


def test_sessions_and_carts_feed_conversion_and_abandonment(db: Database) -> None:
    workspace = new_workspace(db)
    t0 = START + timedelta(days=5)

    def at(minutes: int) -> str:
        return (t0 + timedelta(minutes=minutes)).isoformat()

    send(
        db,
        workspace,
        track("Product Viewed", userId="s1", timestamp=at(0)),
        track("Product Viewed", userId="s1", timestamp=at(10)),  # same session
        track("Order Completed", userId="s1", timestamp=at(20),
              properties={"order_id": "s-o1", "total": 10}),
        track("Product Viewed", userId="s1", timestamp=at(200)),  # a second session, no order
        track("Product Viewed", anonymousId="anon-9", timestamp=at(5)),  # a third
        track("Product Added", userId="s2", timestamp=at(30),
              properties={"cart_id": "c-1", "product_id": "p1", "price": 5, "quantity": 1}),
    )  # fmt: skip
    window = periods.Range.of(START, START + timedelta(days=20), "month")
    found = kpi_service.kpis(db, workspace, AnalyticsSettings(), window)
    totals = found["totals"]
    assert totals["sessions"] == 4  # s1 twice (a 3-hour gap), anon-9, s2
    assert totals["conversion_rate"] == pytest.approx(1 / 4)
    assert totals["carts"] == 1 and totals["cart_abandonment_rate"] == 1.0


def test_ranges_are_checked(db: Database) -> None:
    from consentry.errors import Invalid

    with pytest.raises(Invalid) as reversed_range:
        periods.Range.of(AS_OF, START, "month")
    assert reversed_range.value.errors[0].field == "since"
    with pytest.raises(Invalid) as too_fine:
        periods.Range.of(START, START + timedelta(days=900), "day")
    assert too_fine.value.errors[0].field == "interval"


def test_erasure_removes_the_computed_traits(db: Database) -> None:
    from consentry.privacy import erasure_service

    workspace = new_workspace(db)
    send(db, workspace, *generate(customers=8, seed=4, prefix="er").messages)
    service.run(db, workspace, AnalyticsSettings(), as_of=AS_OF)
    person = profile_of(db, workspace, user_id="er1").id
    before = _scores(db, workspace)
    assert person in before
    with db.write() as session:
        done = erasure_service.erase(
            session=session,
            workspace_id=workspace,
            profile_id=person,
            actor="test:analytics",
            reason="DSR test",
        )
    assert done.certificate["erased"]["computed_traits"] == 1
    after = _scores(db, workspace)
    assert person not in after and len(after) == len(before) - 1
