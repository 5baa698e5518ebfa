"""Recommendation routes: serve (per customer, per product, next best offer), train, versions.

Serving and listing need ``recommendations:read``; training and activating a version need
``recommendations:write``. The fixed paths (``/item/...``, ``/models``, ``/train``) are
declared before ``/{profile_id}`` so that no profile id shadows them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from consentry.deps import DbDep, RecommendationsRead, RecommendationsWrite, SettingsDep
from consentry.errors import FieldError, Invalid
from consentry.recommend import service

router = APIRouter(prefix="/v1/recommendations", tags=["recommendations"])

Count = Annotated[
    int, Query(ge=1, le=service.MAX_COUNT, description="How many products (1 to 100).")
]
Context = Annotated[
    str,
    Query(
        max_length=16,
        description="Where the list is shown, the consent channel asked about: "
        + ", ".join(service.CONTEXTS),
    ),
]


@router.post("/train")
def train(principal: RecommendationsWrite, db: DbDep, settings: SettingsDep) -> dict[str, Any]:
    """Train on the workspace's orders, views and cart adds now, store the model as a new
    version and serve it (409 while there is no order to learn from)."""
    return service.train(db, principal.workspace_id, settings.recommend).document()


@router.get("/models")
def list_models(principal: RecommendationsRead, db: DbDep) -> dict[str, Any]:
    """The stored versions, newest first: when trained, sizes, offline metrics, which is
    active."""
    with db.read() as session:
        return {"models": service.models(session=session, workspace_id=principal.workspace_id)}


Version = Annotated[int, Path(ge=1, le=2**31 - 1, description="A stored version (see /models).")]


@router.post("/models/{version}/activate")
def activate(version: Version, principal: RecommendationsWrite, db: DbDep) -> dict[str, Any]:
    """Serve this version from now on (a rollback, or forward again); 404 for an unknown one."""
    with db.write() as session:
        return service.activate(
            session=session, workspace_id=principal.workspace_id, version=version
        )


@router.get("/item/{product_id}")
def for_item(
    product_id: str,
    principal: RecommendationsRead,
    db: DbDep,
    settings: SettingsDep,
    count: Count = 10,
    kind: Literal["also_bought", "also_viewed"] = "also_bought",
) -> dict[str, Any]:
    """Products bought (viewed) together with this one, filled up with the most popular; no
    customer's data in particular. 404 for a product the workspace does not know."""
    with db.read() as session:
        return service.for_item(
            session=session,
            workspace_id=principal.workspace_id,
            product_id=product_id,
            settings=settings.recommend,
            count=count,
            kind=kind,
        )


@router.get("/{profile_id}")
def for_profile(
    profile_id: str,
    principal: RecommendationsRead,
    db: DbDep,
    settings: SettingsDep,
    count: Count = 10,
    context: Context = "web",
) -> dict[str, Any]:
    """A customer's recommendations. ``kind`` says whether they are personalised (consent to
    ``personalize`` over the ``context`` channel) or not, and ``reason`` why; a customer the
    model knows nothing about gets the popular products of their segment (``cold_start``)."""
    with db.read() as session:
        return service.for_profile(
            session=session,
            workspace_id=principal.workspace_id,
            profile_id=profile_id,
            settings=settings.recommend,
            count=count,
            context=context,
        )


class OfferIn(BaseModel):
    """A candidate offer: on a product, on a category, or on neither (site-wide)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(..., min_length=1, max_length=100)
    margin: float = Field(..., allow_inf_nan=False, description="What the shop earns if taken.")
    product_id: str | None = Field(None, max_length=200)
    category: str | None = Field(None, max_length=200)
    discount: float = Field(0.0, ge=0, le=1, description="A fraction of the price.")


class EligibilityIn(BaseModel):
    """Which offers this customer may get at all."""

    model_config = ConfigDict(extra="forbid")

    exclude_products: list[str] = Field(default_factory=list, max_length=1000)
    exclude_categories: list[str] = Field(default_factory=list, max_length=1000)
    min_margin: float | None = Field(None, allow_inf_nan=False)
    max_discount: float | None = Field(None, ge=0, le=1)
    in_stock_only: bool = True


class OffersIn(BaseModel):
    """Offers to rank for a customer, the eligibility rules, where they are shown."""

    model_config = ConfigDict(extra="forbid")

    offers: list[OfferIn] = Field(..., min_length=1, max_length=100)
    eligibility: EligibilityIn = Field(default_factory=EligibilityIn)
    context: str = Field("web", max_length=16)
    limit: int | None = Field(None, ge=1, le=service.MAX_COUNT)


@router.post("/{profile_id}/offers")
def offers(
    profile_id: str, body: OffersIn, principal: RecommendationsRead, db: DbDep
) -> dict[str, Any]:
    """Next best offer: the eligible offers ranked by expected value, P(take) x margin, P(take)
    from the customer's personalised list where consent allows it, else the popular one."""
    keys = [o.key for o in body.offers]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise Invalid(
            "offer keys must be unique",
            [FieldError(f"offers.{keys.index(k)}.key", "repeated") for k in repeated],
        )
    rules = body.eligibility
    with db.read() as session:
        return service.offers_for(
            session=session,
            workspace_id=principal.workspace_id,
            profile_id=profile_id,
            offers=[service.OfferRequest(**o.model_dump()) for o in body.offers],
            eligibility=service.EligibilityRules(
                exclude_products=frozenset(rules.exclude_products),
                exclude_categories=frozenset(rules.exclude_categories),
                min_margin=rules.min_margin,
                max_discount=rules.max_discount,
                in_stock_only=rules.in_stock_only,
            ),
            context=body.context,
            limit=body.limit,
        )
