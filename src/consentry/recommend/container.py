"""The stored form of a trained model: how its arrays are cut into members, read back,
checked, and how a person's rows are blanked in place.

Three forms are read:

- **rows** (``LAYOUT``, written since migration 0027): every array is a member of its own,
  except the per-customer arrays (``BLOCKED``: profile ids, lists, scores, segments, order
  counts), which are cut into blocks of ``block_rows`` rows; each member is compressed on its
  own (zlib) and stored as a row of its own (``recommend_model_blocks``, keyed by the member's
  name and block number). The manifest's ``layout`` gives each member's compressed length and
  the SHA-256 of its uncompressed bytes; the manifest's array specs give each array's dtype
  and shape (and, for the arrays stored whole, the SHA-256 of the whole array). So a few
  customers' rows are read, or blanked (an erasure), by reading and writing only the members
  holding them; every member read is checked against its digest, its size against the dtype
  and shape, and a member the layout names but the store does not hold is refused.
- **one blob of blocks** (``LEGACY_LAYOUT``, ``MAGIC`` then the same zlib members one after
  the other, each member's offset in the layout): what the ``artefact`` column held while
  migration 0027 was being written. :func:`convert` splits it into members as they are.
- **npz** (``numpy.savez_compressed``, loaded without pickles): what stores held before.
  Every array's dtype, shape and SHA-256 is in the manifest. :func:`convert` cuts it into
  members (migration 0027 converts the stored versions; an erasure converts one it meets).

Pure: bytes and manifests in, bytes and manifests out; no SQL.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from consentry.recommend.artefact import ArtefactError, digest

LAYOUT = "consentry.recommend.blocks/2"  # members stored as rows
LEGACY_LAYOUT = "consentry.recommend.blocks/1"  # members in one blob, at offsets
MAGIC = b"consentry.recommend.blocks/1\n"  # how a blob of the legacy layout starts
BLOCK_ROWS = 2048
LEVEL = 6  # training: the size of numpy's savez_compressed
ERASE_LEVEL = 1  # blocks rewritten by an erasure: a few rows, recompressed in milliseconds
# the per-customer arrays, in blocks of rows, and what an erased customer's row becomes
BLANKS: dict[str, Any] = {
    "profile_ids": "",
    "user_items": -1,
    "user_scores": -np.inf,
    "user_segments": -1,
    "user_orders": 0,
}
BLOCKED = tuple(BLANKS)

Key = tuple[str, int]  # a member: (array name, block number; 0 for an array stored whole)
Members = Mapping[Key, bytes]


# --- writing -------------------------------------------------------------------------------------


def _dtype(array: NDArray[Any]) -> np.dtype[Any]:
    if array.dtype.hasobject:
        raise ArtefactError("an artefact holds plain arrays only (no objects)")
    return array.dtype


def array_specs(
    arrays: Mapping[str, NDArray[Any]], blocked: Collection[str] = BLOCKED
) -> dict[str, dict[str, Any]]:
    """Each array's dtype and shape for the manifest, and the SHA-256 of the arrays stored
    whole (a blocked array's digests are its blocks', in the layout)."""
    out: dict[str, dict[str, Any]] = {}
    for name, array in arrays.items():
        spec: dict[str, Any] = {"dtype": str(_dtype(array)), "shape": list(array.shape)}
        if name not in blocked:
            spec["sha256"] = digest(array)
        out[name] = spec
    return out


def _blocks(array: NDArray[Any], block_rows: int) -> Iterable[NDArray[Any]]:
    for start in range(0, array.shape[0], block_rows):
        yield array[start : start + block_rows]


def pack(
    arrays: Mapping[str, NDArray[Any]],
    *,
    block_rows: int = BLOCK_ROWS,
    level: int = LEVEL,
) -> tuple[dict[Key, bytes], dict[str, Any]]:
    """The arrays as compressed members, keyed by (name, block), and their layout for the
    manifest (``layout``): the per-customer arrays (those of ``BLOCKED`` present) in blocks
    of ``block_rows`` rows, every other array one member (block 0)."""
    if block_rows < 1:
        raise ValueError("block_rows must be positive")
    packed: dict[Key, bytes] = {}
    listed: dict[str, list[list[Any]]] = {}
    blocked = [name for name in BLOCKED if name in arrays]
    for name, array in arrays.items():
        _dtype(array)
        if name in blocked and array.ndim == 0:
            raise ArtefactError(f"array {name} must have rows")
        parts = _blocks(array, block_rows) if name in blocked else [array]
        entries = listed[name] = []
        for block, part in enumerate(parts):
            raw = np.ascontiguousarray(part).tobytes()
            data = packed[(name, block)] = zlib.compress(raw, level)
            entries.append([len(data), hashlib.sha256(raw).hexdigest()])
    layout = {"format": LAYOUT, "block_rows": block_rows, "blocked": blocked, "members": listed}
    return packed, layout


def is_rows(manifest: Mapping[str, Any]) -> bool:
    """Whether the manifest's artefact is stored as member rows (not in the ``artefact``
    column: a legacy blob or an npz file)."""
    layout = manifest.get("layout")
    return isinstance(layout, Mapping) and layout.get("format") == LAYOUT


def is_blocks(blob: bytes | memoryview) -> bool:
    """Whether a stored blob is in the legacy one-blob block layout (not an npz file)."""
    return bytes(blob[: len(MAGIC)]) == MAGIC


def stored_bytes(manifest: Mapping[str, Any]) -> int:
    """The compressed size of an artefact stored as member rows (their data)."""
    members = manifest["layout"]["members"]
    return sum(int(entry[0]) for listed in members.values() for entry in listed)


# --- reading -------------------------------------------------------------------------------------


class _Layout:
    """A manifest's layout of member rows, checked against its array specs."""

    def __init__(self, manifest: Mapping[str, Any]) -> None:
        try:
            layout = manifest["layout"]
            if layout["format"] != LAYOUT:
                raise ArtefactError(
                    f"the manifest's artefact is not stored as member rows ({layout['format']!r})"
                )
            self.block_rows = int(layout["block_rows"])
            self.blocked = frozenset(str(n) for n in layout["blocked"])
            # each member: (compressed length, SHA-256)
            self.members: dict[str, list[tuple[int, str]]] = {
                str(name): [(int(e[0]), str(e[1])) for e in listed]
                for name, listed in layout["members"].items()
            }
            self.specs: dict[str, Mapping[str, Any]] = {
                **manifest["artefact"]["arrays"],
                **manifest["extra"],
            }
            self.dtypes = {name: np.dtype(str(spec["dtype"])) for name, spec in self.specs.items()}
            self.shapes = {
                name: tuple(int(d) for d in spec["shape"]) for name, spec in self.specs.items()
            }
        except ArtefactError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise ArtefactError(f"invalid artefact layout: {exc}") from exc
        if self.block_rows < 1 or not self.blocked <= set(BLOCKED) & set(self.specs):
            raise ArtefactError("invalid artefact layout")
        for name, dtype in self.dtypes.items():
            if dtype.hasobject:
                raise ArtefactError(f"array {name} has the wrong type or shape")
            listed = self.members.get(name)
            if listed is None:
                raise ArtefactError(f"array {name} is missing")
            shape = self.shapes[name]
            if name in self.blocked:
                if not shape or len(listed) != math.ceil(shape[0] / self.block_rows):
                    raise ArtefactError(f"array {name} has the wrong type or shape")
            elif len(listed) != 1 or listed[0][1] != self.specs[name].get("sha256"):
                raise ArtefactError(f"array {name} does not match the manifest")

    def named(self, names: Collection[str] | None) -> list[str]:
        """``names`` (every array when None), each one the manifest has."""
        wanted = list(self.specs) if names is None else list(names)
        for name in wanted:
            if name not in self.specs:
                raise ArtefactError(f"array {name} is missing")
        return wanted

    def keys(self, name: str) -> list[Key]:
        return [(name, block) for block in range(len(self.members[name]))]

    def rows(self, rows: Sequence[int]) -> NDArray[np.intp]:
        """``rows`` sorted, without repeats, each checked against the per-customer arrays."""
        found = np.asarray(sorted(set(rows)), dtype=np.intp)
        for name in self.blocked:
            if found.size and (found[0] < 0 or found[-1] >= self.shapes[name][0]):
                raise ArtefactError(f"row out of range of {name}")
        return found

    def blocks_holding(self, found: NDArray[np.intp]) -> list[int]:
        return sorted({int(r) // self.block_rows for r in found.tolist()})

    def members_for(self, names: Collection[str], found: NDArray[np.intp]) -> list[Key]:
        blocks = self.blocks_holding(found)
        return [
            (name, block)
            for name in self.named(names)
            for block in (blocks if name in self.blocked else [0])
        ]

    def block_shape(self, name: str, block: int) -> tuple[int, ...]:
        if name in self.blocked:
            rows = min(self.block_rows, self.shapes[name][0] - block * self.block_rows)
            return (rows, *self.shapes[name][1:])
        return self.shapes[name]

    def decode(self, name: str, block: int, data: bytes | memoryview | None) -> NDArray[Any]:
        """One member's array (read only), checked: it is there, it inflates, to the size
        its dtype and shape give, to the digest the layout records."""
        if data is None:
            raise ArtefactError(f"array {name} is missing a block")
        _length, sha = self.members[name][block]
        shape = self.block_shape(name, block)
        dtype = self.dtypes[name]
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        inflate = zlib.decompressobj()
        try:  # never more than the expected size plus one byte, whatever the member holds
            raw = inflate.decompress(data, size + 1)
        except zlib.error as exc:
            raise ArtefactError(f"array {name} cannot be read: {exc}") from exc
        if len(raw) != size or not inflate.eof or inflate.unconsumed_tail or inflate.unused_data:
            raise ArtefactError(f"array {name} has the wrong type or shape")
        if hashlib.sha256(raw).hexdigest() != sha:
            raise ArtefactError(f"array {name} does not match the manifest")
        return np.frombuffer(raw, dtype=dtype).reshape(shape)

    def read(self, name: str, members: Members) -> NDArray[Any]:
        """A whole array, each of its members checked."""
        if name not in self.blocked:
            return self.decode(name, 0, members.get((name, 0)))
        whole = np.empty(self.shapes[name], dtype=self.dtypes[name])
        for block in range(len(self.members[name])):
            start = block * self.block_rows
            part = self.decode(name, block, members.get((name, block)))
            whole[start : start + part.shape[0]] = part
        return whole

    def rows_in(
        self, name: str, found: NDArray[np.intp], members: Members
    ) -> Iterator[tuple[int, NDArray[Any], NDArray[np.intp]]]:
        """Each block of a per-customer array holding some of ``found`` (checked rows): its
        number, its array (read only) and where those rows are in it."""
        for block in self.blocks_holding(found):
            start = block * self.block_rows
            data = self.decode(name, block, members.get((name, block)))
            yield block, data, found[(found >= start) & (found < start + data.shape[0])] - start


def _split_legacy(
    manifest: Mapping[str, Any], blob: bytes | memoryview
) -> tuple[dict[str, Any], dict[Key, bytes]]:
    """A blob of the legacy one-blob layout as the members it holds, as they are (each is
    checked when it is decoded), and the manifest with the layout of member rows."""
    view = memoryview(blob)
    members: dict[Key, bytes] = {}
    listed: dict[str, list[list[Any]]] = {}
    try:
        layout = manifest["layout"]
        if layout["format"] != LEGACY_LAYOUT:
            raise ArtefactError("the stored artefact does not match its manifest's layout")
        for name, entries in layout["members"].items():
            listed[str(name)] = []
            for block, (offset, length, sha) in enumerate(entries):
                start, end = int(offset), int(offset) + int(length)
                if start < len(MAGIC) or end < start or end > len(view):
                    raise ArtefactError("the stored artefact is truncated or its layout is wrong")
                members[(str(name), block)] = bytes(view[start:end])
                listed[str(name)].append([int(length), str(sha)])
    except ArtefactError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtefactError(f"invalid artefact layout: {exc}") from exc
    out = copy.deepcopy(dict(manifest))
    out["layout"] = {**out["layout"], "format": LAYOUT, "members": listed}
    return out, members


def unpack_members(
    manifest: Mapping[str, Any], members: Members, names: Collection[str] | None = None
) -> dict[str, NDArray[Any]]:
    """The arrays of an artefact stored as member rows (only ``names`` when given), each
    member checked against the layout, each array against the manifest (type, shape)."""
    layout = _Layout(manifest)
    return {name: layout.read(name, members) for name in layout.named(names)}


def unpack(
    manifest: Mapping[str, Any], blob: bytes, names: Collection[str] | None = None
) -> dict[str, NDArray[Any]]:
    """The arrays of an artefact stored in the ``artefact`` column (a legacy blob of blocks
    or an npz file; only ``names`` when given: the others stay compressed), each checked
    against the manifest (type, shape, hash)."""
    if is_blocks(blob):
        return unpack_members(*_split_legacy(manifest, blob), names)
    if "layout" in manifest:
        raise ArtefactError("the stored artefact does not match its manifest's layout")
    return _unpack_npz(manifest, blob, names)


def _unpack_npz(
    manifest: Mapping[str, Any], blob: bytes, names: Collection[str] | None
) -> dict[str, NDArray[Any]]:
    try:
        expected = {**manifest["artefact"]["arrays"], **manifest["extra"]}
        if names is not None:
            expected = {name: expected[name] for name in names}
    except (KeyError, TypeError) as exc:
        raise ArtefactError(f"invalid manifest: {exc}") from exc
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files if names is None or name in names}
    except (OSError, ValueError, EOFError) as exc:
        raise ArtefactError(f"the stored artefact cannot be read: {exc}") from exc
    for name, spec in expected.items():
        array = arrays.get(name)
        if array is None:
            raise ArtefactError(f"array {name} is missing")
        if str(array.dtype) != spec["dtype"] or list(array.shape) != list(spec["shape"]):
            raise ArtefactError(f"array {name} has the wrong type or shape")
        if digest(array) != spec["sha256"]:
            raise ArtefactError(f"array {name} does not match the manifest")
    return arrays


def members_for(
    manifest: Mapping[str, Any], names: Collection[str], rows: Sequence[int]
) -> list[Key]:
    """The members :func:`read_rows` reads for these rows of these arrays (so that a caller
    fetches just those rows of the store): the blocks holding the rows, the others whole."""
    layout = _Layout(manifest)
    return layout.members_for(names, layout.rows(rows))


def members_of(manifest: Mapping[str, Any], names: Collection[str]) -> list[Key]:
    """Every member of these arrays (what reading them whole fetches)."""
    layout = _Layout(manifest)
    return [key for name in layout.named(names) for key in layout.keys(name)]


def read_rows(
    manifest: Mapping[str, Any], members: Members, names: Collection[str], rows: Sequence[int]
) -> dict[str, NDArray[Any]]:
    """Some rows of the blocked arrays (in ascending order of ``rows``) and the other named
    arrays whole, from the members :func:`members_for` names; each member checked."""
    layout = _Layout(manifest)
    found = layout.rows(rows)
    out: dict[str, NDArray[Any]] = {}
    for name in layout.named(names):
        if name not in layout.blocked:
            out[name] = layout.read(name, members)
            continue
        parts = [data[mine] for _, data, mine in layout.rows_in(name, found, members)]
        out[name] = (
            np.concatenate(parts)
            if parts
            else np.empty((0, *layout.shapes[name][1:]), layout.dtypes[name])
        )
    return out


# --- erasure and conversion ----------------------------------------------------------------------


def blank_rows(
    manifest: Mapping[str, Any], members: Members, rows: Sequence[int]
) -> tuple[dict[str, Any], dict[Key, bytes]]:
    """These rows blanked in every per-customer array (``BLANKS``): the manifest with the new
    lengths and digests of the blocks holding them, and those blocks' new data (the only
    members to write). ``members`` needs to hold only the blocks of :func:`blocked_members`."""
    layout = _Layout(manifest)
    found = layout.rows(rows)
    out = copy.deepcopy(dict(manifest))
    entries = out["layout"]["members"]
    changed: dict[Key, bytes] = {}
    for name in sorted(layout.blocked):
        for block, data, mine in layout.rows_in(name, found, members):
            blanked = data.copy()
            blanked[mine] = BLANKS[name]
            raw = blanked.tobytes()
            packed = changed[(name, block)] = zlib.compress(raw, ERASE_LEVEL)
            entries[name][block] = [len(packed), hashlib.sha256(raw).hexdigest()]
    return out, changed


def blocked_members(manifest: Mapping[str, Any], rows: Sequence[int]) -> list[Key]:
    """The members :func:`blank_rows` reads and rewrites for these rows."""
    layout = _Layout(manifest)
    return layout.members_for(sorted(layout.blocked), layout.rows(rows))


def convert(manifest: Mapping[str, Any], blob: bytes) -> tuple[dict[str, Any], dict[Key, bytes]]:
    """An artefact stored in the ``artefact`` column (checked) as member rows: a legacy blob
    of blocks is split into its members as they are (each checked against its digest), an
    npz file is cut into members; the manifest's specs and layout are written for them."""
    if is_blocks(blob):
        out, members = _split_legacy(manifest, blob)
        layout = _Layout(out)
        for name in layout.specs:
            for key in layout.keys(name):
                layout.decode(*key, members.get(key))
        return out, members
    arrays = _unpack_npz(manifest, blob, None)
    members, rows_layout = pack(arrays)
    out = copy.deepcopy(dict(manifest))
    for section in (out["artefact"]["arrays"], out["extra"]):
        section.update(array_specs({name: arrays[name] for name in section}))
    out["layout"] = rows_layout
    return out, members


def to_npz(manifest: Mapping[str, Any], members: Members) -> tuple[dict[str, Any], bytes]:
    """An artefact stored as member rows back as one npz file (what stores before migration
    0027 read: migration 0027's downgrade)."""
    arrays = unpack_members(manifest, members)
    buffer = io.BytesIO()
    named: dict[str, Any] = dict(arrays)
    np.savez_compressed(buffer, **named)
    out = copy.deepcopy(dict(manifest))
    out.pop("layout", None)
    for section in (out["artefact"]["arrays"], out["extra"]):
        section.update(array_specs({name: arrays[name] for name in section}, blocked=()))
    return out, buffer.getvalue()
