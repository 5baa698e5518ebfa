"""Serving recommendations: the stored form of a trained model, the per-process cache of the
active one, and the answers (per customer, per product, next best offer).

A stored artefact holds the arrays of ``recommend.artefact`` and those that map them to the
workspace (profile and product ids, the products' categories, availability and replenishment,
each customer's order count, the "also viewed" neighbours) as zlib members, the per-customer
arrays in blocks of rows (``recommend.container``: older stores' npz files are read too); every
array's dtype and shape and every member's SHA-256 are in the manifest, checked on load.

The active artefact is loaded once per process (cache keyed by store and workspace, checked
against the active row's id and revision: one indexed query, at most once a second, notices a
version activated or an erasure made by another process; this process's own changes drop the
cache at once) and answers with look-ups. A customer gets a personalised list only
when ``consent.policy`` allows the purpose ``personalize`` over the channel the list is shown
in (``context``); otherwise the list is the shop's most popular products, computed from
nobody's data in particular. A known customer the model has no purchases of (cold start) gets
the popular products of their RFM segment, then the shop's. Business rules run at request
time (``recommend.rules``): products known to be out of stock now are left out, categories
boosted or buried, at most ``max_per_category`` per category; products the customer bought
that are not replenishable are left out (their orders are read at request time, so a purchase
made since the training counts, and so does a fallback list).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from consentry.analytics import service as analytics
from consentry.commerce import feed as commerce_feed
from consentry.config import RecommendSettings
from consentry.consent import policy
from consentry.consent.models import ANY_CHANNEL, CHANNELS
from consentry.errors import Conflict, FieldError, Invalid, NotFound
from consentry.recommend.artefact import ARRAY_SPECS, Manifest, ModelArtefact
from consentry.recommend.logistic import ScoreCalibration
from consentry.recommend.offers import Offer, rank_offers
from consentry.recommend.rules import BusinessRules
from consentry.recommend.tables import RecommendModelRow, stored_arrays

PURPOSE = "personalize"
CONTEXTS = tuple(c for c in CHANNELS if c != ANY_CHANNEL)
MAX_COUNT = 100
ITEM_KINDS = ("also_bought", "also_viewed")
PERSONALIZED, NON_PERSONALIZED = "personalized", "non_personalized"
CACHE_SIZE = 32
HEAD_SECONDS = 1.0  # how stale another process's activation or erasure may be seen


# --- the served model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedModel:
    """An active artefact as a server holds it: the arrays and the id look-ups."""

    id: str
    version: int
    revision: int
    trained_at: datetime
    as_of: datetime
    artefact: ModelArtefact
    profile_index: dict[str, int]
    product_ids: list[str]
    product_index: dict[str, int]
    categories: NDArray[np.int32]
    category_names: list[str]
    segment_index: dict[str, int]
    in_stock: NDArray[np.bool_]
    replenishable: NDArray[np.bool_]
    user_orders: NDArray[np.int32]
    viewed_items: NDArray[np.int32]
    viewed_scores: NDArray[np.float32]
    # the business rules built for it, per (category factors, category cap): see _rules
    rules: dict[tuple[Any, ...], BusinessRules] = field(default_factory=dict, compare=False)

    @property
    def n_items(self) -> int:
        return len(self.product_ids)

    def info(self) -> dict[str, Any]:
        return {"version": self.version, "trained_at": self.trained_at, "as_of": self.as_of}


def _served(session: Session, row: RecommendModelRow) -> ServedModel:
    # the arrays from the version's member rows (one query; older stores: the artefact column)
    arrays = stored_arrays(session, row)
    artefact = ModelArtefact(
        Manifest.from_json(json.dumps(row.manifest["artefact"])),
        {name: arrays[name] for name in ARRAY_SPECS},
    )
    profile_ids = arrays["profile_ids"].tolist()
    product_ids = arrays["product_ids"].tolist()
    segments = row.manifest.get("segments", [])
    return ServedModel(
        id=row.id,
        version=row.version,
        revision=row.revision,
        trained_at=row.trained_at,
        as_of=row.as_of,
        artefact=artefact,
        profile_index={p: i for i, p in enumerate(profile_ids) if p},
        product_ids=product_ids,
        product_index={p: i for i, p in enumerate(product_ids)},
        categories=arrays["categories"],
        category_names=arrays["category_names"].tolist(),
        segment_index={name: i for i, name in enumerate(segments)},
        in_stock=arrays["in_stock"],
        replenishable=arrays["replenishable"],
        user_orders=arrays["user_orders"],
        viewed_items=arrays["viewed_items"],
        viewed_scores=arrays["viewed_scores"],
    )


_cache: OrderedDict[tuple[str, str], ServedModel] = OrderedDict()
_checked: dict[tuple[str, str], float] = {}  # when the active row last confirmed the cache
_cache_lock = threading.Lock()


def _store_key(session: Session) -> str:
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    return engine.url.render_as_string(hide_password=True)


def active_model(*, session: Session, workspace_id: str) -> ServedModel:
    """The workspace's active model, loaded once per process and version (409 before the first
    training). Whether it is still the active one (version and revision) is checked with one
    indexed query at most every ``HEAD_SECONDS``; training, activating and erasing in this
    process drop the cache at once (:func:`forget`)."""
    key = (_store_key(session), workspace_id)
    found = _cache.get(key)
    if found is not None and time.monotonic() - _checked.get(key, -HEAD_SECONDS) < HEAD_SECONDS:
        return found
    r = RecommendModelRow
    head = session.execute(
        select(r.id, r.revision).where(r.workspace_id == workspace_id, r.active.is_(True))
    ).first()
    if head is None:
        raise Conflict(
            "no recommendation model yet: POST /v1/recommendations/train "
            "(or `consentry recommend train`)"
        )
    if found is not None and found.id == head[0] and found.revision == head[1]:
        _checked[key] = time.monotonic()
        return found
    with _cache_lock:
        found = _cache.get(key)
        if found is None or found.id != head[0] or found.revision != head[1]:
            row = session.get(r, head[0])
            if row is None:  # replaced meanwhile: the next request loads the new one
                raise Conflict("the active model changed; try again")
            found = _served(session, row)
            _cache[key] = found
        _checked[key] = time.monotonic()
        _cache.move_to_end(key)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return found


# --- serving -------------------------------------------------------------------------------------


def _check_count(count: int) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise Invalid("count is out of range", [FieldError("count", f"between 1 and {MAX_COUNT}")])


def _check_context(context: str) -> None:
    if context not in CONTEXTS:
        raise Invalid(
            "unknown context",
            [FieldError("context", f"where the list is shown: one of {', '.join(CONTEXTS)}")],
        )


@dataclass(frozen=True, slots=True)
class _Customer:
    canonical: str
    members: list[str]
    allowed: bool
    consent: dict[str, Any]
    user: int | None  # index in the model


def _customer(
    session: Session, workspace_id: str, profile_id: str, context: str, model: ServedModel
) -> _Customer:
    # the person and the consent decision in one round trip (404 for an unknown profile)
    person = policy.decide_person(
        session=session,
        workspace_id=workspace_id,
        profile_id=profile_id,
        purpose=PURPOSE,
        channel=context,
        unconfigured="refuse",  # a workspace without "personalize": nobody agreed to it
    )
    canonical, members, decision = person.profile_id, person.member_ids, person.decision
    consent = {
        "purpose": PURPOSE,
        "channel": context,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "regime": decision.regime,
    }
    allowed = decision.allowed
    user = model.profile_index.get(canonical)
    if user is None:  # merged after training: any member the model knows
        user = next((model.profile_index[m] for m in members if m in model.profile_index), None)
    return _Customer(canonical, members, allowed, consent, user)


def _rules(model: ServedModel, settings: RecommendSettings, *, diversity: bool) -> BusinessRules:
    """The model's business rules under these settings, built once per model (they hold
    arrays over every product); shared by requests, so never changed after."""
    cap = settings.max_per_category if diversity else None
    key = (tuple(sorted(settings.category_factors.items())), cap)
    found = model.rules.get(key)
    if found is None:
        index = {name: i for i, name in enumerate(model.category_names)}
        factors = {index[n]: f for n, f in settings.category_factors.items() if n in index}
        found = BusinessRules(
            model.n_items,
            categories=model.categories,
            category_factors=factors or None,
            max_per_category=cap,
        )
        model.rules[key] = found
    return found


def _money(value: object) -> float | None:
    return float(value) if isinstance(value, Decimal | int | float) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _details(
    session: Session, workspace_id: str, model: ServedModel, *lists: NDArray[Any]
) -> dict[str, commerce_feed.Row]:
    """The catalogue's rows of the listed products (name, category, price, availability)."""
    ids = {model.product_ids[i] for items in lists for i in items.tolist()}
    return commerce_feed.product_details(
        session=session, workspace_id=workspace_id, product_ids=ids
    )


