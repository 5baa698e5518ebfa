"""The pure rules of consent signals: reading GPC and the consent object off a message, the
category map, and the GPC conflict rule (CCPA regulations §7025)."""

from __future__ import annotations

from consentry.consent.models import DEFAULT_PURPOSES, DENIED, GRANTED, WITHDRAWN
from consentry.consent.signals import (
    DEFAULT_CATEGORY_MAP,
    GPC_PURPOSE,
    Standing,
    acknowledges_gpc,
    category_map_problems,
    category_needs_record,
    category_preferences,
    effective_map,
    gpc_needs_record,
    has_gpc,
    normalize_category,
    read_categories,
)

PURPOSES = {p.key for p in DEFAULT_PURPOSES}


def test_gpc_and_the_consent_object_are_read_off_the_context() -> None:
    assert has_gpc({"context": {"gpc": True}})
    assert not has_gpc({"context": {"gpc": "true"}})  # only the JSON true the route sets
    assert not has_gpc({"context": None}) and not has_gpc({})
    prefs = {"Advertising": True}
    assert category_preferences({"context": {"consent": {"categoryPreferences": prefs}}}) == prefs
    assert category_preferences({"context": {"consent": {"categoryPreferences": {}}}}) is None
    assert category_preferences({"context": {"consent": "yes"}}) is None


def test_category_names_are_compared_normalised() -> None:
    assert normalize_category("SaleOfData") == normalize_category("sale_of data") == "saleofdata"
    assert DEFAULT_CATEGORY_MAP["datasharing"] == (GPC_PURPOSE, "third_party_sharing")
    assert effective_map({"C0004": [GPC_PURPOSE], "Functional": ["analytics"]})["c0004"] == (
        GPC_PURPOSE,
    )
    assert effective_map({"Functional": ["analytics"]})["functional"] == ("analytics",)


def test_reading_a_consent_object() -> None:
    reading = read_categories(
        {
            "Advertising": True,
            "Analytics": False,
            "Functional": True,  # known, maps to nothing
            "Personalization": "yes",  # not a boolean
            "C0099": True,  # unknown
        },
        DEFAULT_CATEGORY_MAP,
        PURPOSES,
    )
    assert reading.states == {GPC_PURPOSE: GRANTED, "analytics": DENIED}
    assert (reading.unknown, reading.invalid) == (1, 1)


def test_a_purpose_named_by_two_categories_needs_both() -> None:
    reading = read_categories(
        {"Advertising": True, "Marketing": False}, DEFAULT_CATEGORY_MAP, PURPOSES
    )
    assert reading.states[GPC_PURPOSE] == DENIED
    only_ours = read_categories({"DataSharing": False}, DEFAULT_CATEGORY_MAP, {"analytics"})
    assert only_ours.states == {}  # the workspace has neither purpose


def test_gpc_is_recorded_unless_a_gpc_denial_or_an_acknowledged_grant_stands() -> None:
    assert gpc_needs_record(None)
    assert gpc_needs_record(Standing(GRANTED, "web_form"))  # an earlier grant: overridden
    assert gpc_needs_record(Standing(GRANTED, "cmp", gpc_seen=True))  # a banner: not explicit
    assert gpc_needs_record(Standing(DENIED, "preference_center"))  # recorded once, as GPC
    assert not gpc_needs_record(Standing(DENIED, "gpc", gpc_seen=True))
    assert not gpc_needs_record(Standing(WITHDRAWN, "gpc"))
    acknowledged = Standing(GRANTED, "preference_center", gpc_seen=True)
    assert acknowledges_gpc(acknowledged) and not gpc_needs_record(acknowledged)
    assert gpc_needs_record(Standing(GRANTED, "preference_center", gpc_seen=False))


def test_the_consent_object_is_recorded_when_the_cmp_changes_its_answer() -> None:
    assert category_needs_record(GRANTED, None, None, "analytics")  # the first answer
    assert not category_needs_record(GRANTED, GRANTED, None, "analytics")
    assert category_needs_record(DENIED, GRANTED, Standing(GRANTED, "cmp"), "analytics")
    gpc = Standing(DENIED, "gpc", gpc_seen=True)
    assert not category_needs_record(GRANTED, None, gpc, GPC_PURPOSE)  # no grant over GPC
    assert category_needs_record(DENIED, GRANTED, gpc, GPC_PURPOSE)
    assert category_needs_record(GRANTED, DENIED, gpc, "analytics")  # GPC is sale/sharing only


def test_category_map_problems_name_each_field() -> None:
    errors = category_map_problems(
        {"Ads": [GPC_PURPOSE, "nope"], "a-d-s": [], "": [], "Bad": "analytics"}, PURPOSES
    )
    found = {(e.field, e.reason.split(" ")[0]) for e in errors}
    assert ("categories.Ads", "unknown") in found
    assert ("categories.a-d-s", "the") in found  # same name as Ads once normalised
    assert ("categories.", "1") in found
    assert ("categories.Bad", "a") in found
    assert category_map_problems({"C0004": [GPC_PURPOSE]}, PURPOSES) == []
