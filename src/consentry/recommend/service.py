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
the artefact's revision is bumped so every server loads it again. The versions holding a person,
and their rows, are found in ``recommend_model_subjects`` (written in bulk at training) without
unpacking any artefact. A version's arrays are stored as member rows (``recommend_model_blocks``,
``recommend.container``: the per-customer arrays in blocks of 2,048 rows), so an erasure reads
and rewrites only the rows of the blocks holding the person, and an access request reads only
those: the work does not grow with the model's size.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session, defer

from consentry.config import RecommendSettings
from consentry.errors import Conflict, FieldError, NotFound
from consentry.platform import columnar
from consentry.platform.db import Database, lock_workspace, utcnow
from consentry.platform.timing import StepClock, StepProgress
from consentry.recommend import container, feed
from consentry.recommend._arrays import csr
from consentry.recommend.artefact import ArtefactError, ModelArtefact, neighbour_arrays
from consentry.recommend.interactions import InteractionWeights, last_order_split
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
)
from consentry.recommend.tables import (
    RecommendModelBlockRow,
    RecommendModelRow,
    RecommendModelSubjectRow,
    stored_arrays,
    stored_members,
)

if TYPE_CHECKING:  # types only: the models (scipy.sparse) load when a model is trained
    from consentry.recommend.hybrid import Hybrid

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
SUBJECTS = cast(Table, RecommendModelSubjectRow.__table__)
BLOCKS = cast(Table, RecommendModelBlockRow.__table__)
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
    from consentry.recommend.hybrid import Hybrid

    return Hybrid(neighbours=settings.neighbours, half_life_days=settings.half_life_days)


def _offline_metrics(data: feed.ShopData, settings: RecommendSettings) -> dict[str, float]:
    """Recall@10 and NDCG@10 of each customer's last order, the models fitted on what came
    before it (browsing too), beside the most-popular baseline."""
    from consentry.recommend.metrics import evaluate
    from consentry.recommend.popular import MostPopular

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
) -> tuple[dict[str, Any], dict[container.Key, bytes]]:
    """Fit, precompute, and pack: the manifest (JSON) and the artefact's members
    (``container.pack``: zlib members, the per-customer arrays in blocks of rows; a fresh
    ``artefact_id``)."""
    from consentry.recommend.itemknn import ItemItem

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
    artefact_manifest = replace(built.manifest, arrays=container.array_specs(arrays))
    members, layout = container.pack({**arrays, **extra})
    manifest = {
        "artefact": json.loads(artefact_manifest.to_json()),
        "extra": container.array_specs(extra),
        "counts": {**data.counts, "replenishable": int(replenishable.sum())},
        "metrics": metrics,
        "parameters": {**hybrid.parameters(), "top_n": settings.top_n},
        "categories": data.category_names,
        "segments": data.segment_names,
        "erased": 0,
        "artefact_id": str(uuid.uuid4()),
        "layout": layout,
    }
    return manifest, members


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
    manifest, members = _build(data, settings, report.metrics, as_of)
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
        model_id = str(uuid.uuid4())
        session.add(
            RecommendModelRow(
                id=model_id,
                workspace_id=workspace_id,
                version=report.version,
                revision=0,
                trained_at=utcnow(),
                as_of=as_of,
                active=True,
                manifest=manifest,
                artefact=None,
            )
        )
        session.flush()
        _store_members(session, workspace_id, model_id, members)
        _index(session, workspace_id, manifest["artefact_id"], data.profile_ids)
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
        r, b = RecommendModelRow, RecommendModelBlockRow
        gone = select(r.id).where(r.workspace_id == workspace_id, r.version.in_(old))
        session.execute(delete(b).where(b.workspace_id == workspace_id, b.model_id.in_(gone)))
        session.execute(
            delete(RecommendModelRow).where(
                RecommendModelRow.workspace_id == workspace_id,
                RecommendModelRow.version.in_(old),
            )
        )
        kept = {
            key
            for manifest in session.scalars(
                select(RecommendModelRow.manifest).where(
                    RecommendModelRow.workspace_id == workspace_id
                )
            )
            if (key := manifest.get("artefact_id")) is not None
        }
        s = RecommendModelSubjectRow
        session.execute(delete(s).where(s.workspace_id == workspace_id, s.artefact_id.not_in(kept)))
    return sorted(old)


def _store_members(
    session: Session, workspace_id: str, model_id: str, members: container.Members
) -> None:
    """A version's member rows, in bulk (one executemany)."""
    session.execute(
        insert(BLOCKS),
        [
            {
                "model_id": model_id,
                "member": name,
                "block": block,
                "workspace_id": workspace_id,
                "data": data,
            }
            for (name, block), data in members.items()
        ],
    )


