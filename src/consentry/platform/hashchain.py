"""Diagnosis of a hash chain: the consent ledger and the audit trail share it.

Both are append-only chains per workspace: each link carries ``seq`` (1, 2, 3, ...), its own
``hash`` and the ``prev_hash`` of the link before it (:data:`GENESIS_HASH` for the first), and a
head row remembers the last seq and hash. Walking the chain in seq order, the first link that
does not fit tells what happened: a link was **edited** (its fields no longer give its hash),
**deleted** (a seq is missing, or the head is ahead of the last link) or **reordered** (its
fields give its hash at another seq, or it links to a link elsewhere in the chain).

This module is pure: the caller supplies the links, a way to recompute a link's hash at another
seq, and two lookups (by hash and by prev_hash) over the same workspace's chain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

GENESIS_HASH = "0" * 64


class Link(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def seq(self) -> int: ...

    @property
    def hash(self) -> str: ...

    @property
    def prev_hash(self) -> str: ...


L = TypeVar("L", bound=Link)


@dataclass(frozen=True, slots=True)
class Break:
    """The first break in a chain: ``kind`` is edited, deleted or reordered; ``link_id`` is the
    link at fault (None when it was deleted) and ``seq`` where the chain breaks."""

    kind: str
    seq: int
    link_id: str | None
    detail: str


@dataclass(frozen=True, slots=True)
class Walk:
    """The result of walking a chain: ``checked`` links were found intact."""

    ok: bool
    checked: int
    broken: Break | None = None


@dataclass(frozen=True)
class Chain(Generic[L]):
    """How to look around one workspace's chain while diagnosing it.

    ``rehash(link, seq)`` is the hash the link's fields would have at ``seq``; ``by_hash`` and
    ``by_prev_hash`` find any link of the chain with that hash (or prev_hash), or None.
    ``noun`` names a link in messages ("record", "entry"); ``whole`` names the chain.
    """

    rehash: Callable[[L, int], str]
    by_hash: Callable[[str], Link | None]
    by_prev_hash: Callable[[str], Link | None]
    noun: str
    plural: str
    whole: str

    def check(self, link: L, prev: L | None) -> Break | None:
        """The break at ``link``, given the intact link before it (None at the start)."""
        expected = prev.seq + 1 if prev else 1
        prev_hash = prev.hash if prev else GENESIS_HASH
        if link.seq != expected:
            return self._gap(link, expected, prev_hash)
        if self.rehash(link, link.seq) != link.hash:
            return self._mismatch(link)
        if link.prev_hash != prev_hash:
            return self._broken_link(link, prev)
        return None

    def check_head(self, last: Link | None, head: tuple[int, str] | None) -> Break | None:
        """The break between the last link walked and the chain's head row (seq, hash)."""
        head_seq, head_hash = head if head else (0, GENESIS_HASH)
        last_seq, last_hash = (last.seq, last.hash) if last else (0, GENESIS_HASH)
        if head_seq > last_seq:
            detail = f"seq {last_seq + 1} to {head_seq} missing at the end of the {self.whole}"
            return Break("deleted", last_seq + 1, None, detail)
        if head_seq < last_seq or head_hash != last_hash:
            detail = f"the last {self.noun} does not match the {self.whole}'s head"
            return Break("edited", last_seq, last.id if last else None, detail)
        return None

    def walk(
        self,
        links: Iterable[L],
        head: Callable[[], tuple[int, str] | None],
        extra: Callable[[L], Break | None] = lambda _link: None,
    ) -> Walk:
        """Walk ``links`` in seq order and report the first break; ``extra`` adds a check of
        each link's own content (run after the chain checks pass)."""
        prev: L | None = None
        checked = 0
        for link in links:
            broken = self.check(link, prev) or extra(link)
            if broken is not None:  # the break may lie with the link before this one
                return Walk(ok=False, checked=min(checked, broken.seq - 1), broken=broken)
            prev, checked = link, checked + 1
        broken = self.check_head(prev, head())
        return Walk(ok=broken is None, checked=checked, broken=broken)

    def _gap(self, link: L, expected: int, prev_hash: str) -> Break:
        moved = self.by_prev_hash(prev_hash)
        if moved is not None:
            return Break("reordered", moved.seq, moved.id, f"belongs at seq {expected}")
        detail = f"seq {expected} to {link.seq - 1} missing; {self.noun} {link.id} follows the gap"
        return Break("deleted", expected, None, detail)

    def _mismatch(self, link: L) -> Break:
        """The link's fields do not give its hash: its seq was swapped, or it was edited."""
        # a swap with a neighbour is the usual reordering; the links around it locate others
        candidates = {1} if link.prev_hash == GENESIS_HASH else {link.seq - 1, link.seq + 1}
        successor = self.by_prev_hash(link.hash)
        predecessor = self.by_hash(link.prev_hash)
        candidates |= {successor.seq - 1} if successor else set()
        candidates |= {predecessor.seq + 1} if predecessor else set()
        for seq in sorted(candidates - {link.seq}):
            if self.rehash(link, seq) == link.hash:
                return Break("reordered", link.seq, link.id, f"was recorded at seq {seq}")
        return Break("edited", link.seq, link.id, "its fields do not match its hash")

    def _broken_link(self, link: L, prev: L | None) -> Break:
        """The link is intact but does not link to the one before it."""
        linked = self.by_hash(link.prev_hash)
        if linked is not None:
            return Break("reordered", linked.seq, linked.id, f"belongs before seq {link.seq}")
        if prev is None:
            return Break("deleted", link.seq, link.id, f"{self.plural} before it are missing")
        detail = f"rewritten: seq {link.seq} does not link to it"
        return Break("edited", prev.seq, prev.id, detail)
