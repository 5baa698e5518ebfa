"""Sealing the personal data a release before 0010 stored in clear, and opening it again on a
downgrade (migration 0010).

Each table is read in pages by its key and rewritten in place, one executemany per page; the
values of a page are sealed (or opened) together, one key-store round trip per workspace.
Upgrading: identifiers get their blind index and sealed value, personal traits and the personal
values of consent proofs are sealed under their profile's key, events get blind indexes of their
ids and a sealed payload. A row already in the wanted form is left alone, so either pass can run
again after an interruption. Downgrading opens every sealed value; a value whose subject was
erased (its key shredded) stays erased (None, or an empty payload).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, Table, and_, bindparam, select, tuple_, update

from consentry.consent.ledger import PERSONAL_PROOF_KEYS, proof_field
from consentry.consent.tables import ConsentRecordRow
from consentry.ingest.service import PAYLOAD, event_subject, identity_index
from consentry.ingest.tables import EventRow
from consentry.platform.vault import Vault, is_token
from consentry.profiles.models import ANONYMOUS_ID, USER_ID, is_personal_trait, trait_field
from consentry.profiles.tables import CurrentTraitRow, IdentifierRow, TraitHistoryRow

PAGE = 1000


@dataclass(frozen=True, slots=True)
class Seal:
    """A value to seal under ``subject``'s key as ``field``."""

    subject: str
    field: str
    value: Any


@dataclass(frozen=True, slots=True)
class Open:
    """A stored value to open as ``field``; ``default`` when its subject was erased."""

    field: str
    stored: Any
    default: Any = None


Change = Callable[[Row[Any]], dict[str, Any] | None]


def with_store_vault(rewrite: Callable[[Connection, Vault], int]) -> int:
    """Run ``rewrite`` in the running migration (its connection) with the vault of the store
    it migrates: the keys of the settings the migration was given (``migrations.upgrade``),
    else of the process's (``CONSENTRY_CRYPTO__*``), and the key store beside the store; the
    vault is closed again after. Returns what ``rewrite`` returns."""
    from alembic import context, op

    from consentry.config import Settings, get_settings
    from consentry.stores import vault_for

    url = context.config.get_main_option("sqlalchemy.url") or ""
    given = context.config.attributes.get("settings")
    settings = given if isinstance(given, Settings) else get_settings()
    vault = vault_for(settings.model_copy(update={"database_url": url}))
    try:
        return rewrite(op.get_bind(), vault)
    finally:
        vault.close()


def _table(row_class: Any) -> Table:
    table: Table = row_class.__table__
    return table


def _pages(
    connection: Connection, table: Table, key: Sequence[str], columns: Sequence[str]
) -> Iterator[Sequence[Row[Any]]]:
    """Rows of ``key + columns`` in pages ordered by ``key``."""
    keys = [table.c[c] for c in key]
    after: tuple[Any, ...] | None = None
    while True:
        query = select(*keys, *(table.c[c] for c in columns)).order_by(*keys).limit(PAGE)
        if after is not None:
            query = query.where(
                tuple_(*keys) > tuple_(*after) if len(keys) > 1 else keys[0] > after[0]
            )
        rows = connection.execute(query).all()
        if not rows:
            return
        yield rows
        after = tuple(rows[-1][: len(keys)])


def _rewrite(
    connection: Connection,
    vault: Vault,
    table: Table,
    key: Sequence[str],
    columns: Sequence[str],
    change: Change,
) -> int:
    """Apply ``change`` to every row (``columns`` include ``workspace_id``): the columns it
    returns are written back, :class:`Seal` and :class:`Open` values resolved a page at a time.
    Returns how many rows were rewritten."""
    statement = update(table).where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in key)))
    done = 0
    for rows in _pages(connection, table, key, columns):
        changed = [(row, new) for row in rows if (new := change(row)) is not None]
        if not changed:
            continue
        _resolve(vault, [(row.workspace_id, new) for row, new in changed])
        params = [
            {**{f"k_{k}": getattr(row, k) for k in key}, **{f"v_{c}": v for c, v in new.items()}}
            for row, new in changed
        ]
        names = list(changed[0][1])
        connection.execute(statement.values({c: bindparam(f"v_{c}") for c in names}), params)
        done += len(changed)
    return done


def _resolve(vault: Vault, changes: list[tuple[str, dict[str, Any]]]) -> None:
    """Replace each Seal by its token and each Open by its value (nested one level in dicts)."""
    slots: dict[str, list[tuple[dict[str, Any], str, Seal | Open]]] = {}
    for workspace_id, new in changes:
        for holder in (new, *(v for v in new.values() if isinstance(v, dict))):
            for name, value in holder.items():
                if isinstance(value, Seal | Open):
                    slots.setdefault(workspace_id, []).append((holder, name, value))
    for workspace_id, found in slots.items():
        seals = [(h, n, v) for h, n, v in found if isinstance(v, Seal)]
        opens = [(h, n, v) for h, n, v in found if isinstance(v, Open)]
        tokens = vault.seal_many(
            workspace_id,
            [(v.subject, v.field, v.value) for _, _, v in seals if isinstance(v, Seal)],
        )
        values = vault.open_many(
            workspace_id, [(v.field, v.stored) for _, _, v in opens if isinstance(v, Open)]
        )
        for (holder, name, _), token in zip(seals, tokens, strict=True):
            holder[name] = token
        for (holder, name, wanted), value in zip(opens, values, strict=True):
            holder[name] = value if value is not None else getattr(wanted, "default", None)


# --- upgrade: seal ------------------------------------------------------------------------------


