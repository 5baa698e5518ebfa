"""``consentry keys generate|rotate|status``: the keys that encrypt personal data at rest.

Exit codes: 0 done; 1 the keys are misconfigured (a master key of a stored data key is missing,
a malformed key) or the key store cannot be opened.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from consentry.cli_options import DatabaseOpt
from consentry.platform import crypto

keys_app = typer.Typer(
    help="Encryption keys of personal data: generate, rotate master keys, status.",
    no_args_is_help=True,
)


@keys_app.command("generate")
def generate(
    key_id: Annotated[str, typer.Option("--id", help="Id of the new master key.")] = "k1",
) -> None:
    """Print a fresh master key and blind-index key as settings lines (nothing is stored).

    To rotate: put the new master key first in CONSENTRY_CRYPTO__MASTER_KEYS, keep the old ones
    after it, restart, run ``consentry keys rotate``, then drop the old ones. The blind-index
    key never changes (look-ups would stop matching).
    """
    master = crypto.encode_key(crypto.new_key())
    blind = crypto.encode_key(crypto.new_key())
    typer.echo(f"CONSENTRY_CRYPTO__MASTER_KEYS={key_id}:{master}")
    typer.echo(f"CONSENTRY_CRYPTO__BLIND_INDEX_KEY={blind}")


@keys_app.command("rotate")
def rotate(database_url: DatabaseOpt = None) -> None:
    """Re-wrap every data key with the current (first) master key; the data is not rewritten."""
    from consentry.cli import console, fail, settings_for
    from consentry.stores import open_keys

    settings = settings_for(database_url)
    try:
        store = open_keys(settings)
    except crypto.CryptoError as exc:
        raise fail(str(exc)) from exc
    try:
        with Progress(
            TextColumn("re-wrapping data keys"), BarColumn(), MofNCompleteColumn(), console=console
        ) as progress:
            task = progress.add_task("rotate", total=None)

            def report(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            count = store.rotate(on_progress=report)
        status = store.status()
    except crypto.CryptoError as exc:
        raise fail(str(exc)) from exc
    finally:
        store.dispose()
    console.print(
        f"OK: {count} data keys re-wrapped with master key {store.keyring.current_id!r}; "
        f"keys by master key: {status.by_master_key or '{}'}"
    )


@keys_app.command("status")
def status(database_url: DatabaseOpt = None) -> None:
    """How many data keys each master key wraps, and how many subjects were shredded."""
    from consentry.cli import console, fail, settings_for
    from consentry.stores import open_keys

    settings = settings_for(database_url)
    try:
        store = open_keys(settings)
    except crypto.CryptoError as exc:
        raise fail(str(exc)) from exc
    try:
        found = store.status()
    finally:
        store.dispose()
    current = store.keyring.current_id
    console.print(f"current master key: {current!r}")
    for key_id, count in sorted(found.by_master_key.items()):
        note = "" if key_id == current else " (to re-wrap: consentry keys rotate)"
        console.print(f"  {key_id}: {count} data keys{note}")
    console.print(f"shredded subjects: {found.shredded}")
