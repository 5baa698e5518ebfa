"""``consentry import customers|orders FILE``: CSV files streamed into the store in chunks.

The importers (:mod:`consentry.commerce.importers`) turn rows into Segment-spec messages; this
module owns the transactions. Each chunk of rows is validated with the ingestion API's own parser
and stored by :func:`consentry.ingest.service.ingest` in one unit of work, so memory stays bounded
and a crash loses at most the chunk in flight. Message ids are derived from the rows' content:
running the same file again stores nothing new.

Exit codes: 0 every row was imported; 1 the file was refused (nothing written) or stopped being
readable; 2 some rows had errors (the others were imported).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from consentry.cli_options import DatabaseOpt
from consentry.commerce.importers import (
    FileRefused,
    Format,
    ImportReader,
    Kind,
    RowError,
    UnreadableFile,
    open_import,
)
from consentry.errors import ConsentryError
from consentry.ingest import service as ingest
from consentry.ingest.models import Envelope, parse_message
from consentry.platform import tenancy
from consentry.platform.db import Database, utcnow

if TYPE_CHECKING:
    from consentry.config import Settings

import_app = typer.Typer(
    help="Import customers and orders from CSV: Shopify's exports or the generic format.",
    no_args_is_help=True,
)
console = Console()
err_console = Console(stderr=True)
SHOWN_ERRORS = 10

FileArg = Annotated[Path, typer.Argument(help="The CSV file.", show_default=False)]
WorkspaceOpt = Annotated[str, typer.Option("--workspace", "-w", help="Workspace to import into.")]
FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format", help="File format; auto tells it from the header.", case_sensitive=False
    ),
]
ErrorsOpt = Annotated[
    Path | None,
    typer.Option("--errors", help="Write the rows not imported here (CSV: line, field, reason)."),
]
ChunkOpt = Annotated[
    int, typer.Option("--chunk-size", min=1, help="Rows per transaction (an order is never split).")
]


@import_app.command("customers")
def customers(
    file: FileArg,
    workspace: WorkspaceOpt,
    database_url: DatabaseOpt = None,
    fmt: FormatOpt = Format.AUTO,
    errors: ErrorsOpt = None,
    chunk_size: ChunkOpt = 500,
) -> None:
    """Import customers: each row becomes an identify call (profile, identifiers, traits)."""
    run_import(Kind.CUSTOMERS, file, workspace, database_url, fmt, errors, chunk_size)


@import_app.command("orders")
def orders(
    file: FileArg,
    workspace: WorkspaceOpt,
    database_url: DatabaseOpt = None,
    fmt: FormatOpt = Format.AUTO,
    errors: ErrorsOpt = None,
    chunk_size: ChunkOpt = 500,
) -> None:
    """Import orders: each order becomes Order Completed (and Order Refunded/Cancelled)."""
    run_import(Kind.ORDERS, file, workspace, database_url, fmt, errors, chunk_size)


@dataclass(slots=True)
class Tally:
    """What an import did."""

    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    error_rows: int = 0


def run_import(
    kind: Kind,
    path: Path,
    workspace_id: str,
    database_url: str | None,
    fmt: Format,
    errors_path: Path | None,
    chunk_size: int,
) -> None:
    """Import ``path`` into the workspace; raises typer.Exit with the documented exit code."""
    from consentry.cli import fail, open_store, settings_for  # cli.py registers this app

    settings = settings_for(database_url)
    if not path.is_file():
        raise fail(escape(f"no such file: {path}"))
    db = open_store(settings)
    try:
        _check_workspace(db, workspace_id)
        with ErrorReport(errors_path) as report:
            target = Target(db, workspace_id, settings, chunk_size)
            tally = _import_file(kind, path, fmt, target, report)
    except (ConsentryError, FileRefused, UnreadableFile) as exc:
        raise fail(escape(_refusal(exc))) from exc
    finally:
        db.dispose()
    _summary(tally, report)
    if tally.error_rows:
        raise typer.Exit(2)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the messages go."""

    db: Database
    workspace_id: str
    settings: Settings
    chunk_size: int = 500


def _check_workspace(db: Database, workspace_id: str) -> None:
    with db.read() as session:
        tenancy.get_workspace(session=session, workspace_id=workspace_id)


def _refusal(exc: Exception) -> str:
    if isinstance(exc, ConsentryError):
        return exc.message
    if isinstance(exc, FileRefused):
        return f"file refused, nothing imported: {exc.message}"
    return f"{exc}; the rows before it were imported: fix the file and run the import again"


