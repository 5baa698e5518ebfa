"""The stored form of the models: members in blocks of rows (pack, read some rows, blank,
convert the npz and one-blob forms, integrity), and on both stores the member rows and the
look-up table written at training and deleted by pruning, erasure rewriting only the rows of
the blocks holding the person in every version (and converting the older forms), access
reporting what the versions hold, serving the same lists from any form, a tampered or missing
block refused, and migration 0027 converting an npz store into member rows and back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alembic import command
from sqlalchemy import delete, select, update

from consentry.config import Settings
from consentry.migrations import alembic_config, upgrade
from consentry.platform.db import Database
from consentry.privacy import erasure_service
from consentry.recommend import container, service
from consentry.recommend.artefact import ArtefactError
from consentry.recommend.serving import forget
from consentry.recommend.tables import (
    RecommendModelBlockRow,
    RecommendModelRow,
    RecommendModelSubjectRow,
    stored_arrays,
    stored_members,
)
from consentry.stores import close_database, open_database
from tests.conftest import BACKENDS, new_workspace
from tests.recommend.test_service import SETTINGS, grant, seed_shop, serve
from tests.support.store import profile_of

# --- the container, pure ------------------------------------------------------------------------


def arrays(n: int = 11, k: int = 4, seed: int = 3) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    return {
        "user_items": rng.integers(0, 50, (n, k)).astype(np.int32),
        "user_scores": rng.random((n, k)).astype(np.float32),
        "neighbour_items": rng.integers(0, 50, (50, 3)).astype(np.int32),
        "user_segments": rng.integers(0, 4, n).astype(np.int32),
        "profile_ids": np.asarray([f"p-{i:03d}" for i in range(n)], dtype=np.str_),
        "product_ids": np.asarray([f"sku-{i}" for i in range(50)], dtype=np.str_),
        "user_orders": rng.integers(1, 9, n).astype(np.int32),
        "in_stock": rng.random(50) > 0.5,
    }


def manifest_of(data: dict[str, Any], layout: dict[str, Any]) -> dict[str, Any]:
    first = ("user_items", "user_scores", "neighbour_items", "user_segments")
    return {
        "artefact": {"arrays": container.array_specs({n: data[n] for n in first})},
        "extra": container.array_specs({n: a for n, a in data.items() if n not in first}),
        "layout": layout,
    }


def packed(
    n: int = 11, block_rows: int = 3
) -> tuple[dict[str, Any], dict[str, Any], dict[container.Key, bytes]]:
    data = arrays(n)
    members, layout = container.pack(data, block_rows=block_rows)
    return data, manifest_of(data, layout), members


def legacy_blob(
    manifest: dict[str, Any], members: dict[container.Key, bytes]
) -> tuple[dict[str, Any], bytes]:
    """The same artefact in the one-blob layout (``MAGIC``, members at offsets)."""
    pieces, offset = [container.MAGIC], len(container.MAGIC)
    listed: dict[str, list[list[Any]]] = {}
    for name, entries in manifest["layout"]["members"].items():
        listed[name] = []
        for block, (length, sha) in enumerate(entries):
            pieces.append(members[(name, block)])
            listed[name].append([offset, length, sha])
            offset += length
    layout = {**manifest["layout"], "format": container.LEGACY_LAYOUT, "members": listed}
    return {**manifest, "layout": layout}, b"".join(pieces)


def test_members_round_trip_and_read_only_some_rows() -> None:
    data, manifest, members = packed()
    assert container.is_rows(manifest)
    assert len(manifest["layout"]["members"]["user_items"]) == 4  # 11 rows in blocks of 3
    assert {k for k in members if k[0] == "user_items"} == {("user_items", b) for b in range(4)}
    assert "sha256" not in manifest["artefact"]["arrays"]["user_items"]
    assert container.stored_bytes(manifest) == sum(len(v) for v in members.values())
    back = container.unpack_members(manifest, members)
    assert set(back) == set(data)
    for name, array in data.items():
        np.testing.assert_array_equal(back[name], array)
        assert back[name].dtype == array.dtype
    rows = [7, 1, 8]
    names = ("product_ids", "user_items", "profile_ids")
    wanted = container.members_for(manifest, names, rows)
    # blocks 0 and 2 of the two blocked arrays and the products: nothing else is read
    assert sorted(wanted) == sorted(
        [("product_ids", 0), ("user_items", 0), ("user_items", 2)]
        + [("profile_ids", 0), ("profile_ids", 2)]
    )
    got = container.read_rows(manifest, {k: members[k] for k in wanted}, names, rows)
    np.testing.assert_array_equal(got["user_items"], data["user_items"][[1, 7, 8]])
    np.testing.assert_array_equal(got["profile_ids"], data["profile_ids"][[1, 7, 8]])
    np.testing.assert_array_equal(got["product_ids"], data["product_ids"])
    with pytest.raises(ArtefactError):  # a block it needs is not given
        container.read_rows(manifest, {k: members[k] for k in wanted[1:]}, names, rows)
    with pytest.raises(ArtefactError):
        container.members_for(manifest, names, [11])


def test_blanking_rewrites_only_the_blocks_holding_the_rows() -> None:
    data, manifest, members = packed()
    wanted = container.blocked_members(manifest, [4])
    assert sorted(wanted) == sorted((name, 1) for name in container.BLOCKED)
    after, changed = container.blank_rows(manifest, {k: members[k] for k in wanted}, [4])
    assert set(changed) == set(wanted)  # rows 3..5: block 1 of each per-customer array
    back = container.unpack_members(after, {**members, **changed})
    assert back["profile_ids"][4] == "" and (back["user_items"][4] == -1).all()
    assert np.isneginf(back["user_scores"][4]).all()
    assert back["user_segments"][4] == -1 and back["user_orders"][4] == 0
    for name, array in data.items():
        keep = np.arange(array.shape[0]) != 4 if name in container.BLOCKED else slice(None)
        np.testing.assert_array_equal(back[name][keep], array[keep])
    before_members = manifest["layout"]["members"]
    for name, listed in before_members.items():
        for block, entry in enumerate(listed):
            if (name, block) in changed:
                assert after["layout"]["members"][name][block] != entry
            else:
                assert after["layout"]["members"][name][block] == entry
    assert manifest["layout"]["members"] == before_members  # the input is left alone
    # the old blocks no longer match the new manifest: a lost write is refused
    with pytest.raises(ArtefactError):
        container.unpack_members(after, members)


def test_tampered_missing_or_mismatched_members_are_refused() -> None:
    _, manifest, members = packed()
    flipped = dict(members)
    data = bytearray(members[("user_scores", 2)])
    data[len(data) // 2] ^= 0x55
    flipped[("user_scores", 2)] = bytes(data)
    with pytest.raises(ArtefactError):
        container.unpack_members(manifest, flipped)
    with pytest.raises(ArtefactError):
        container.read_rows(manifest, flipped, ("user_scores",), [7])
    with pytest.raises(ArtefactError):
        container.blank_rows(manifest, flipped, [7])
    # a block replaced by another valid one: its digest is not the one recorded
    swapped = {**members, ("user_scores", 2): members[("user_scores", 1)]}
    with pytest.raises(ArtefactError):
        container.unpack_members(manifest, swapped)
    missing = {k: v for k, v in members.items() if k != ("profile_ids", 3)}
    with pytest.raises(ArtefactError):
        container.unpack_members(manifest, missing)
    with pytest.raises(ArtefactError):
        container.unpack_members(manifest, members, ("nope",))
    wrong_shape = {**manifest, "extra": {**manifest["extra"]}}
    wrong_shape["extra"]["user_orders"] = {"dtype": "int32", "shape": [12]}
    with pytest.raises(ArtefactError):
        container.unpack_members(wrong_shape, members)
    wrong_type = {**manifest, "extra": {**manifest["extra"]}}
    wrong_type["extra"]["user_orders"] = {"dtype": "int64", "shape": [11]}
    with pytest.raises(ArtefactError):
        container.unpack_members(wrong_type, members)
    whole = {**manifest, "extra": {**manifest["extra"]}}
    whole["extra"]["in_stock"] = {**whole["extra"]["in_stock"], "sha256": "0" * 64}
    with pytest.raises(ArtefactError):
        container.unpack_members(whole, members)
    _, npz = container.to_npz(manifest, members)
    with pytest.raises(ArtefactError):  # an npz blob under a blocks manifest
        container.unpack(manifest, npz)
    old_manifest, blob = legacy_blob(manifest, members)
    with pytest.raises(ArtefactError):  # a truncated legacy blob
        container.unpack(old_manifest, blob[: len(blob) - 10])
    with pytest.raises(ArtefactError):
        container.convert(old_manifest, blob[: len(blob) - 10])


def test_npz_and_the_one_blob_layout_convert_to_members_and_back() -> None:
    data, manifest, members = packed(n=5000, block_rows=container.BLOCK_ROWS)
    old_manifest, npz = container.to_npz(manifest, members)
    assert npz[:2] == b"PK" and "layout" not in old_manifest
    assert old_manifest["artefact"]["arrays"]["user_items"]["sha256"]
    for name, array in container.unpack(old_manifest, npz).items():
        np.testing.assert_array_equal(array, data[name])
    new_manifest, converted = container.convert(old_manifest, npz)
    assert container.is_rows(new_manifest)
    assert len(new_manifest["layout"]["members"]["user_items"]) == 3  # default 2048 rows
    for name, array in container.unpack_members(new_manifest, converted).items():
        np.testing.assert_array_equal(array, data[name])
    with pytest.raises(ArtefactError):
        container.blank_rows(old_manifest, converted, [1])
    blob_manifest, blob = legacy_blob(manifest, members)
    assert container.is_blocks(blob) and not container.is_rows(blob_manifest)
    for name, array in container.unpack(blob_manifest, blob).items():
        np.testing.assert_array_equal(array, data[name])
    split_manifest, split = container.convert(blob_manifest, blob)
    assert split_manifest == manifest and split == members  # the members as they were


# --- on the stores --------------------------------------------------------------------------------


def stored(db: Database, workspace: str) -> list[RecommendModelRow]:
    with db.read() as session:
        rows = session.scalars(
            select(RecommendModelRow)
            .where(RecommendModelRow.workspace_id == workspace)
            .order_by(RecommendModelRow.version)
        ).all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def arrays_of(db: Database, row: RecommendModelRow) -> dict[str, Any]:
    with db.read() as session:
        return stored_arrays(session, row)


def members_of(db: Database, workspace: str) -> dict[tuple[str, str, int], bytes]:
    b = RecommendModelBlockRow
    with db.read() as session:
        return {
            (m, n, k): bytes(d)
            for m, n, k, d in session.execute(
                select(b.model_id, b.member, b.block, b.data).where(b.workspace_id == workspace)
            )
        }


def entries(db: Database, workspace: str) -> set[tuple[str, int, str]]:
    s = RecommendModelSubjectRow
    with db.read() as session:
        return {
            (a, r, p)
            for a, r, p in session.execute(
                select(s.artefact_id, s.row_index, s.profile_id).where(s.workspace_id == workspace)
            )
        }


def make_old(db: Database, workspace: str, version: int, form: str = "npz") -> None:
    """Store ``version`` as an older release did: ``npz`` (before 0027: an npz artefact, no
    look-up entries) or ``blob`` (the one-blob layout of blocks, with its entries)."""
    r, b = RecommendModelRow, RecommendModelBlockRow
    with db.write() as session:
        row = session.scalars(
            select(r).where(r.workspace_id == workspace, r.version == version)
        ).one()
        members = stored_members(session, row)
        if form == "npz":
            manifest, blob = container.to_npz(row.manifest, members)
            key = manifest.pop("artefact_id")
            s = RecommendModelSubjectRow
            session.execute(delete(s).where(s.artefact_id == key))
        else:
            manifest, blob = legacy_blob(row.manifest, members)
        session.execute(delete(b).where(b.model_id == row.id))
        session.execute(update(r).where(r.id == row.id).values(manifest=manifest, artefact=blob))
    forget(workspace)


def expected_subject_data(db: Database, workspace: str, ids: list[str]) -> list[dict[str, Any]]:
    """What the access request reported before: every version unpacked whole and searched."""
    found = []
    for row in sorted(stored(db, workspace), key=lambda r: -r.version):
        a = arrays_of(db, row)
        products = a["product_ids"].tolist()
        names = row.manifest["segments"]
        for i in np.nonzero(np.isin(a["profile_ids"], ids))[0].tolist():
            segment = int(a["user_segments"][i])
            found.append(
                {
                    "source": "recommendations",
                    "model_version": row.version,
                    "active": row.active,
                    "trained_at": row.trained_at,
                    "segment": names[segment] if 0 <= segment < len(names) else None,
                    "orders_counted": int(a["user_orders"][i]),
                    "recommended_products": [products[j] for j in a["user_items"][i] if j >= 0],
                }
            )
    return found


def subject_data(db: Database, workspace: str, ids: list[str]) -> list[dict[str, Any]]:
    with db.read() as session:
        return service.subject_data(session=session, workspace_id=workspace, profile_ids=ids)


def test_training_writes_member_rows_and_entries_and_pruning_deletes_them(db: Database) -> None:
    workspace = new_workspace(db)
    seed_shop(db, workspace, customers=40, seed=6)
    keep_two = SETTINGS.model_copy(update={"keep_versions": 2})
    trained = [service.train(db, workspace, keep_two) for _ in range(3)]
    assert trained[-1].removed_versions == [1]
    rows = stored(db, workspace)
    assert [r.version for r in rows] == [2, 3]
    members = members_of(db, workspace)
    assert {m for m, _, _ in members} == {r.id for r in rows}  # version 1's rows went
    expected = set()
    for row in rows:
        assert row.artefact is None and container.is_rows(row.manifest)
        mine = {(n, k): d for (m, n, k), d in members.items() if m == row.id}
        assert set(mine) == set(container.members_of(row.manifest, container_names(row)))
        ids = container.unpack_members(row.manifest, mine, ("profile_ids",))["profile_ids"]
        key = row.manifest["artefact_id"]
        expected |= {(key, i, p) for i, p in enumerate(ids.tolist()) if p}
    assert entries(db, workspace) == expected and len(expected) >= 2 * 35
    with db.read() as session:
        listed = service.models(session=session, workspace_id=workspace)
    assert [m["bytes"] for m in listed] == [
        sum(len(d) for (m, _, _), d in members.items() if m == row.id) for row in rows[::-1]
    ]


def container_names(row: RecommendModelRow) -> list[str]:
    return [*row.manifest["artefact"]["arrays"], *row.manifest["extra"]]


@pytest.mark.parametrize("form", ["npz", "blob"])
def test_erasure_blanks_the_person_in_every_version_of_any_form(db: Database, form: str) -> None:
    workspace = new_workspace(db)
    seed_shop(db, workspace, customers=50, seed=4)
    for _ in range(3):
        service.train(db, workspace, SETTINGS)
    make_old(db, workspace, 1, form)  # version 1 as an older release stored it
    person = profile_of(db, workspace, user_id="c0").id
    before = {r.version: arrays_of(db, r) for r in stored(db, workspace)}
    rows_before = {r.version: r for r in stored(db, workspace)}
    members_before = members_of(db, workspace)
    assert subject_data(db, workspace, [person]) == expected_subject_data(db, workspace, [person])
    assert len(subject_data(db, workspace, [person])) == 3
    with db.write() as session:
        done = erasure_service.erase(
            session=session,
            workspace_id=workspace,
            profile_id=person,
            actor="test:recommend",
            reason="data subject request",
        )
    assert done.certificate["erased"]["recommendations"] == 3
    rows = stored(db, workspace)
    members_after = members_of(db, workspace)
    for row in rows:
        assert row.artefact is None and container.is_rows(row.manifest)  # v1 converted
        assert row.revision == 1 and row.manifest["erased"] == 1 and row.manifest["artefact_id"]
        after = arrays_of(db, row)
        old = before[row.version]
        (at,) = np.nonzero(old["profile_ids"] == person)[0]
        assert person not in after["profile_ids"].tolist()
        assert after["profile_ids"][at] == "" and (after["user_items"][at] == -1).all()
        assert np.isneginf(after["user_scores"][at]).all()
        assert after["user_segments"][at] == -1 and after["user_orders"][at] == 0
        assert person not in str(row.manifest)
        for name, array in old.items():  # everyone else as before
            keep = np.arange(array.shape[0]) != at if name in container.BLOCKED else slice(None)
            np.testing.assert_array_equal(after[name][keep], array[keep])
        if row.version == 1:
            continue
        # a version stored as rows: only the rows of the blocks holding the person changed
        mine_before = {(n, k): d for (m, n, k), d in members_before.items() if m == row.id}
        mine_after = {(n, k): d for (m, n, k), d in members_after.items() if m == row.id}
        assert set(mine_after) == set(mine_before)
        changed = {k for k in mine_after if mine_after[k] != mine_before[k]}
        assert changed == set(container.blocked_members(rows_before[row.version].manifest, [at]))
    # the converted version got its entries; nobody's entry points at the person any more
    listed = entries(db, workspace)
    assert {a for a, _, _ in listed} == {r.manifest["artefact_id"] for r in rows}
    assert not [p for _, _, p in listed if p == person]
    assert subject_data(db, workspace, [person]) == []
    with db.write() as session:
        again = service.erase_subject(session=session, workspace_id=workspace, profile_ids=[person])
    assert again == 0
    other = profile_of(db, workspace, user_id="c1").id
    assert subject_data(db, workspace, [other]) == expected_subject_data(db, workspace, [other])


def test_serving_answers_the_same_lists_from_any_form(db: Database) -> None:
    workspace = new_workspace(db)
    seed_shop(db, workspace, customers=60, seed=9)
    service.train(db, workspace, SETTINGS)
    people = [profile_of(db, workspace, user_id=f"c{i}").id for i in range(0, 24, 3)]
    for person in people:
        grant(db, workspace, person)

    def answers() -> list[Any]:
        out: list[Any] = [serve(db, workspace, p, count=12)["items"] for p in people]
        with db.read() as session:
            for product in ("coffee-1", "books-3", "garden-0"):
                found = service.for_item(
                    session=session, workspace_id=workspace, product_id=product, settings=SETTINGS
                )
                out.append(found["items"])
            model = service.active_model(session=session, workspace_id=workspace)
        out.append({n: a.tolist() for n, a in model.artefact.arrays().items()})
        out.append(model.profile_index)
        return out

    rows = answers()
    assert any(len(items) == 12 for items in rows[: len(people)])
    make_old(db, workspace, 1, "blob")
    assert container.is_blocks(stored(db, workspace)[0].artefact or b"")
    assert answers() == rows
    with db.write() as session:  # the erasure of nobody in it leaves the old form alone
        none = service.erase_subject(session=session, workspace_id=workspace, profile_ids=[])
    assert none == 0 and stored(db, workspace)[0].artefact is not None
    make_old_from_blob_to_npz(db, workspace)
    assert (stored(db, workspace)[0].artefact or b"")[:2] == b"PK"
    assert answers() == rows


def make_old_from_blob_to_npz(db: Database, workspace: str) -> None:
    r = RecommendModelRow
    (row,) = stored(db, workspace)
    assert row.artefact is not None
    manifest, members = container.convert(row.manifest, row.artefact)
    manifest, npz = container.to_npz(manifest, members)
    with db.write() as session:
        session.execute(update(r).where(r.id == row.id).values(manifest=manifest, artefact=npz))
    forget(workspace)


def test_a_tampered_or_missing_stored_block_is_refused(db: Database) -> None:
    workspace = new_workspace(db)
    seed_shop(db, workspace, customers=30, seed=12)
    service.train(db, workspace, SETTINGS)
    person = profile_of(db, workspace, user_id="c0").id
    (row,) = stored(db, workspace)
    b = RecommendModelBlockRow
    where = (b.model_id == row.id, b.member == "user_items", b.block == 0)
    original = members_of(db, workspace)[(row.id, "user_items", 0)]
    changed = bytearray(original)
    changed[len(changed) // 2] ^= 0xFF
    with db.write() as session:
        session.execute(update(b).where(*where).values(data=bytes(changed)))
    forget(workspace)

    def refused() -> None:
        with db.read() as session:
            with pytest.raises(ArtefactError):
                service.active_model(session=session, workspace_id=workspace)
            with pytest.raises(ArtefactError):
                service.subject_data(session=session, workspace_id=workspace, profile_ids=[person])
        with db.write() as session, pytest.raises(ArtefactError):
            service.erase_subject(session=session, workspace_id=workspace, profile_ids=[person])

    refused()
    with db.write() as session:
        session.execute(delete(b).where(*where))
    forget(workspace)
    refused()


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_0027_converts_npz_models_and_back(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        url = request.getfixturevalue("postgres_server").create_database()
    upgrade(url)
    db = open_database(Settings(environment="test", database_url=url))
    try:
        workspace = new_workspace(db)
        seed_shop(db, workspace, customers=30, seed=2)
        service.train(db, workspace, SETTINGS)
        service.train(db, workspace, SETTINGS)
        make_old(db, workspace, 1)
        make_old(db, workspace, 2)
        old = {r.version: arrays_of(db, r) for r in stored(db, workspace)}
    finally:
        close_database(db)
    command.downgrade(alembic_config(url), "0026")
    upgrade(url)
    db = open_database(Settings(environment="test", database_url=url))
    try:
        rows = stored(db, workspace)
        expected = set()
        members = members_of(db, workspace)
        for row in rows:
            assert row.artefact is None and container.is_rows(row.manifest)
            assert row.revision == 0
            assert {m for m, _, _ in members} == {r.id for r in rows}
            for name, array in arrays_of(db, row).items():
                np.testing.assert_array_equal(array, old[row.version][name])
            ids = old[row.version]["profile_ids"].tolist()
            expected |= {(row.manifest["artefact_id"], i, p) for i, p in enumerate(ids) if p}
        assert entries(db, workspace) == expected
        person = profile_of(db, workspace, user_id="c0").id
        assert len(subject_data(db, workspace, [person])) == 2
        with db.write() as session:
            assert (
                service.erase_subject(session=session, workspace_id=workspace, profile_ids=[person])
                == 2
            )
        erased = {r.version: arrays_of(db, r) for r in stored(db, workspace)}
    finally:
        close_database(db)
    command.downgrade(alembic_config(url), "0026")
    db = open_database(Settings(environment="test", database_url=url))
    r = RecommendModelRow
    try:
        with db.read() as session:
            blobs = session.execute(select(r.version, r.manifest, r.artefact)).all()
    finally:
        close_database(db)
    for version, manifest, blob in blobs:
        assert blob[:2] == b"PK" and "layout" not in manifest and "artefact_id" not in manifest
        for name, array in container.unpack(manifest, blob).items():
            np.testing.assert_array_equal(array, erased[version][name])
    upgrade(url)
