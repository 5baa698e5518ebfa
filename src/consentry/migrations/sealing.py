"""Sealing personal data written by a release that stored it in clear (migration 0010).

Each table is read in pages and rewritten in place: identifiers get their blind index and sealed
value, personal traits and the personal values of consent proofs are sealed under their
profile's key, events get blind indexes of their ids and a sealed payload. A row already sealed
is left alone, so the pass can run again after an interruption.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, tuple_, update

from consentry.consent.ledger import PERSONAL_PROOF_KEYS, proof_field
from consentry.consent.tables import ConsentRecordRow
from consentry.ingest.service import PAYLOAD, event_subject, identity_index
from consentry.ingest.tables import EventRow
from consentry.platform.vault import Vault, is_token
from consentry.profiles.models import ANONYMOUS_ID, USER_ID, is_personal_trait
from consentry.profiles.tables import CurrentTraitRow, IdentifierRow, TraitHistoryRow
from consentry.profiles.traits import trait_field

PAGE = 1000


def _table(row_class: Any) -> Table:
    table: Table = row_class.__table__
    return table


def _pages(
    connection: Connection, table: Table, *columns: str, key_width: int = 1
) -> Iterator[Sequence[Any]]:
    """Rows of ``columns`` in pages, ordered by the first ``key_width`` of them (the key)."""
    after: tuple[Any, ...] | None = None
    key = [table.c[c] for c in columns[:key_width]]
    while True:
        query = select(*(table.c[c] for c in columns)).order_by(*key).limit(PAGE)
        if after is not None:
            query = query.where(
                tuple_(*key) > tuple_(*after) if key_width > 1 else key[0] > after[0]
            )
        rows = connection.execute(query).all()
        if not rows:
            return
        yield rows
        after = tuple(rows[-1][:key_width])


def seal_existing(connection: Connection, vault_factory: Callable[[], Vault]) -> int:
    """Seal every clear personal value in the store; returns how many rows were rewritten."""
    vault: Vault | None = None

    def get_vault() -> Vault:
        nonlocal vault
        vault = vault or vault_factory()
        return vault

    return (
        _identifiers(connection, get_vault)
        + _traits(connection, get_vault)
        + _events(connection, get_vault)
        + _proofs(connection, get_vault)
    )


def _identifiers(connection: Connection, vault: Callable[[], Vault]) -> int:
    t = _table(IdentifierRow)
    done = 0
    cols = ("id", "workspace_id", "profile_id", "type", "value", "sealed")
    for rows in _pages(connection, t, *cols):
        todo = [r for r in rows if r[5] is None]
        for pk, ws, profile_id, kind, value, _sealed in todo:
            v = vault()
            connection.execute(
                update(t)
                .where(t.c.id == pk)
                .values(
                    value=v.index(ws, kind, value),
                    sealed=v.seal(ws, profile_id, f"identifier:{kind}", value),
                )
            )
        done += len(todo)
    return done


def _traits(connection: Connection, vault: Callable[[], Vault]) -> int:
    history, current = _table(TraitHistoryRow), _table(CurrentTraitRow)
    done = 0
    cols = ("id", "workspace_id", "profile_id", "key", "value")
    for rows in _pages(connection, history, *cols):
        for pk, ws, subject, key, value in rows:
            if _clear_personal(key, value):
                token = vault().seal(ws, subject, trait_field(key), value)
                connection.execute(update(history).where(history.c.id == pk).values(value=token))
                done += 1
    current_cols = ("canonical_id", "workspace_id", "key", "value")
    for rows in _pages(connection, current, *current_cols, key_width=2):
        for canonical_id, ws, key, value in rows:
            if _clear_personal(key, value):
                token = vault().seal(ws, canonical_id, trait_field(key), value)
                connection.execute(
                    update(current)
                    .where(current.c.canonical_id == canonical_id, current.c.key == key)
                    .values(value=token)
                )
                done += 1
    return done


def _clear_personal(key: Any, value: Any) -> bool:
    return value is not None and not is_token(value) and is_personal_trait(str(key))


def _events(connection: Connection, vault: Callable[[], Vault]) -> int:
    t = _table(EventRow)
    done = 0
    for rows in _pages(connection, t, "id", "workspace_id", "message_id", "payload"):
        params = []
        for event_id, ws, message_id, payload in rows:
            if is_token(payload) or not isinstance(payload, dict):
                continue
            v = vault()
            user, anonymous = payload.get("userId"), payload.get("anonymousId")
            subject = event_subject(v, ws, user, anonymous, message_id)
            params.append(
                {
                    "pk": event_id,
                    "u": identity_index(v, ws, USER_ID, user),
                    "a": identity_index(v, ws, ANONYMOUS_ID, anonymous),
                    "p": v.seal(ws, subject, PAYLOAD, payload),
                }
            )
        if params:
            connection.execute(
                update(t)
                .where(t.c.id == bindparam("pk"))
                .values(
                    user_id=bindparam("u"), anonymous_id=bindparam("a"), payload=bindparam("p")
                ),
                params,
            )
        done += len(params)
    return done


def _proofs(connection: Connection, vault: Callable[[], Vault]) -> int:
    t = _table(ConsentRecordRow)
    done = 0
    for rows in _pages(connection, t, "id", "workspace_id", "profile_id", "proof"):
        for record_id, ws, profile_id, proof in rows:
            if not isinstance(proof, dict):
                continue
            clear = [
                k
                for k in PERSONAL_PROOF_KEYS
                if proof.get(k) is not None and not is_token(proof[k])
            ]
            if not clear:
                continue
            sealed = dict(proof)
            for key in clear:
                sealed[key] = vault().seal(ws, profile_id, proof_field(key), proof[key])
            connection.execute(update(t).where(t.c.id == record_id).values(proof=sealed))
            done += 1
    return done
