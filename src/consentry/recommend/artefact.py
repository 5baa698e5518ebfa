"""The model artefact: precomputed lists, saved as plain numpy arrays plus a JSON manifest, served
by look-ups only (no matrix maths, no pickle).

A directory holds two files:

- ``arrays.npz`` (``numpy.savez``, loaded with ``allow_pickle=False``):
  ``user_items`` / ``user_scores`` (n_users x top_n: each user's list, -1 / -inf padded),
  ``neighbour_items`` / ``neighbour_scores`` (n_items x k: "also bought"),
  ``popular_items`` / ``popular_scores`` (the global fallback), ``user_segments`` (-1: none),
  ``segment_items`` / ``segment_scores`` (n_segments x top_n: the cold-start fallback per
  segment);
- ``manifest.json``: ``format`` (this module's FORMAT), ``version``, ``model``, ``trained_at``
  (ISO 8601, UTC), ``parameters``, ``metrics``, the sizes, and per array its dtype, shape and
  SHA-256, checked on load.

A user's list is their precomputed list, then their segment's, then the global one, without
excluded items or repeats. Business rules that change between trainings (stock, boosts) are
applied at request time with :class:`~consentry.recommend.rules.BusinessRules` on the list.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from consentry.recommend._arrays import (
    CsrMatrix,
    Recommendation,
    TopN,
    exclusion_matrix,
)
from consentry.recommend.rules import BusinessRules

if TYPE_CHECKING:  # types only: the models (scipy.sparse) load with training
    from consentry.recommend.itemknn import ItemItem
    from consentry.recommend.popular import MostPopular

FORMAT = "consentry.recommend.artefact/1"
ARRAYS_FILE = "arrays.npz"
MANIFEST_FILE = "manifest.json"
ARRAY_SPECS: dict[str, tuple[str, int]] = {
    "user_items": ("int32", 2),
    "user_scores": ("float32", 2),
    "neighbour_items": ("int32", 2),
    "neighbour_scores": ("float32", 2),
    "popular_items": ("int32", 1),
    "popular_scores": ("float32", 1),
    "user_segments": ("int32", 1),
    "segment_items": ("int32", 2),
    "segment_scores": ("float32", 2),
}


class ArtefactError(ValueError):
    """An artefact that cannot be loaded: wrong format, missing or altered arrays."""


class BatchRecommender(Protocol):
    def recommend_batch(
        self, users: ArrayLike, n: int = 10, exclude: CsrMatrix | None = None
    ) -> TopN: ...


@dataclass(frozen=True)
class Manifest:
    version: str
    model: str
    trained_at: str
    n_users: int
    n_items: int
    parameters: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)
    arrays: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    format: str = FORMAT

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": self.format,
                "version": self.version,
                "model": self.model,
                "trained_at": self.trained_at,
                "n_users": self.n_users,
                "n_items": self.n_items,
                "parameters": dict(self.parameters),
                "metrics": dict(self.metrics),
                "arrays": {k: dict(v) for k, v in self.arrays.items()},
            },
            indent=2,
            sort_keys=True,
            allow_nan=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
            if data.get("format") != FORMAT:
                raise ArtefactError(f"unsupported artefact format {data.get('format')!r}")
            return cls(
                version=str(data["version"]),
                model=str(data["model"]),
                trained_at=str(data["trained_at"]),
                n_users=int(data["n_users"]),
                n_items=int(data["n_items"]),
                parameters=dict(data.get("parameters", {})),
                metrics=dict(data.get("metrics", {})),
                arrays={k: dict(v) for k, v in data["arrays"].items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ArtefactError):
                raise
            raise ArtefactError(f"invalid manifest: {exc}") from exc


def digest(array: NDArray[Any]) -> str:
    """The SHA-256 of an array's bytes (hex), as the manifest records it."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def specs(arrays: Mapping[str, NDArray[Any]]) -> dict[str, dict[str, Any]]:
    """Each array's dtype, shape and SHA-256, for the manifest."""
    return {
        name: {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": digest(a)}
        for name, a in arrays.items()
    }


def neighbour_arrays(item_item: ItemItem | None, n_items: int) -> TopN:
    """An item-item model's neighbour table as stored (int32 items, float32 scores); no
    neighbours (zero columns) without a model."""
    if item_item is None:
        return TopN(np.zeros((n_items, 0), np.int32), np.zeros((n_items, 0), np.float32))
    table = item_item.neighbour_table()
    return TopN(table.items.astype(np.int32), table.scores.astype(np.float32))


class ModelArtefact:
    """Precomputed recommendations, served by look-ups. Build with :meth:`build`, persist with
    :meth:`save`, serve from :meth:`load`."""

    def __init__(self, manifest: Manifest, arrays: Mapping[str, NDArray[Any]]) -> None:
        self.manifest = manifest
        self.user_items: NDArray[np.int32] = arrays["user_items"]
        self.user_scores: NDArray[np.float32] = arrays["user_scores"]
        self.neighbour_items: NDArray[np.int32] = arrays["neighbour_items"]
        self.neighbour_scores: NDArray[np.float32] = arrays["neighbour_scores"]
        self.popular_items: NDArray[np.int32] = arrays["popular_items"]
        self.popular_scores: NDArray[np.float32] = arrays["popular_scores"]
        self.user_segments: NDArray[np.int32] = arrays["user_segments"]
        self.segment_items: NDArray[np.int32] = arrays["segment_items"]
        self.segment_scores: NDArray[np.float32] = arrays["segment_scores"]
        # list lengths, so that a request slices instead of filtering padding
        self._user_lengths = (self.user_items >= 0).sum(axis=1).tolist()
        self._neighbour_lengths = (self.neighbour_items >= 0).sum(axis=1).tolist()
        self._segment_lengths = (self.segment_items >= 0).sum(axis=1).tolist()
        self._segments = self.user_segments.tolist()

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        model: BatchRecommender,
        *,
        n_users: int,
        popular: MostPopular,
        item_item: ItemItem | None = None,
        top_n: int = 50,
        exclude: CsrMatrix | None = None,
        model_name: str,
        version: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        trained_at: datetime | None = None,
        batch_size: int = 2048,
    ) -> ModelArtefact:
        """Precompute every user's ``top_n`` list (``exclude``: a user x item matrix of items
        never to list, e.g. bought non-replenishable products), the neighbours, the fallbacks."""
        n_items = popular.n_items
        items_parts, scores_parts = [], []
        for start in range(0, n_users, batch_size):
            users = np.arange(start, min(start + batch_size, n_users))
            excluded = (
                None if exclude is None else exclusion_matrix(exclude[users], users.size, n_items)
            )
            top = model.recommend_batch(users, top_n, excluded)
            items_parts.append(top.items.astype(np.int32))
            scores_parts.append(top.scores.astype(np.float32))
        user_items = np.vstack(items_parts) if items_parts else np.zeros((0, top_n), dtype=np.int32)
        user_scores = (
            np.vstack(scores_parts) if scores_parts else np.zeros((0, top_n), dtype=np.float32)
        )
        neighbours = neighbour_arrays(item_item, n_items)
        ranking = popular.top(top_n)
        n_segments = popular.segment_popularity.shape[0]
        segment_top = popular.recommend_batch(
            np.zeros(n_segments, dtype=np.int64), top_n, segments=np.arange(n_segments)
        )
        segments = np.full(n_users, -1, dtype=np.int32)
        known = min(n_users, popular.segments.size)
        segments[:known] = popular.segments[:known]
        arrays: dict[str, NDArray[Any]] = {
            "user_items": user_items,
            "user_scores": user_scores,
            "neighbour_items": neighbours.items,
            "neighbour_scores": neighbours.scores,
            "popular_items": ranking.astype(np.int32),
            "popular_scores": popular.popularity[ranking].astype(np.float32),
            "user_segments": segments,
            "segment_items": segment_top.items.astype(np.int32),
            "segment_scores": segment_top.scores.astype(np.float32),
        }
        when = (trained_at or datetime.now(UTC)).astimezone(UTC)
        array_specs = specs(arrays)
        content = hashlib.sha256(json.dumps(array_specs, sort_keys=True).encode()).hexdigest()[:12]
        manifest = Manifest(
            version=version or f"{model_name}-{when:%Y%m%dT%H%M%SZ}-{content}",
            model=model_name,
            trained_at=when.isoformat().replace("+00:00", "Z"),
            n_users=n_users,
            n_items=n_items,
            parameters=dict(parameters or {}),
            metrics=dict(metrics or {}),
            arrays=array_specs,
        )
        manifest.to_json()  # refuses parameters or metrics that are not plain JSON
        return cls(manifest, arrays)

    # -- persistence ------------------------------------------------------------------------

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {name: getattr(self, name) for name in ARRAY_SPECS}

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``arrays.npz`` then ``manifest.json`` into ``directory`` (created), each
        through a temporary file renamed into place."""
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        arrays_tmp = target / (ARRAYS_FILE + ".tmp")
        with arrays_tmp.open("wb") as handle:
            arrays: dict[str, Any] = self.arrays()
            np.savez(handle, **arrays)
        os.replace(arrays_tmp, target / ARRAYS_FILE)
        manifest_tmp = target / (MANIFEST_FILE + ".tmp")
        manifest_tmp.write_text(self.manifest.to_json() + "\n", encoding="utf-8")
        os.replace(manifest_tmp, target / MANIFEST_FILE)
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike[str]) -> ModelArtefact:
        """Load and verify an artefact (format, every array's dtype, shape and SHA-256)."""
        source = Path(directory)
        try:
            manifest = Manifest.from_json((source / MANIFEST_FILE).read_text(encoding="utf-8"))
            with np.load(source / ARRAYS_FILE, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in ARRAY_SPECS if name in npz.files}
        except OSError as exc:
            raise ArtefactError(f"cannot read the artefact in {source}: {exc}") from exc
        except ValueError as exc:
            if isinstance(exc, ArtefactError):
                raise
            raise ArtefactError(f"invalid arrays in {source}: {exc}") from exc
        for name, (dtype, ndim) in ARRAY_SPECS.items():
            if name not in arrays:
                raise ArtefactError(f"array {name} is missing")
            array, spec = arrays[name], manifest.arrays.get(name, {})
            if str(array.dtype) != dtype or array.ndim != ndim:
                raise ArtefactError(f"array {name} has the wrong type or shape")
            if list(array.shape) != list(spec.get("shape", [])) or digest(array) != spec.get(
                "sha256"
            ):
                raise ArtefactError(f"array {name} does not match the manifest")
        n_users, n_items = manifest.n_users, manifest.n_items
        for name in ("user_items", "neighbour_items", "popular_items", "segment_items"):
            if arrays[name].size and int(arrays[name].max()) >= n_items:
                raise ArtefactError(f"array {name} holds an item out of range")
        if arrays["user_items"].shape[0] != n_users or arrays["user_segments"].size != n_users:
            raise ArtefactError("per-user arrays do not match n_users")
        return cls(manifest, arrays)

    # -- serving ----------------------------------------------------------------------------

    def recommend(
        self,
        user: int,
        n: int = 10,
        exclude: Collection[int] | None = None,
        *,
        segment: int | None = None,
        rules: BusinessRules | None = None,
    ) -> Recommendation:
        """A user's list: their own, then their segment's, then the global fallback. A user
        index beyond the artefact (a new customer) gets the fallbacks; ``segment`` overrides
        the stored one. With ``rules``, the full precomputed lists go through them."""
        known = 0 <= user < len(self._user_lengths)
        if segment is None:
            segment = self._segments[user] if known else -1
        if rules is not None and known and self._user_lengths[user] >= n:
            # the whole precomputed list goes through the rules, as arrays
            length = self._user_lengths[user]
            row_items = self.user_items[user, :length]
            row_scores = self.user_scores[user, :length]
            if exclude:
                row_items, row_scores = _without(row_items, row_scores, exclude)
            result = rules.apply(user, row_items, row_scores, n)
            if result.items.size >= n:
                return result
            # the rules left too few: the list again, filled from the fallbacks
        want = self.user_items.shape[1] if rules is not None else n
        items, scores = self._collect(user if known else -1, segment, want, exclude)
        if rules is not None:
            return rules.apply(user if known else None, items, scores, n)
        return Recommendation(np.array(items, dtype=np.int32), np.array(scores, dtype=np.float32))

    def _collect(
        self, user: int, segment: int, want: int, exclude: Collection[int] | None
    ) -> tuple[list[int], list[float]]:
        """Up to ``want`` items from the user's list, their segment's, then the global one."""
        items: list[int] = []
        scores: list[float] = []
        skip = set(exclude) if exclude else set()
        sources = []
        if user >= 0:
            sources.append(
                (self.user_items[user], self.user_scores[user], self._user_lengths[user])
            )
        if 0 <= segment < len(self._segment_lengths):
            sources.append(
                (
                    self.segment_items[segment],
                    self.segment_scores[segment],
                    self._segment_lengths[segment],
                )
            )
        sources.append((self.popular_items, self.popular_scores, self.popular_items.size))
        for source_items, source_scores, length in sources:
            listed = source_items[:length].tolist()
            values = source_scores[:length].tolist()
            for item, score in zip(listed, values, strict=True):
                if item in skip:
                    continue
                skip.add(item)
                items.append(item)
                scores.append(score)
                if len(items) >= want:
                    return items, scores
        return items, scores

    def similar(
        self, item: int, n: int = 10, exclude: Collection[int] | None = None
    ) -> Recommendation:
        """An item's precomputed neighbours ("also bought"), without ``exclude``."""
        if not 0 <= item < len(self._neighbour_lengths):
            return Recommendation(np.zeros(0, dtype=np.int32), np.zeros(0, dtype=np.float32))
        length = self._neighbour_lengths[item]
        items = self.neighbour_items[item, :length]
        scores = self.neighbour_scores[item, :length]
        if exclude:
            items, scores = _without(items, scores, exclude)
        return Recommendation(items[:n], scores[:n])


def _without(
    items: NDArray[np.int32], scores: NDArray[np.float32], exclude: Collection[int]
) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """A short list without the excluded items (a set look-up per item: on tens of items this
    is several times faster than ``numpy.isin``, which sizes a table by the index range)."""
    skip = exclude if isinstance(exclude, set | frozenset) else set(exclude)
    keep = np.fromiter((item not in skip for item in items.tolist()), dtype=bool, count=items.size)
    return items[keep], scores[keep]