def seal_existing(connection: Connection, vault: Vault) -> int:
    """Seal every clear personal value in the store; returns how many rows were rewritten."""
    identifiers = _table(IdentifierRow)
    events, records = _table(EventRow), _table(ConsentRecordRow)

    def identifier(row: Row[Any]) -> dict[str, Any] | None:
        if row.sealed is not None:
            return None
        return {
            "value": vault.index(row.workspace_id, row.type, row.value),
            "sealed": Seal(row.profile_id, f"identifier:{row.type}", row.value),
        }

    def event(row: Row[Any]) -> dict[str, Any] | None:
        payload = row.payload
        if is_token(payload) or not isinstance(payload, dict):
            return None
        ws, user, anonymous = row.workspace_id, payload.get("userId"), payload.get("anonymousId")
        return {
            "user_id": identity_index(vault, ws, USER_ID, user),
            "anonymous_id": identity_index(vault, ws, ANONYMOUS_ID, anonymous),
            "payload": Seal(
                event_subject(vault, ws, user, anonymous, row.message_id), PAYLOAD, payload
            ),
        }

    def proof(row: Row[Any]) -> dict[str, Any] | None:
        stored = row.proof
        if not isinstance(stored, dict):
            return None
        clear = [
            k for k in PERSONAL_PROOF_KEYS if stored.get(k) is not None and not is_token(stored[k])
        ]
        if not clear:
            return None
        sealed = {**stored, **{k: Seal(row.profile_id, proof_field(k), stored[k]) for k in clear}}
        return {"proof": sealed}

    return (
        _rewrite(
            connection,
            vault,
            identifiers,
            ["id"],
            ["workspace_id", "profile_id", "type", "value", "sealed"],
            identifier,
        )
        + seal_traits(connection, vault)
        + _rewrite(
            connection, vault, events, ["id"], ["workspace_id", "message_id", "payload"], event
        )
        + _rewrite(
            connection, vault, records, ["id"], ["workspace_id", "profile_id", "proof"], proof
        )
    )


def seal_traits(connection: Connection, vault: Vault) -> int:
    """Seal every clear value of a personal trait (:func:`~consentry.profiles.models.
    is_personal_trait`) in the history and the current values, under the profile that holds
    it; how many rows were rewritten. Run again when a release adds names to the personal ones
    (a value already sealed is left alone)."""

    def trait(subject: str) -> Change:
        def change(row: Row[Any]) -> dict[str, Any] | None:
            value = row.value
            if value is None or is_token(value) or not is_personal_trait(str(row.key)):
                return None
            return {"value": Seal(getattr(row, subject), trait_field(row.key), value)}

        return change

    return _rewrite(
        connection,
        vault,
        _table(TraitHistoryRow),
        ["id"],
        ["workspace_id", "profile_id", "key", "value"],
        trait("profile_id"),
    ) + _rewrite(
        connection,
        vault,
        _table(CurrentTraitRow),
        ["canonical_id", "key"],
        ["workspace_id", "value"],
        trait("canonical_id"),
    )


# --- downgrade: open ----------------------------------------------------------------------------


def open_existing(connection: Connection, vault: Vault) -> int:
    """Open every sealed value back into the clear form of release 0009; returns how many rows
    were rewritten. ``identifiers.sealed`` is left for the migration to drop."""
    identifiers = _table(IdentifierRow)
    history, current = _table(TraitHistoryRow), _table(CurrentTraitRow)
    events, records = _table(EventRow), _table(ConsentRecordRow)

    def identifier(row: Row[Any]) -> dict[str, Any] | None:
        if row.sealed is None:
            return None
        # an erased identifier keeps its blind index: nothing readable is left to restore
        return {"value": Open(f"identifier:{row.type}", row.sealed, row.value), "sealed": None}

    def trait(row: Row[Any]) -> dict[str, Any] | None:
        return {"value": Open(trait_field(row.key), row.value)} if is_token(row.value) else None

    def event(row: Row[Any]) -> dict[str, Any] | None:
        return {"payload": Open(PAYLOAD, row.payload, {})} if is_token(row.payload) else None

    def proof(row: Row[Any]) -> dict[str, Any] | None:
        stored = row.proof
        if not isinstance(stored, dict) or not any(is_token(v) for v in stored.values()):
            return None
        return {
            "proof": {k: Open(proof_field(k), v) if is_token(v) else v for k, v in stored.items()}
        }

    done = (
        _rewrite(
            connection,
            vault,
            identifiers,
            ["id"],
            ["workspace_id", "type", "value", "sealed"],
            identifier,
        )
        + _rewrite(connection, vault, history, ["id"], ["workspace_id", "key", "value"], trait)
        + _rewrite(
            connection, vault, current, ["canonical_id", "key"], ["workspace_id", "value"], trait
        )
        + _rewrite(connection, vault, events, ["id"], ["workspace_id", "payload"], event)
        + _rewrite(connection, vault, records, ["id"], ["workspace_id", "proof"], proof)
    )
    _clear_event_ids(connection)
    return done


def _clear_event_ids(connection: Connection) -> None:
    """Events' userId and anonymousId columns from their opened payloads (release 0009 kept the
    ids there in clear); an erased event's payload is gone, so are its ids."""
    events = _table(EventRow)
    statement = (
        update(events)
        .where(events.c.id == bindparam("k_id"))
        .values(user_id=bindparam("v_u"), anonymous_id=bindparam("v_a"))
    )
    for rows in _pages(connection, events, ["id"], ["payload"]):
        params = [
            {
                "k_id": row.id,
                "v_u": _text(payload.get("userId")),
                "v_a": _text(payload.get("anonymousId")),
            }
            for row in rows
            for payload in [row.payload if isinstance(row.payload, dict) else {}]
        ]
        connection.execute(statement, params)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