def _index(
    session: Session, workspace_id: str, artefact_id: str, profile_ids: NDArray[Any]
) -> None:
    """The look-up entries of an artefact: each profile it holds (blanked rows left out) and
    its row, in bulk (COPY on PostgreSQL, executemany on SQLite)."""
    import pyarrow as pa  # loaded by the first training, not to start

    ids = np.asarray(profile_ids, dtype=np.str_)
    rows = np.nonzero(ids != "")[0]
    if rows.size == 0:
        return
    n = int(rows.size)
    columnar.copy_table(
        session,
        SUBJECTS,
        pa.table(
            {
                "artefact_id": pa.array([artefact_id] * n, pa.string()),
                "row_index": pa.array(rows.astype(np.int64), pa.int64()),
                "workspace_id": pa.array([workspace_id] * n, pa.string()),
                "profile_id": pa.array(ids[rows].tolist(), pa.string()),
            }
        ),
    )


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
    return [
        _model_document(
            row,
            container.stored_bytes(row.manifest)
            if container.is_rows(row.manifest)
            else int(row[-1] or 0),
        )
        for row in rows
    ]


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
) -> list[tuple[RecommendModelRow, NDArray[np.intp]]]:
    """Each stored version (newest first) that holds any of these profiles, with their rows in
    it (ascending), from the look-up entries: no artefact is read. A version stored without
    entries (no ``artefact_id`` in its manifest: stored before migration 0027 and not
    converted) is searched by unpacking its profile ids."""
    wanted = sorted(set(profile_ids))
    if not wanted:
        return []
    s, r = RecommendModelSubjectRow, RecommendModelRow
    found: dict[str, set[int]] = {}
    for artefact_id, row_index in session.execute(
        select(s.artefact_id, s.row_index).where(
            s.workspace_id == workspace_id, s.profile_id.in_(wanted)
        )
    ):
        found.setdefault(artefact_id, set()).add(int(row_index))
    versions = session.scalars(
        select(r)
        .options(defer(r.artefact))
        .where(r.workspace_id == workspace_id)
        .order_by(r.version.desc())
    ).all()
    held: list[tuple[RecommendModelRow, NDArray[np.intp]]] = []
    for row in versions:
        key = row.manifest.get("artefact_id")
        if key is None:
            ids = stored_arrays(session, row, ("profile_ids",))["profile_ids"]
            hit = np.nonzero(np.isin(ids, np.asarray(wanted, dtype=np.str_)))[0]
        else:
            hit = np.asarray(sorted(found.get(key, ())), dtype=np.intp)
        if hit.size:
            held.append((row, hit))
    return held


SUBJECT_ARRAYS = ("product_ids", "user_items", "user_segments", "user_orders")


def _subject_arrays(
    session: Session, row: RecommendModelRow, hit: NDArray[np.intp]
) -> dict[str, NDArray[Any]]:
    """The products and, for these rows (ascending), the lists, segments and order counts of
    a stored version: only the member rows holding them are read (one query). A version still
    stored in ``artefact`` (before migration 0027) is unpacked."""
    manifest = row.manifest
    rows = hit.tolist()
    if not container.is_rows(manifest):
        arrays = stored_arrays(session, row, SUBJECT_ARRAYS)
        return {
            name: array if name == "product_ids" else array[hit] for name, array in arrays.items()
        }
    wanted = container.members_for(manifest, SUBJECT_ARRAYS, rows)
    members = stored_members(session, row, wanted)
    return container.read_rows(manifest, members, SUBJECT_ARRAYS, rows)


def subject_data(
    *, session: Session, workspace_id: str, profile_ids: Collection[str]
) -> list[dict[str, Any]]:
    """What the stored model versions hold about these profiles (an access request): per
    version that knows them, the precomputed list, the segment and the orders it counted."""
    found: list[dict[str, Any]] = []
    for row, hit in _versions_holding(session, workspace_id, profile_ids):
        arrays = _subject_arrays(session, row, hit)
        products = arrays["product_ids"].tolist()
        segment_names = list(row.manifest.get("segments", []))
        for i in range(hit.size):
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
    id, precomputed list, scores, segment and order count are blanked in the blocks holding
    them (only those member rows are read and written), and their look-up entries go; the
    artefact's revision is bumped so servers load it again. A version still stored in
    ``artefact`` (before migration 0027) is converted to member rows on the way, and one
    stored without look-up entries gets them. How many (version, profile) entries went."""
    removed = 0
    for row, hit in _versions_holding(session, workspace_id, profile_ids):
        rows = hit.tolist()
        if container.is_rows(row.manifest):
            wanted = container.blocked_members(row.manifest, rows)
            manifest, changed = container.blank_rows(
                row.manifest, stored_members(session, row, wanted), rows
            )
            _rewrite_members(session, workspace_id, row.id, changed)
        else:  # stored before migration 0027: converted, and given its entries if it has none
            if row.artefact is None:
                raise ArtefactError("the stored artefact is missing")
            manifest, members = container.convert(row.manifest, row.artefact)
            manifest, changed = container.blank_rows(manifest, members, rows)
            members = {**members, **changed}
            _store_members(session, workspace_id, row.id, members)
            row.artefact = None
            if manifest.get("artefact_id") is None:
                manifest["artefact_id"] = str(uuid.uuid4())
                ids = container.unpack_members(manifest, members, ("profile_ids",))
                _index(session, workspace_id, manifest["artefact_id"], ids["profile_ids"])
        manifest["erased"] = int(manifest.get("erased", 0)) + int(hit.size)
        row.manifest = manifest
        row.revision += 1
        removed += int(hit.size)
    wanted_ids = sorted(set(profile_ids))
    if wanted_ids:
        s = RecommendModelSubjectRow
        session.execute(
            delete(s).where(s.workspace_id == workspace_id, s.profile_id.in_(wanted_ids))
        )
    if removed:
        session.flush()
        forget(workspace_id)  # this process at once; the others see the revision
    return removed


def _rewrite_members(
    session: Session, workspace_id: str, model_id: str, changed: container.Members
) -> None:
    """New data for some member rows of a version (the blocks an erasure blanked)."""
    b = BLOCKS.c
    session.execute(
        update(BLOCKS)
        .where(
            b.model_id == bindparam("m"),
            b.member == bindparam("n"),
            b.block == bindparam("k"),
            b.workspace_id == bindparam("w"),
        )
        .values(data=bindparam("d")),
        [
            {"m": model_id, "n": name, "k": block, "w": workspace_id, "d": data}
            for (name, block), data in changed.items()
        ],
    )
