"""The store side of a hash chain: the look-ups :class:`~consentry.platform.hashchain.Chain`
needs, over a table of links and its table of chain heads (one row per workspace). The consent
ledger and the audit trail verify their chains through it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from consentry.platform.hashchain import Chain, Link

L = TypeVar("L", bound=Link)


def stored_chain(
    session: Session,
    workspace_id: str,
    links: Any,
    heads: Any,
    *,
    rehash: Callable[[L, int], str],
    noun: str,
    plural: str,
    whole: str,
) -> tuple[Chain[L], Callable[[], tuple[int, str] | None]]:
    """The chain of a workspace whose links are rows of ``links`` (columns workspace_id, seq,
    hash, prev_hash) and whose head is the ``heads`` row keyed by the workspace (seq, hash);
    returns the chain and the reader of its head."""

    def find(condition: Any) -> Link | None:
        row: Link | None = session.scalars(
            select(links).where(links.workspace_id == workspace_id, condition).limit(1)
        ).first()
        return row

    def head() -> tuple[int, str] | None:
        row = session.get(heads, workspace_id, populate_existing=True)
        return (row.seq, row.hash) if row else None

    chain: Chain[L] = Chain(
        rehash=rehash,
        by_hash=lambda value: find(links.hash == value),
        by_prev_hash=lambda value: find(links.prev_hash == value),
        noun=noun,
        plural=plural,
        whole=whole,
    )
    return chain, head