def _in_stock(model: ServedModel, details: Mapping[str, commerce_feed.Row], item: int) -> bool:
    row = details.get(model.product_ids[item])
    return bool(model.in_stock[item]) if row is None else row[-1] is not False


def _apply(
    model: ServedModel,
    rules: BusinessRules,
    details: Mapping[str, commerce_feed.Row],
    items: NDArray[Any],
    scores: NDArray[Any],
    count: int,
) -> list[dict[str, Any]]:
    """Candidates through the rules, as documents. Out of stock products are left out first:
    as the catalogue says now (``details``), else as it said at training."""
    available = np.fromiter(
        (i >= 0 and _in_stock(model, details, i) for i in items.tolist()),
        dtype=bool,
        count=items.size,
    )
    chosen = rules.apply(None, items[available], scores[available], count)
    out = []
    for item, score in zip(chosen.items.tolist(), chosen.scores.tolist(), strict=True):
        product_id = model.product_ids[item]
        row = details.get(product_id) or (product_id, None, None, None, None, None, None)
        out.append(
            {
                "product_id": product_id,
                "score": round(float(score), 6),
                "name": _text(row[1]),
                "category": _text(row[2]),
                "price": _money(row[3]),
                "url": _text(row[4]),
                "image_url": _text(row[5]),
            }
        )
    return out


