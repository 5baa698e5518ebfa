"""The artefact: build, save, load, identical results; integrity checks; serving look-ups."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from consentry.recommend import (
    ArtefactError,
    BusinessRules,
    Events,
    Hybrid,
    ItemItem,
    ModelArtefact,
    MostPopular,
)
from consentry.recommend.artefact import ARRAYS_FILE, FORMAT, MANIFEST_FILE
from tests.recommend import shop


@pytest.fixture(scope="module")
def built() -> tuple[ModelArtefact, Hybrid, Events]:
    purchases = shop.purchases()
    model = Hybrid(neighbours=5).fit(purchases, segments=shop.segments())
    assert model.sources is not None
    artefact = ModelArtefact.build(
        model,
        n_users=shop.N_USERS,
        popular=model.sources.popular,
        item_item=model.sources.item_item,
        top_n=8,
        model_name="hybrid",
        parameters=model.parameters(),
        metrics={"recall@10": 0.5},
        trained_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    return artefact, model, purchases


def test_round_trip_gives_identical_results(
    built: tuple[ModelArtefact, Hybrid, Events], tmp_path: Path
) -> None:
    artefact, model, _ = built
    artefact.save(tmp_path / "v1")
    loaded = ModelArtefact.load(tmp_path / "v1")
    assert loaded.manifest == artefact.manifest
    for name, array in artefact.arrays().items():
        np.testing.assert_array_equal(loaded.arrays()[name], array)
    for user in range(shop.N_USERS + 3):
        for exclude in (None, [0, 5]):
            a = artefact.recommend(user, 5, exclude)
            b = loaded.recommend(user, 5, exclude)
            assert a.items.tolist() == b.items.tolist()
            assert a.scores.tolist() == b.scores.tolist()
    for item in range(shop.N_ITEMS):
        assert loaded.similar(item, 3).items.tolist() == artefact.similar(item, 3).items.tolist()


def test_served_lists_match_the_model(built: tuple[ModelArtefact, Hybrid, Events]) -> None:
    artefact, model, _ = built
    for user in range(shop.N_USERS):
        served = artefact.recommend(user, 5)
        direct = model.recommend(user, 5)
        assert served.items.tolist() == direct.items.tolist()
        np.testing.assert_allclose(served.scores, direct.scores, rtol=1e-6)


def test_manifest(built: tuple[ModelArtefact, Hybrid, Events], tmp_path: Path) -> None:
    artefact, _, _ = built
    artefact.save(tmp_path)
    manifest = json.loads((tmp_path / MANIFEST_FILE).read_text())
    assert manifest["format"] == FORMAT
    assert manifest["trained_at"] == "2026-01-02T03:04:05Z"
    assert manifest["version"].startswith("hybrid-20260102T030405Z-")
    assert manifest["metrics"] == {"recall@10": 0.5}
    assert manifest["parameters"]["neighbours"] == 5
    assert set(manifest["arrays"]) >= {"user_items", "neighbour_items", "popular_items"}
    assert not list(tmp_path.glob("*.tmp"))


def test_cold_start_and_unknown_users_get_the_fallback(
    built: tuple[ModelArtefact, Hybrid, Events],
) -> None:
    artefact, _, purchases = built
    popular = MostPopular().fit(purchases.matrix())
    assert artefact.recommend(31, 4).items.tolist() == popular.recommend(31, 4).items.tolist()
    # customer 33 has no purchases but the dog segment
    assert artefact.recommend(33, 1).items.tolist() == [5]
    # a customer created after training, with and without a segment
    assert artefact.recommend(10_000, 3).items.tolist() == popular.recommend(0, 3).items.tolist()
    assert artefact.recommend(10_000, 1, segment=1).items.tolist()[0] in (2, 3)


def test_serving_with_rules(built: tuple[ModelArtefact, Hybrid, Events]) -> None:
    artefact, _, _ = built
    in_stock = np.ones(shop.N_ITEMS, dtype=bool)
    in_stock[0] = False
    rules = BusinessRules(shop.N_ITEMS, in_stock=in_stock)
    served = artefact.recommend(1, 3, rules=rules)
    assert 0 not in served.items.tolist()
    assert served.items.tolist()[0] == 1
    # rules that leave too few of the user's own items: filled from the fallbacks, still ruled
    in_stock = np.zeros(shop.N_ITEMS, dtype=bool)
    in_stock[6:] = True
    served = artefact.recommend(1, 3, rules=BusinessRules(shop.N_ITEMS, in_stock=in_stock))
    assert len(served.items) == 3
    assert in_stock[served.items].all()


def test_similar_items(built: tuple[ModelArtefact, Hybrid, Events]) -> None:
    artefact, _, purchases = built
    neighbours = ItemItem(neighbours=5, similarity="bm25").fit(purchases.matrix())
    assert artefact.similar(0, 1).items.tolist() == neighbours.similar(0, 1).items.tolist() == [1]
    assert 1 not in artefact.similar(0, 3, exclude=[1]).items.tolist()
    assert artefact.similar(999, 3).items.size == 0


def test_tampered_or_foreign_artefacts_are_refused(
    built: tuple[ModelArtefact, Hybrid, Events], tmp_path: Path
) -> None:
    artefact, _, _ = built
    artefact.save(tmp_path)
    arrays = dict(np.load(tmp_path / ARRAYS_FILE))
    arrays["user_items"] = arrays["user_items"].copy()
    arrays["user_items"][0, 0] = 3
    np.savez(tmp_path / ARRAYS_FILE, **arrays)
    with pytest.raises(ArtefactError, match="does not match"):
        ModelArtefact.load(tmp_path)

    # an array of Python objects would need pickle: refused
    arrays["user_items"] = np.array([object()], dtype=object)
    np.savez(tmp_path / ARRAYS_FILE, **arrays)
    with pytest.raises(ArtefactError):
        ModelArtefact.load(tmp_path)

    manifest = json.loads(artefact.manifest.to_json())
    manifest["format"] = "something/2"
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(ArtefactError, match="unsupported"):
        ModelArtefact.load(tmp_path)
    with pytest.raises(ArtefactError):
        ModelArtefact.load(tmp_path / "missing")


def test_parameters_must_be_plain_json(built: tuple[ModelArtefact, Hybrid, Events]) -> None:
    _, model, _ = built
    assert model.sources is not None
    with pytest.raises(TypeError):
        ModelArtefact.build(
            model,
            n_users=2,
            popular=model.sources.popular,
            model_name="x",
            parameters={"bad": object()},
        )
