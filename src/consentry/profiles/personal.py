"""Traits a workspace marks personal, beyond the names consentry knows are personal.

A shop may send traits that identify a person under names consentry cannot guess
(``loyalty_card``, ``national_id``, ``vat_number``). Marking a trait personal makes it behave
like ``email`` or ``birthday`` from then on: new values are sealed under the person's data key
(so erasure destroys them with the key), and every value already stored, in the history and the
current values, is sealed in the same transaction. A mark is permanent: lifting it would put
personal data back in clear, so it is refused.

Names are compared folded (:func:`consentry.profiles.models.trait_slug`: ``Loyalty_Card``,
``loyalty-card`` and ``loyaltycard`` are one trait).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.orm import Session

from consentry.errors import FieldError, Invalid
from consentry.platform import audit
from consentry.platform.db import row_batches, utcnow
from consentry.platform.vault import is_token, vault_of
from consentry.profiles.models import PERSONAL_TRAITS, is_personal_trait, trait_field, trait_slug
from consentry.profiles.tables import CurrentTraitRow, PersonalTraitRow, TraitHistoryRow

MAX_KEYS = 100  # per request
_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")
_CACHE = "consentry.personal_trait_slugs"
BATCH = 5_000

_HISTORY = cast(Table, TraitHistoryRow.__table__)
_CURRENT = cast(Table, CurrentTraitRow.__table__)


@dataclass(frozen=True, slots=True)
class PersonalTrait:
    """A trait marked personal: its folded name, the name as given, when and by whom."""

    slug: str
    key: str
    marked_at: datetime
    marked_by: str


@dataclass(frozen=True, slots=True)
class MarkReport:
    """What marking did: traits newly marked, those already personal, values sealed."""

    marked: list[str]
    already: list[str]
    sealed_history: int
    sealed_current: int


def _slugs(session: Session, workspace_id: str) -> frozenset[str]:
    """The folded names the workspace marked, read once per session (a mark made in this
    session updates the cache; other sessions read the table afresh)."""
    cache: dict[str, frozenset[str]] = session.info.setdefault(_CACHE, {})
    found = cache.get(workspace_id)
    if found is None:
        found = frozenset(
            session.scalars(
                select(PersonalTraitRow.slug).where(PersonalTraitRow.workspace_id == workspace_id)
            )
        )
        cache[workspace_id] = found
    return found


def personal_in(session: Session, workspace_id: str) -> Callable[[str], bool]:
    """A predicate ``key -> bool``: personal by name or by the workspace's mark."""
    marked = _slugs(session, workspace_id)
    if not marked:
        return is_personal_trait
    return lambda key: is_personal_trait(key) or trait_slug(key) in marked


def is_personal(*, session: Session, workspace_id: str, key: str) -> bool:
    """Whether values of trait ``key`` are personal in this workspace (and so stored sealed)."""
    return bool(personal_in(session, workspace_id)(key))


def list_personal(*, session: Session, workspace_id: str) -> list[PersonalTrait]:
    """The workspace's marks, by name (the built-in personal names are not listed)."""
    rows = session.scalars(
        select(PersonalTraitRow)
        .where(PersonalTraitRow.workspace_id == workspace_id)
        .order_by(PersonalTraitRow.slug)
    )
    return [PersonalTrait(r.slug, r.key, r.marked_at, r.marked_by) for r in rows]


def builtin_personal() -> list[str]:
    """The folded names consentry always treats as personal."""
    return sorted(PERSONAL_TRAITS)


def _checked(keys: Sequence[Any]) -> list[str]:
    errors = []
    if not keys:
        errors.append(FieldError("keys", "name at least one trait"))
    if len(keys) > MAX_KEYS:
        errors.append(FieldError("keys", f"at most {MAX_KEYS} traits at once"))
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not _NAME.match(key) or not trait_slug(key):
            errors.append(FieldError(f"keys[{i}]", "a trait name of 1 to 200 printable characters"))
    if errors:
        raise Invalid("the traits to mark are not valid", errors)
    return [str(k) for k in keys]