def _ranked(listed: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"rank": rank, **entry} for rank, entry in enumerate(listed, 1)]


def _listing(
    session: Session,
    workspace_id: str,
    model: ServedModel,
    customer: _Customer,
    want: int,
) -> tuple[str, str, NDArray[Any], NDArray[Any], str | None]:
    """(kind, reason, items, scores, segment) of the candidates for a customer."""
    if not customer.allowed:  # nobody's data in particular: the shop's most popular products
        found = model.artefact.recommend(-1, want, segment=-1)
        return NON_PERSONALIZED, "no_personalization_consent", found.items, found.scores, None
    bought = commerce_feed.products_bought(
        session=session, workspace_id=workspace_id, profile_ids=customer.members
    )
    exclude = {
        i
        for p in bought
        if (i := model.product_index.get(p)) is not None and not model.replenishable[i]
    }
    user = customer.user
    if user is not None and model.user_orders[user] > 0:
        found = model.artefact.recommend(user, want, exclude)
        return PERSONALIZED, "consented", found.items, found.scores, None
    scores = analytics.find_scores(
        session=session, workspace_id=workspace_id, profile_id=customer.canonical
    )
    segment_name = None if scores is None else scores["rfm"]["segment"]
    segment = -1 if segment_name is None else model.segment_index.get(segment_name, -1)
    found = model.artefact.recommend(-1, want, exclude, segment=segment)
    return NON_PERSONALIZED, "cold_start", found.items, found.scores, segment_name


def for_profile(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    settings: RecommendSettings,
    count: int = 10,
    context: str = "web",
) -> dict[str, Any]:
    """Products to show a customer where ``context`` says (web, app, email, ...)."""
    _check_count(count)
    _check_context(context)
    model = active_model(session=session, workspace_id=workspace_id)
    customer = _customer(session, workspace_id, profile_id, context, model)
    rules = _rules(model, settings, diversity=True)
    kind, reason, items, scores, segment = _listing(
        session, workspace_id, model, customer, rules.over_fetch(count)
    )
    details = _details(session, workspace_id, model, items)
    return {
        "profile_id": customer.canonical,
        "kind": kind,
        "reason": reason,
        "consent": customer.consent,
        "segment": segment,
        "context": context,
        "model": model.info(),
        "items": _ranked(_apply(model, rules, details, items, scores, count)),
    }


