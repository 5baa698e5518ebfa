"""Recommendations from the store: train a versioned model per workspace, keep its versions,
erase a person from it; serving is :mod:`consentry.recommend.serving`, re-exported here.

Training (:func:`train`) reads purchases, browsing, the catalogue and RFM segments
(``recommend.feed``), fits the hybrid (``recommend.hybrid``), an item-item model on purchases
("also bought") and one on views ("also viewed"), precomputes every customer's list
(``ModelArtefact.build``: already-bought products that are not replenishable left out) and
stores it as a new version, active at once; the ``keep_versions`` newest stay for rollback
(:func:`activate`). With ``evaluate`` it first measures recall@10 and NDCG@10 on each
customer's last order (fitted on what came before), beside the most-popular baseline.

Erasure (:func:`erase_subject`) removes a person from every stored artefact of the workspace:
their id, list, segment and order count go, so nothing stored links them to a list any more;
the artefact's revision is bumped so every server loads it again.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from consentry.config import RecommendSettings
from consentry.errors import Conflict, FieldError, NotFound
from consentry.platform.db import Database, lock_workspace, utcnow
from consentry.platform.timing import StepClock, StepProgress
from consentry.recommend import feed
from consentry.recommend._arrays import csr
from consentry.recommend.artefact import ModelArtefact, neighbour_arrays, specs
from consentry.recommend.hybrid import Hybrid
from consentry.recommend.interactions import InteractionWeights, last_order_split
from consentry.recommend.itemknn import ItemItem
from consentry.recommend.metrics import evaluate
from consentry.recommend.popular import MostPopular
from consentry.recommend.serving import (
    CONTEXTS,
    ITEM_KINDS,
    MAX_COUNT,
    EligibilityRules,
    OfferRequest,
    ServedModel,
    active_model,
    for_item,
    for_profile,
    forget,
    offers_for,
    pack,
    unpack,
)
from consentry.recommend.tables import RecommendModelRow

__all__ = [
    "CONTEXTS",
    "ITEM_KINDS",
    "MAX_COUNT",
    "STEPS",
    "EligibilityRules",
    "OfferRequest",
    "Progress",
    "ServedModel",
    "TrainReport",
    "activate",
    "active_model",
    "erase_subject",
    "for_item",
    "for_profile",
    "models",
    "offers_for",
    "train",
]

Progress = StepProgress
STEPS = ("read", "evaluate", "fit", "store")
K = 10


# --- training ------------------------------------------------------------------------------------


@dataclass(slots=True)
class TrainReport:
    """What a training run did: the version it stored, sizes, timings, offline metrics."""

    workspace_id: str
    version: int
    as_of: datetime
    counts: dict[str, int]
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)
    removed_versions: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "active": True,
            "as_of": self.as_of.isoformat(),
            "counts": self.counts,
            "metrics": self.metrics,
            "seconds": self.seconds,
            "parameters": self.parameters,
            "removed_versions": self.removed_versions,
            "warnings": self.warnings,
        }


def _hybrid(settings: RecommendSettings) -> Hybrid:
    return Hybrid(neighbours=settings.neighbours, half_life_days=settings.half_life_days)


def _offline_metrics(data: feed.ShopData, settings: RecommendSettings) -> dict[str, float]:
    """Recall@10 and NDCG@10 of each customer's last order, the models fitted on what came
    before it (browsing too), beside the most-popular baseline."""
    past, last = last_order_split(data.purchases)
    if len(past) == 0 or len(last) == 0:
        return {}
    cut = np.full(data.n_users, np.inf)
    np.minimum.at(cut, last.users, last.timestamps)
    browsing = data.browsing.select(data.browsing.timestamps < cut[data.browsing.users])
    users = np.unique(last.users)
    truth = last.matrix()[users]
    model = _hybrid(settings).fit(past, browsing=browsing or None, segments=data.segments)
    ours = evaluate(model.recommend_batch(users, K).items, truth, K)
    baseline = evaluate(MostPopular().fit(past.matrix()).recommend_batch(users, K).items, truth, K)
    found = {
        **ours,
        **{f"popular_{name}": value for name, value in baseline.items()},
        "evaluated_customers": float(users.size),
    }
    return {k: round(v, 4) for k, v in found.items() if math.isfinite(v)}


def _replenishable(hybrid: Hybrid, n_items: int, rate: float) -> NDArray[np.bool_]:
    """Products whose order lines are re-purchases at least ``rate`` of the time."""
    assert hybrid.sources is not None
    h = hybrid.sources.history
    repeats = np.divide(h.orders - h.buyers, h.orders, out=np.zeros(n_items), where=h.orders > 0)
    return np.asarray((h.orders > 0) & (repeats >= rate), dtype=bool)


def _bought_once_matrix(hybrid: Hybrid, replenishable: NDArray[np.bool_]) -> Any:
    """Users x items: what each user bought that is not replenishable (never listed again)."""
    assert hybrid.sources is not None
    h = hybrid.sources.history
    keep = ~replenishable[h.items]
    return csr(h.users[keep], h.items[keep], np.ones(int(keep.sum())), (h.n_users, h.n_items))


def _build(
    data: feed.ShopData, settings: RecommendSettings, metrics: dict[str, float], at: datetime
) -> tuple[dict[str, Any], bytes]:
    """Fit, precompute, and pack: the manifest (JSON) and the artefact (npz bytes)."""
    hybrid = _hybrid(settings).fit(
        data.purchases, browsing=data.browsing or None, segments=data.segments
    )
    assert hybrid.sources is not None
    replenishable = _replenishable(hybrid, data.n_items, settings.replenishable_repeat_rate)
    also_bought = ItemItem(neighbours=settings.neighbours).fit(data.purchases.matrix())
    also_viewed = (
        ItemItem(neighbours=settings.neighbours).fit(data.views.matrix())
        if len(data.views)
        else None
    )
    built = ModelArtefact.build(
        hybrid,
        n_users=data.n_users,
        popular=hybrid.sources.popular,
        item_item=also_bought,
        top_n=settings.top_n,
        exclude=_bought_once_matrix(hybrid, replenishable),
        model_name="hybrid",
        parameters=hybrid.parameters(),
        metrics=metrics,
        trained_at=at,
    )
    arrays = built.arrays()
    # fallback scores as the share of (segment) customers who bought each product, so that
    # every score reads as a probability of purchase (next best offer takes them as P(take))
    user_orders = hybrid.sources.history.n_orders.astype(np.int32)
    customers = max(int((user_orders > 0).sum()), 1)
    arrays["popular_scores"] = (arrays["popular_scores"] / customers).astype(np.float32)
    sizes = np.bincount(
        data.segments[(data.segments >= 0) & (user_orders > 0)],
        minlength=arrays["segment_scores"].shape[0],
    )[: arrays["segment_scores"].shape[0]]
    arrays["segment_scores"] = (
        arrays["segment_scores"] / np.maximum(sizes, 1)[:, None].astype(np.float32)
    ).astype(np.float32)
    viewed = neighbour_arrays(also_viewed, data.n_items)
    extra: dict[str, NDArray[Any]] = {
        "profile_ids": data.profile_ids,
        "product_ids": data.product_ids,
        "categories": data.categories.astype(np.int32),
        "category_names": np.asarray(data.category_names, dtype=np.str_),
        "in_stock": data.in_stock,
        "replenishable": replenishable,
        "user_orders": user_orders,
        "viewed_items": viewed.items,
        "viewed_scores": viewed.scores,
    }
    artefact_manifest = replace(built.manifest, arrays=specs(arrays))
    manifest = {
        "artefact": json.loads(artefact_manifest.to_json()),
        "extra": specs(extra),
        "counts": {**data.counts, "replenishable": int(replenishable.sum())},
        "metrics": metrics,
        "parameters": {**hybrid.parameters(), "top_n": settings.top_n},
        "categories": data.category_names,
        "segments": data.segment_names,
        "erased": 0,
    }
    return manifest, pack({**arrays, **extra})


def train(
    db: Database,
    workspace_id: str,
    settings: RecommendSettings,
    *,
    progress: Progress | None = None,
) -> TrainReport:
    """Train on everything the workspace holds now, store a new version and activate it."""
    as_of = utcnow()
    report = TrainReport(workspace_id=workspace_id, version=0, as_of=as_of, counts={})
    clock = StepClock(report.seconds, progress)
    weights = InteractionWeights(
        view=settings.view_weight, cart=settings.cart_weight, order=settings.order_weight
    )
    with db.read() as session:
        data = feed.read(
            session,
            workspace_id,
            weights=weights,
            browsing_since=as_of - timedelta(days=settings.browsing_days),
        )
    report.counts = dict(data.counts)
    clock.step("read")
    if len(data.purchases) == 0:
        raise Conflict(
            "nothing to learn from: no orders of known customers yet",
            [FieldError("workspace", "no orders")],
        )
    report.metrics = _offline_metrics(data, settings) if settings.evaluate else {}
    clock.step("evaluate")
    manifest, blob = _build(data, settings, report.metrics, as_of)
    report.parameters = manifest["parameters"]
    clock.step("fit")
    with db.write() as session:
        lock_workspace(session, workspace_id)
        latest = session.scalar(
            select(func.max(RecommendModelRow.version)).where(
                RecommendModelRow.workspace_id == workspace_id
            )
        )
        report.version = int(latest or 0) + 1
        manifest["version"] = report.version
        manifest["seconds"] = dict(report.seconds)
        session.execute(
            update(RecommendModelRow)
            .where(RecommendModelRow.workspace_id == workspace_id)
            .values(active=False)
        )
        session.add(
            RecommendModelRow(
                id=str(uuid.uuid4()),
                workspace_id=workspace_id,
                version=report.version,
                revision=0,
                trained_at=utcnow(),
                as_of=as_of,
                active=True,
                manifest=manifest,
                artefact=blob,
            )
        )
        session.flush()
        report.removed_versions = _prune(session, workspace_id, settings.keep_versions)
    forget(workspace_id)
    clock.step("store")
    return report


def _prune(session: Session, workspace_id: str, keep: int) -> list[int]:
    """Delete the versions past the ``keep`` newest, never the active one."""
    versions = session.execute(
        select(RecommendModelRow.version, RecommendModelRow.active)
        .where(RecommendModelRow.workspace_id == workspace_id)
        .order_by(RecommendModelRow.version.desc())
    ).all()
    old = [v for i, (v, active) in enumerate(versions) if i >= keep and not active]
    if old:
        session.execute(
            delete(RecommendModelRow).where(
                RecommendModelRow.workspace_id == workspace_id,
                RecommendModelRow.version.in_(old),
            )
        )
    return sorted(old)


# --- versions ------------------------------------------------------------------------------------


def _model_document(row: Any, size: int | None = None) -> dict[str, Any]:
    manifest = row.manifest
    return {
        "version": row.version,
        "active": row.active,
        "trained_at": row.trained_at,
        "as_of": row.as_of,
        "revision": row.revision,
        "counts": manifest.get("counts", {}),
        "metrics": manifest.get("metrics", {}),
        "parameters": manifest.get("parameters", {}),
        "seconds": manifest.get("seconds", {}),
        "erased": manifest.get("erased", 0),
        **({} if size is None else {"bytes": size}),
    }


def models(*, session: Session, workspace_id: str) -> list[dict[str, Any]]:
    """The stored versions, newest first, without their artefacts."""
    r = RecommendModelRow
    rows = session.execute(
        select(
            r.version,
            r.active,
            r.trained_at,
            r.as_of,
            r.revision,
            r.manifest,
            func.length(r.artefact),
        )
        .where(r.workspace_id == workspace_id)
        .order_by(r.version.desc())
    ).all()
    return [_model_document(row, int(row[-1] or 0)) for row in rows]


def activate(*, session: Session, workspace_id: str, version: int) -> dict[str, Any]:
    """Serve ``version`` from now on (a rollback, or forward again)."""
    lock_workspace(session, workspace_id)
    row = session.scalar(
        select(RecommendModelRow).where(
            RecommendModelRow.workspace_id == workspace_id, RecommendModelRow.version == version
        )
    )
    if row is None:
        raise NotFound(
            f"no model version {version} in this workspace", [FieldError("version", "unknown")]
        )
    session.execute(
        update(RecommendModelRow)
        .where(RecommendModelRow.workspace_id == workspace_id, RecommendModelRow.id != row.id)
        .values(active=False)
    )
    row.active = True
    session.flush()
    forget(workspace_id)
    return _model_document(row)


# --- erasure -------------------------------------------------------------------------------------


def _versions_holding(
    session: Session, workspace_id: str, profile_ids: Collection[str]
) -> Iterator[tuple[RecommendModelRow, NDArray[np.intp]]]:
    """Each stored version (newest first) that holds any of these profiles, with their
    positions in it. Only the profile ids are unpacked to look: a version that does not know
    them is left compressed."""
    wanted = np.asarray(sorted(set(profile_ids)), dtype=np.str_)
    if wanted.size == 0:
        return
    rows = session.scalars(
        select(RecommendModelRow)
        .where(RecommendModelRow.workspace_id == workspace_id)
        .order_by(RecommendModelRow.version.desc())
    ).all()
    for row in rows:
        ids = unpack(row.manifest, row.artefact, ("profile_ids",))["profile_ids"]
        hit = np.nonzero(np.isin(ids, wanted))[0]
        if hit.size:
            yield row, hit


SUBJECT_ARRAYS = ("product_ids", "user_items", "user_segments", "user_orders")


def subject_data(
    *, session: Session, workspace_id: str, profile_ids: Collection[str]
) -> list[dict[str, Any]]:
    """What the stored model versions hold about these profiles (an access request): per
    version that knows them, the precomputed list, the segment and the orders it counted."""
    found: list[dict[str, Any]] = []
    for row, hit in _versions_holding(session, workspace_id, profile_ids):
        arrays = unpack(row.manifest, row.artefact, SUBJECT_ARRAYS)
        products = arrays["product_ids"].tolist()
        segment_names = list(row.manifest.get("segments", []))
        for i in hit.tolist():
            segment = int(arrays["user_segments"][i])
            named = 0 <= segment < len(segment_names)
            found.append(
                {
                    "source": "recommendations",
                    "model_version": row.version,
                    "active": row.active,
                    "trained_at": row.trained_at,
                    "segment": segment_names[segment] if named else None,
                    "orders_counted": int(arrays["user_orders"][i]),
                    "recommended_products": [
                        products[j] for j in arrays["user_items"][i].tolist() if j >= 0
                    ],
                }
            )
    return found


def erase_subject(*, session: Session, workspace_id: str, profile_ids: Collection[str]) -> int:
    """Remove these profiles from every stored artefact of the workspace (an erasure): their
    id, precomputed list, segment and order count go; the artefact's revision is bumped so
    servers load it again. How many (version, profile) entries went."""
    removed = 0
    for row, hit in _versions_holding(session, workspace_id, profile_ids):
        arrays = unpack(row.manifest, row.artefact)
        for name, blank in (
            ("profile_ids", ""),
            ("user_items", -1),
            ("user_scores", -np.inf),
            ("user_segments", -1),
            ("user_orders", 0),
        ):
            changed = arrays[name].copy()
            changed[hit] = blank
            arrays[name] = changed
        manifest = json.loads(json.dumps(row.manifest))
        for section in (manifest["artefact"]["arrays"], manifest["extra"]):
            section.update(specs({name: arrays[name] for name in section}))
        manifest["erased"] = int(manifest.get("erased", 0)) + int(hit.size)
        row.manifest = manifest
        row.artefact = pack(arrays)
        row.revision += 1
        removed += int(hit.size)
    if removed:
        session.flush()
        forget(workspace_id)  # this process at once; the others see the revision
    return removed
