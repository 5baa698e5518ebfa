"""Consent rates: pure tallies (unit) and the endpoint on both stores (HTTP)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from consentry.consent import rates
from tests.support.segment import basic, bearer, identify

EMAIL = "marketing.communications.email"
SALE = "marketing.advertising.third_party"


def choice(
    day: int, state: str, source: str = "web_form", notice: str | None = None
) -> rates.Choice:
    moment = datetime(2026, 11, 2, 9, tzinfo=UTC) + timedelta(days=day)  # a Monday
    return rates.Choice(moment, EMAIL, "email", source, notice, state)


def test_rates_per_week_and_source() -> None:
    made = [
        choice(0, "granted"),
        choice(1, "granted"),
        choice(2, "denied"),
        choice(3, "withdrawn", source="gpc"),
        choice(7, "denied", source="gpc"),
        choice(8, "pending"),
    ]
    series, overall = rates.tally(made, interval="week", by="source")
    by_key = {(t.period, t.key): t for t in series}
    web = by_key[("2026-11-02", "web_form")]
    assert (web.granted, web.denied, web.opt_in_rate) == (2, 1, pytest.approx(2 / 3))
    assert by_key[("2026-11-02", "gpc")].gpc_share == 1.0
    assert by_key[("2026-11-09", "web_form")].opt_in_rate is None  # only a pending one
    assert overall.opt_in_rate == pytest.approx(2 / 4)
    assert overall.withdrawal_rate == pytest.approx(1 / 5)
    assert overall.gpc_share == pytest.approx(2 / 3)


def test_records_without_a_notice_are_grouped_apart() -> None:
    series, _ = rates.tally(
        [choice(0, "granted", notice="v1"), choice(0, "denied")],
        interval="month",
        by="notice_version",
    )
    assert [(t.period, t.key) for t in series] == [("2026-11-01", "(none)"), ("2026-11-01", "v1")]


@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2200, 1, 1)))
def test_a_moment_lies_in_the_period_it_is_put_in(moment: datetime) -> None:
    for interval, longest in (("day", 1), ("week", 7), ("month", 31)):
        start = rates.period_start(moment.replace(tzinfo=UTC), interval)
        assert start <= moment.date() < start + timedelta(days=longest)
        assert interval != "week" or start.weekday() == 0
        assert interval != "month" or start.day == 1
        assert isinstance(start, date)


def test_the_rates_endpoint(client: TestClient, write_key: str, admin_token: str) -> None:
    auth = bearer(admin_token)
    for n in range(4):
        client.post("/v1/identify", json=identify(userId=f"r-{n}"), headers=basic(write_key))
    states = [("granted", "web_form"), ("granted", "checkout"), ("denied", "web_form")]
    at = "2026-10-05T10:00:00Z"
    for n, (state, source) in enumerate(states):
        body = {"user_id": f"r-{n}", "purpose": EMAIL, "channel": "email", "state": state}
        made = client.post(
            "/v1/consent", json={**body, "source": source, "occurred_at": at}, headers=auth
        )
        assert made.status_code == 201, made.text
    gpc = {"user_id": "r-3", "purpose": SALE, "state": "denied", "source": "gpc", "occurred_at": at}
    assert client.post("/v1/consent", json=gpc, headers=auth).status_code == 201
    window = {"since": "2026-10-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}
    found = client.get(
        "/v1/consent/rates", params={**window, "interval": "month", "by": "channel"}, headers=auth
    )
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["overall"]["opt_in_rate"] == pytest.approx(2 / 4)
    assert body["overall"]["gpc_share"] == pytest.approx(1 / 2)
    email = next(t for t in body["series"] if t["key"] == "email")
    assert (email["period"], email["granted"], email["denied"]) == ("2026-10-01", 2, 1)
    only_email = client.get(
        "/v1/consent/rates", params={**window, "purpose": EMAIL, "by": "source"}, headers=auth
    ).json()
    assert {t["key"] for t in only_email["series"]} == {"web_form", "checkout"}
    for bad in (
        {"interval": "hour"},
        {"by": "colour"},
        {"since": "2026-12-01T00:00:00Z", **{"until": "2026-11-01T00:00:00Z"}},
    ):
        response = client.get("/v1/consent/rates", params=bad, headers=auth)
        assert response.status_code == 400, (bad, response.text)
    outside = client.get(
        "/v1/consent/rates",
        params={"since": "2025-01-01T00:00:00Z", "until": "2025-02-01T00:00:00Z"},
        headers=auth,
    ).json()
    assert outside["series"] == [] and outside["overall"]["opt_in_rate"] is None