def for_item(
    *,
    session: Session,
    workspace_id: str,
    product_id: str,
    settings: RecommendSettings,
    count: int = 10,
    kind: str = "also_bought",
) -> dict[str, Any]:
    """Products bought (or viewed) by the customers who bought (viewed) this one, filled up
    with the shop's most popular ones; no customer's data in particular, no consent needed."""
    _check_count(count)
    if kind not in ITEM_KINDS:
        raise Invalid("unknown kind", [FieldError("kind", f"one of {', '.join(ITEM_KINDS)}")])
    model = active_model(session=session, workspace_id=workspace_id)
    item = model.product_index.get(product_id)
    if item is None and not commerce_feed.product_details(
        session=session, workspace_id=workspace_id, product_ids={product_id}
    ):
        raise NotFound(f"no product {product_id!r} in this workspace")
    rules = _rules(model, settings, diversity=False)
    want = rules.over_fetch(count)
    if item is None:  # in the catalogue since the training: nothing known about it yet
        items, scores = np.zeros(0, np.int32), np.zeros(0, np.float32)
    elif kind == "also_bought":
        items, scores = model.artefact.similar(item, want)
    else:
        keep = model.viewed_items[item] >= 0
        items, scores = (
            model.viewed_items[item][keep][:want],
            model.viewed_scores[item][keep][:want],
        )
    skip = set(items.tolist()) | ({item} if item is not None else set())
    fill = model.artefact.recommend(-1, want, skip, segment=-1)
    details = _details(session, workspace_id, model, items, fill.items)
    listed = [
        {**entry, "source": kind} for entry in _apply(model, rules, details, items, scores, count)
    ]
    if len(listed) < count:  # too few neighbours: the most popular products after them
        more = _apply(model, rules, details, fill.items, fill.scores, count - len(listed))
        listed.extend({**entry, "source": "popular"} for entry in more)
    return {
        "product_id": product_id,
        "kind": kind,
        "model": model.info(),
        "items": _ranked(listed),
    }


# --- next best offer -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OfferRequest:
    """A candidate offer: on a product, on a category, or neither (site-wide)."""

    key: str
    margin: float
    product_id: str | None = None
    category: str | None = None
    discount: float = 0.0


@dataclass(frozen=True, slots=True)
class EligibilityRules:
    """Which offers a customer may get at all (the journeys use the same rules)."""

    exclude_products: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()
    min_margin: float | None = None
    max_discount: float | None = None
    in_stock_only: bool = True


def offers_for(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    offers: Sequence[OfferRequest],
    eligibility: EligibilityRules,
    context: str = "web",
    limit: int | None = None,
) -> dict[str, Any]:
    """The eligible offers by expected value (P(take) x margin). P(take) comes from the
    customer's personalised list where consent allows it, else from the popular one."""
    _check_context(context)
    if limit is not None:
        _check_count(limit)
    model = active_model(session=session, workspace_id=workspace_id)
    customer = _customer(session, workspace_id, profile_id, context, model)
    kind, reason, items, scores, segment = _listing(
        session, workspace_id, model, customer, model.artefact.user_items.shape[1]
    )
    categories = {name: i for i, name in enumerate(model.category_names)}
    unknown_category = len(model.category_names)  # matches no product
    products = {o.product_id for o in offers if o.product_id is not None}
    details = commerce_feed.product_details(
        session=session, workspace_id=workspace_id, product_ids=products
    )
    candidates: list[Offer] = []
    for offer in offers:
        product = None
        if offer.product_id is not None:
            product = model.product_index.get(offer.product_id, model.n_items)
        category = None
        if offer.category is not None:
            category = categories.get(offer.category, unknown_category)
        candidates.append(Offer(offer.key, offer.margin, product, category, offer.discount))
    requested = {o.key: o for o in offers}

    def eligible(_customer: int, offer: Offer) -> bool:
        asked = requested[offer.key]
        category = asked.category
        if asked.product_id is not None:
            row = details.get(asked.product_id)
            category = category or (None if row is None else _text(row[2]))
            if asked.product_id in eligibility.exclude_products:
                return False
            if eligibility.in_stock_only and row is not None and row[-1] is False:
                return False
        if category is not None and category in eligibility.exclude_categories:
            return False
        if eligibility.min_margin is not None and asked.margin < eligibility.min_margin:
            return False
        return eligibility.max_discount is None or asked.discount <= eligibility.max_discount

    who = -1 if customer.user is None else customer.user
    ranked = rank_offers(
        who,
        candidates,
        items,
        scores,
        calibration=ScoreCalibration(),
        categories=model.categories,
        eligibility=[eligible],
        limit=limit,
    )
    return {
        "profile_id": customer.canonical,
        "kind": kind,
        "reason": reason,
        "consent": customer.consent,
        "segment": segment,
        "model": model.info(),
        "offers": [
            {
                "key": r.offer.key,
                "p_take": round(r.p_take, 6),
                "expected_value": round(r.expected_value, 6),
                "margin": r.offer.margin,
                "product_id": requested[r.offer.key].product_id,
                "category": requested[r.offer.key].category,
                "discount": r.offer.discount,
            }
            for r in ranked
        ],
        "ineligible": [o.key for o in candidates if not eligible(who, o)],
    }


def forget(workspace_id: str) -> None:
    """Drop the workspace's cached models in this process (other processes see the revision)."""
    with _cache_lock:
        for key in [k for k in _cache if k[1] == workspace_id]:
            del _cache[key]
            _checked.pop(key, None)