def _import_file(kind: Kind, path: Path, fmt: Format, target: Target, report: ErrorReport) -> Tally:
    size = path.stat().st_size
    with _progress() as progress, path.open("rb") as raw:
        wrapped = progress.wrap_file(raw, total=size, description=f"importing {path.name}")
        with io.TextIOWrapper(wrapped, encoding="utf-8-sig", newline="") as stream:
            reader = _open(stream, kind, fmt, target, report)
            return _import_rows(reader, target, report)


def _open(
    stream: TextIO, kind: Kind, fmt: Format, target: Target, report: ErrorReport
) -> ImportReader:
    region = target.settings.default_phone_region
    try:
        return open_import(stream, kind=kind, fmt=fmt, default_region=region)
    except FileRefused as exc:
        report.add([RowError(1, exc.column, exc.message)])
        raise


@contextmanager
def _progress() -> Iterator[Progress]:
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as progress:
        yield progress


def _import_rows(reader: ImportReader, target: Target, report: ErrorReport) -> Tally:
    """Read outcomes and store their messages, one transaction per chunk of rows."""
    tally = Tally()
    pending: list[tuple[int, dict[str, Any]]] = []
    rows_in_chunk = 0
    for outcome in reader.outcomes():
        tally.rows += outcome.rows
        tally.error_rows += report.add(outcome.errors)
        pending.extend((outcome.line, message) for message in outcome.messages)
        rows_in_chunk += outcome.rows
        if rows_in_chunk >= target.chunk_size:
            _store(pending, target, tally, report)
            pending, rows_in_chunk = [], 0
    _store(pending, target, tally, report)
    return tally


def _store(
    pending: Sequence[tuple[int, dict[str, Any]]], target: Target, tally: Tally, report: ErrorReport
) -> None:
    """Validate a chunk with the ingestion parser and store it in one unit of work."""
    envelopes = _envelopes(pending, tally, report)
    if not envelopes:
        return
    settings = target.settings
    with target.db.write() as session:
        result = ingest.ingest(
            session=session,
            workspace_id=target.workspace_id,
            envelopes=envelopes,
            identity=settings.identity,
            default_region=settings.default_phone_region,
        )
    tally.stored += result.accepted
    tally.duplicates += result.duplicates


def _envelopes(
    pending: Sequence[tuple[int, dict[str, Any]]], tally: Tally, report: ErrorReport
) -> list[Envelope]:
    received_at = utcnow()
    envelopes: list[Envelope] = []
    for index, (line, raw) in enumerate(pending):
        parsed = parse_message(raw, index=index, received_at=received_at, max_bytes=None)
        if isinstance(parsed, list):
            tally.error_rows += report.add(RowError(line, e.field, e.reason) for e in parsed)
        else:
            envelopes.append(parsed)
    return envelopes


class ErrorReport:
    """The rows not imported: kept for the console and written to ``--errors`` when given."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.shown: list[RowError] = []
        self.total = 0
        self._file: TextIO | None = None
        self._writer: Any = None

    def __enter__(self) -> ErrorReport:
        if self.path is not None:
            self._file = self.path.open("w", encoding="utf-8", newline="")
            self._writer = csv.writer(self._file)
            self._writer.writerow(["line", "field", "reason"])
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is not None:
            self._file.close()

    def add(self, errors: Iterable[RowError]) -> int:
        """Record errors; return how many distinct lines they name."""
        lines: set[int] = set()
        for error in errors:
            lines.add(error.line)
            self.total += 1
            if len(self.shown) < SHOWN_ERRORS:
                self.shown.append(error)
            if self._writer is not None:
                self._writer.writerow([error.line, error.field, error.reason])
        return len(lines)


def _summary(tally: Tally, report: ErrorReport) -> None:
    for error in report.shown:
        err_console.print(
            f"line {error.line}: [bold]{escape(error.field)}[/]: {escape(error.reason)}"
        )
    if report.total > len(report.shown):
        more = report.total - len(report.shown)
        hint = f"see {report.path}" if report.path else "use --errors FILE to see them all"
        err_console.print(escape(f"... and {more} more errors ({hint})"))
    table = Table("", "count", title="import")
    table.add_row("rows read", str(tally.rows))
    table.add_row("messages stored", str(tally.stored))
    table.add_row("duplicates skipped", str(tally.duplicates))
    table.add_row("rows with errors", str(tally.error_rows))
    console.print(table)
