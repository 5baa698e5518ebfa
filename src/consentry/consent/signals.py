"""Consent signals that arrive without a click, and their pure rules: Global Privacy Control (the
``Sec-GPC: 1`` header, carried on events as ``context.gpc``) and the consent object of Segment
events (``context.consent.categoryPreferences``). No SQL and no HTTP here.

The rules (docs/consent.md, "GPC" and "Consent on events"):

- A GPC signal is a request to opt out of sale/sharing (CCPA regulations, 11 CCR §7025(c)(1)):
  it records a denial of :data:`GPC_PURPOSE`, source ``gpc``, overriding an earlier grant (the
  latest record decides). It is recorded once: not again while the subject's standing for that
  purpose is a GPC denial.
- The absence of a signal is never a grant (§7025(c)(5)).
- A grant the customer makes *after* the signal, explicitly, on a page that saw it (a record of
  an explicit source whose proof says ``gpc``) acknowledges the conflict (§7025(c)(3)): further
  signals do not override it, until the customer changes that choice again.
- A category of ``context.consent`` is recorded when the CMP's answer changes (compared with the
  last record the CMP made), never as a grant over a GPC denial: a banner's standing "yes" is not
  an explicit choice made after seeing the conflict.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from consentry.consent.models import DENIED, GRANTED, REFUSALS
from consentry.errors import FieldError

GPC_PURPOSE = "marketing.advertising.third_party"
GPC_SOURCE = "gpc"
CMP_SOURCE = "cmp"
# Explicit choices that can acknowledge a GPC signal when made on a request that carried it.
GPC_ACK_SOURCES = frozenset({"preference_center", "web_form", "checkout", "api"})
# When this deployment's support of GPC last changed (``lastUpdate`` of /.well-known/gpc.json).
GPC_LAST_UPDATE = date(2026, 11, 23)

MAX_CATEGORIES = 200
MAX_CATEGORY_CHARS = 100
_NOT_ALNUM = re.compile(r"[^0-9a-z]")

_ADS = GPC_PURPOSE
# Category names are compared normalised (lower case, letters and digits only), so
# "SaleOfData", "sale_of_data" and "Sale of data" are one name. A category mapped to no purpose
# is known and ignored; a name that is not here (nor in the workspace's map) is counted unknown.
DEFAULT_CATEGORY_MAP: dict[str, tuple[str, ...]] = {
    "advertising": (_ADS,),
    "targeting": (_ADS,),
    "marketing": (_ADS,),
    "saleofdata": (_ADS,),
    "datasharing": (_ADS, "third_party_sharing"),
    "analytics": ("analytics",),
    "statistics": ("analytics",),
    "performance": ("analytics",),
    "personalization": ("personalize",),
    "personalisation": ("personalize",),
    "functional": (),
    "preferences": (),
    "necessary": (),
    "strictlynecessary": (),
    "essential": (),
}


def normalize_category(name: str) -> str:
    """The form category names are compared in."""
    return _NOT_ALNUM.sub("", name.casefold())


def has_gpc(payload: Mapping[str, Any]) -> bool:
    """Whether a stored message carries the GPC signal (``context.gpc`` is true)."""
    context = payload.get("context")
    return isinstance(context, Mapping) and context.get("gpc") is True


def category_preferences(payload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``context.consent.categoryPreferences`` of a message, if it has a non-empty one."""
    context = payload.get("context")
    consent = context.get("consent") if isinstance(context, Mapping) else None
    prefs = consent.get("categoryPreferences") if isinstance(consent, Mapping) else None
    return prefs if isinstance(prefs, Mapping) and prefs else None


@dataclass(frozen=True, slots=True)
class CategoryReading:
    """What a consent object says of our purposes: ``states`` per purpose; how many category
    names were unknown, and how many known ones had a value that is not true or false."""

    states: dict[str, str]
    unknown: int = 0
    invalid: int = 0


def read_categories(
    prefs: Mapping[str, Any], mapping: Mapping[str, tuple[str, ...]], purposes: Collection[str]
) -> CategoryReading:
    """Per purpose of the workspace, granted when every category mapped to it that the object
    names is true, denied when any is false."""
    votes: dict[str, bool] = {}
    unknown = invalid = 0
    for name, value in prefs.items():
        targets = mapping.get(normalize_category(str(name)))
        if targets is None:
            unknown += 1
            continue
        if not isinstance(value, bool):
            invalid += 1
            continue
        for purpose in targets:
            if purpose in purposes:
                votes[purpose] = votes.get(purpose, True) and value
    states = {purpose: GRANTED if yes else DENIED for purpose, yes in votes.items()}
    return CategoryReading(states, unknown, invalid)


def effective_map(overrides: Mapping[str, Collection[str]]) -> dict[str, tuple[str, ...]]:
    """The defaults, with a workspace's own entries added or replacing them."""
    merged = dict(DEFAULT_CATEGORY_MAP)
    merged.update((normalize_category(k), tuple(v)) for k, v in overrides.items())
    return merged


# --- the conflict rule --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Standing:
    """The record that decides a purpose (channel ``any``) for a unified profile, as much of it
    as the signals need: its state, source, and whether its request carried GPC."""

    state: str
    source: str
    gpc_seen: bool = False


def acknowledges_gpc(standing: Standing | None) -> bool:
    """An explicit grant made on a request that carried the signal."""
    return (
        standing is not None
        and standing.state == GRANTED
        and standing.gpc_seen
        and standing.source in GPC_ACK_SOURCES
    )


def is_gpc_denial(standing: Standing | None) -> bool:
    """The purpose is refused because of a GPC signal."""
    return standing is not None and standing.state in REFUSALS and standing.source == GPC_SOURCE


def gpc_needs_record(standing: Standing | None) -> bool:
    """Whether a GPC signal must be recorded as a denial of sale/sharing now: unless a GPC
    denial already stands, or a grant that acknowledged the signal does."""
    return not (is_gpc_denial(standing) or acknowledges_gpc(standing))


def category_needs_record(
    wanted: str, last_cmp: str | None, standing: Standing | None, purpose: str
) -> bool:
    """Whether a consent object's ``wanted`` state of ``purpose`` must be recorded: when it
    differs from the CMP's last recorded answer, and is not a grant over a GPC denial."""
    if wanted == last_cmp:
        return False
    return not (wanted == GRANTED and purpose == GPC_PURPOSE and is_gpc_denial(standing))


def category_map_problems(
    categories: Mapping[str, Any], purposes: Collection[str]
) -> list[FieldError]:
    """What is wrong with a workspace's category map, field by field."""
    errors = []
    if len(categories) > MAX_CATEGORIES:
        errors.append(FieldError("categories", f"at most {MAX_CATEGORIES} categories"))
    seen: dict[str, str] = {}
    for name, targets in categories.items():
        field = f"categories.{name[:MAX_CATEGORY_CHARS]}"
        key = normalize_category(name)
        if not key or len(name) > MAX_CATEGORY_CHARS:
            reason = f"1 to {MAX_CATEGORY_CHARS} characters, with a letter or digit"
            errors.append(FieldError(field, reason))
        elif key in seen:
            errors.append(FieldError(field, f"the same name as {seen[key]!r} once normalised"))
        seen.setdefault(key, name)
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            errors.append(FieldError(field, "a list of purpose keys"))
            continue
        errors.extend(
            FieldError(field, f"unknown purpose {t[:100]!r}") for t in targets if t not in purposes
        )
    return errors
