"""The shared hash-chain diagnosis, on an in-memory chain (no database)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from hypothesis import given
from hypothesis import strategies as st

from consentry.platform.hashchain import GENESIS_HASH, Chain, Link


@dataclass(frozen=True)
class Node:
    id: str
    seq: int
    body: str
    prev_hash: str
    hash: str


def digest(seq: int, body: str, prev_hash: str) -> str:
    return hashlib.sha256(f"{seq}|{body}|{prev_hash}".encode()).hexdigest()


def build(bodies: list[str]) -> list[Node]:
    nodes: list[Node] = []
    prev = GENESIS_HASH
    for seq, body in enumerate(bodies, start=1):
        value = digest(seq, body, prev)
        nodes.append(Node(f"n{seq}", seq, body, prev, value))
        prev = value
    return nodes


def chain_over(nodes: list[Node]) -> Chain[Node]:
    def by(attr: str) -> object:
        def find(value: str) -> Link | None:
            return next((n for n in nodes if getattr(n, attr) == value), None)

        return find

    return Chain(
        rehash=lambda node, seq: digest(seq, node.body, node.prev_hash),
        by_hash=by("hash"),  # type: ignore[arg-type]
        by_prev_hash=by("prev_hash"),  # type: ignore[arg-type]
        noun="node",
        plural="nodes",
        whole="list",
    )


def walk(stored: list[Node], head: tuple[int, str] | None) -> tuple[bool, str | None, int | None]:
    result = chain_over(stored).walk(sorted(stored, key=lambda n: n.seq), lambda: head)
    broken = result.broken
    return result.ok, broken.kind if broken else None, broken.seq if broken else None


bodies = st.lists(st.text(min_size=1, max_size=8), min_size=2, max_size=12)


@given(bodies)
def test_an_untouched_chain_verifies(values: list[str]) -> None:
    nodes = build(values)
    assert walk(nodes, (nodes[-1].seq, nodes[-1].hash)) == (True, None, None)


def test_an_empty_chain_verifies_and_a_head_without_links_is_a_deletion() -> None:
    assert walk([], None) == (True, None, None)
    assert walk([], (3, "f" * 64)) == (False, "deleted", 1)


@given(bodies, st.data())
def test_an_edited_body_is_reported_at_its_seq(values: list[str], data: st.DataObject) -> None:
    nodes = build(values)
    at = data.draw(st.integers(0, len(nodes) - 1))
    nodes[at] = replace(nodes[at], body=nodes[at].body + "!")
    assert walk(nodes, (nodes[-1].seq, nodes[-1].hash)) == (False, "edited", at + 1)


@given(bodies, st.data())
def test_a_deleted_link_is_reported_where_the_gap_starts(
    values: list[str], data: st.DataObject
) -> None:
    nodes = build(values)
    head = (nodes[-1].seq, nodes[-1].hash)
    at = data.draw(st.integers(0, len(nodes) - 1))
    del nodes[at]
    assert walk(nodes, head) == (False, "deleted", at + 1)


@given(bodies, st.data())
def test_two_swapped_seqs_are_reported_as_reordered(values: list[str], data: st.DataObject) -> None:
    nodes = build(values)
    head = (nodes[-1].seq, nodes[-1].hash)
    i = data.draw(st.integers(0, len(nodes) - 2))
    a, b = nodes[i], nodes[i + 1]
    nodes[i], nodes[i + 1] = replace(b, seq=a.seq), replace(a, seq=b.seq)
    ok, kind, _ = walk(nodes, head)
    assert (ok, kind) == (False, "reordered")


def test_a_rewritten_tail_that_no_longer_matches_the_head_is_an_edit() -> None:
    nodes = build(["a", "b", "c"])
    forged = build(["a", "b", "forged"])
    assert walk(forged, (nodes[-1].seq, nodes[-1].hash)) == (False, "edited", 3)