def mark_personal(
    *,
    session: Session,
    workspace_id: str,
    keys: Sequence[Any],
    actor: str,
    reason: str = audit.UNSPECIFIED,
) -> MarkReport:
    """Mark ``keys`` personal, seal every clear value of them already stored, and record the
    action in the audit trail.

    In the caller's transaction: the marks and the sealing commit together, so no value of a
    marked trait stays in clear. Raises Invalid naming each bad name."""
    wanted: dict[str, str] = {}
    for key in _checked(keys):
        wanted.setdefault(trait_slug(key), key)
    known = _slugs(session, workspace_id)
    fresh = {s: k for s, k in wanted.items() if s not in known and s not in PERSONAL_TRAITS}
    now = utcnow()
    session.add_all(
        PersonalTraitRow(workspace_id=workspace_id, slug=s, key=k, marked_at=now, marked_by=actor)
        for s, k in sorted(fresh.items())
    )
    session.flush()
    session.info.setdefault(_CACHE, {})[workspace_id] = known | frozenset(fresh)
    history = current = 0
    if fresh:
        history = _seal_history(session, workspace_id, set(fresh))
        current = _seal_current(session, workspace_id, set(fresh))
    audit.record(
        session=session,
        workspace_id=workspace_id,
        actor=actor,
        action="privacy.personal_traits.mark",
        target_type="workspace",
        target_id=workspace_id,
        reason=reason,
        details={"marked": len(fresh), "sealed_values": history + current},
    )
    return MarkReport(
        marked=sorted(fresh.values()),
        already=sorted(k for s, k in wanted.items() if s not in fresh),
        sealed_history=history,
        sealed_current=current,
    )


def _folded(column: Any) -> Any:
    """:func:`trait_slug` in SQL (both stores): lower case without ``_``, ``-`` or spaces."""
    return func.replace(func.replace(func.replace(func.lower(column), "_", ""), "-", ""), " ", "")


def _clear_rows(
    session: Session, table: Table, key_columns: Iterable[Any], workspace_id: str, slugs: set[str]
) -> list[list[tuple[Any, ...]]]:
    stmt = select(*key_columns, table.c.key, table.c.value).where(
        table.c.workspace_id == workspace_id, _folded(table.c.key).in_(sorted(slugs))
    )
    return [
        [row for row in part if row[-1] is not None and not is_token(row[-1])]
        for part in row_batches(session, stmt, BATCH)
    ]


def _seal_history(session: Session, workspace_id: str, slugs: set[str]) -> int:
    """Seal clear history values under the profile each was observed on."""
    vault, total = vault_of(session), 0
    statement = (
        update(_HISTORY).where(_HISTORY.c.id == bindparam("row_id")).values(value=bindparam("v"))
    )
    for part in _clear_rows(
        session, _HISTORY, (_HISTORY.c.id, _HISTORY.c.profile_id), workspace_id, slugs
    ):
        if not part:
            continue
        tokens = vault.seal_many(
            workspace_id, [(profile, trait_field(key), value) for _, profile, key, value in part]
        )
        session.connection().execute(
            statement,
            [{"row_id": row[0], "v": token} for row, token in zip(part, tokens, strict=True)],
        )
        total += len(part)
    return total


def _seal_current(session: Session, workspace_id: str, slugs: set[str]) -> int:
    """Seal clear current values under the unified profile that holds them."""
    vault, total = vault_of(session), 0
    statement = (
        update(_CURRENT)
        .where(_CURRENT.c.canonical_id == bindparam("cid"), _CURRENT.c.key == bindparam("k"))
        .values(value=bindparam("v"))
    )
    for part in _clear_rows(session, _CURRENT, (_CURRENT.c.canonical_id,), workspace_id, slugs):
        if not part:
            continue
        tokens = vault.seal_many(
            workspace_id, [(cid, trait_field(key), value) for cid, key, value in part]
        )
        session.connection().execute(
            statement,
            [
                {"cid": cid, "k": key, "v": token}
                for (cid, key, _), token in zip(part, tokens, strict=True)
            ],
        )
        total += len(part)
    return total
