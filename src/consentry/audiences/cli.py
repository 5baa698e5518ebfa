"""``consentry segments``: define segments and computed traits, preview a rule, refresh
membership, list members and the history of entries and exits (docs/segments.md).
``consentry audiences``: audience exports (docs/audience-exports.md).

A rule is given as JSON with ``--rule '{"trait": "plan", "op": "eq", "value": "gold"}'`` or
read from a file with ``--rule-file rule.json``. Exit codes: 0 done; 1 a bad rule or argument,
an unknown workspace or segment (the message names the field).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from consentry.audiences import compiler, computed, export_cli
from consentry.audiences import service as segments
from consentry.cli_options import DatabaseOpt, JsonOpt, WorkspaceOpt, echo_json, workspace_store

segments_app = typer.Typer(
    help="Segments: rules over traits, events, computed traits, consent and other segments.",
    no_args_is_help=True,
)
computed_app = typer.Typer(
    help="Computed traits: count, sum, avg, most_frequent, first, last, unique of an event.",
    no_args_is_help=True,
)
segments_app.add_typer(computed_app, name="computed-trait")
audiences_app = typer.Typer(help="Audience exports and partner sharing.", no_args_is_help=True)

ACTOR = "cli"
RuleOpt = Annotated[str | None, typer.Option("--rule", help="The rule, as JSON.")]
RuleFileOpt = Annotated[
    Path | None, typer.Option("--rule-file", help="A file holding the rule as JSON.")
]
SegmentArg = Annotated[str, typer.Argument(help="The segment's id.")]


def _rule(rule: str | None, rule_file: Path | None, *, required: bool = True) -> Any:
    """The rule document from ``--rule`` or ``--rule-file``."""
    from consentry.cli import fail

    if rule is not None and rule_file is not None:
        raise fail("give --rule or --rule-file, not both")
    if rule_file is not None:
        try:
            rule = rule_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot read {rule_file}: {exc.strerror}") from None
    if rule is None:
        if required:
            raise fail("a rule is needed: --rule JSON or --rule-file FILE")
        return None
    try:
        return json.loads(rule)
    except json.JSONDecodeError as exc:
        raise fail(f"the rule is not JSON: {exc.msg} at line {exc.lineno}") from None


def _segments_table(found: list[segments.Segment]) -> Table:
    table = Table("id", "name", "members", "rule", "refreshed")
    for s in found:
        refreshed = s.refreshed_at.strftime("%Y-%m-%d %H:%M") if s.refreshed_at else "-"
        table.add_row(s.id, s.name, str(s.member_count), s.text, refreshed)
    return table


def _saved(
    found: segments.Segment, report: segments.RefreshReport, as_json: bool, *, moves: bool
) -> None:
    """A saved segment with the refresh that evaluated it (with ``moves``, who entered and
    who left)."""
    from consentry.cli import console

    if as_json:
        echo_json({**found.document(), "refresh": report.document()})
        return
    console.print(f"segment {found.id}: {found.text}")
    count = f"{found.member_count} members"
    console.print(f"{count} ({report.entered} entered, {report.exited} left)" if moves else count)


@segments_app.command("create")
def create(
    workspace: WorkspaceOpt,
    name: Annotated[str, typer.Option("--name", help="The segment's name (unique).")],
    rule: RuleOpt = None,
    rule_file: RuleFileOpt = None,
    description: Annotated[str, typer.Option("--description")] = "",
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Define a segment and evaluate its members now."""
    document = _rule(rule, rule_file)
    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        found, report = segments.create_segment(
            session=session,
            workspace_id=workspace,
            name=name,
            rule=document,
            description=description,
            actor=ACTOR,
        )
    _saved(found, report, as_json, moves=False)


@segments_app.command("update")
def update(
    workspace: WorkspaceOpt,
    segment: SegmentArg,
    name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
    rule: RuleOpt = None,
    rule_file: RuleFileOpt = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Rename a segment or change its rule (a new rule is evaluated at once)."""
    document = _rule(rule, rule_file, required=False)
    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        found, report = segments.update_segment(
            session=session,
            workspace_id=workspace,
            segment_id=segment,
            actor=ACTOR,
            name=name,
            rule=document,
            description=description,
        )
    _saved(found, report, as_json, moves=True)


@segments_app.command("delete")
def delete(workspace: WorkspaceOpt, segment: SegmentArg, database_url: DatabaseOpt = None) -> None:
    """Delete a segment with its members and history (refused while another reads it)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db):
        with db.write() as session:
            found = segments.delete_segment(
                session=session, workspace_id=workspace, segment_id=segment
            )
    console.print(f"deleted segment {found.id} ({found.name})")


@segments_app.command("list")
def list_segments(
    workspace: WorkspaceOpt, as_json: JsonOpt = False, database_url: DatabaseOpt = None
) -> None:
    """The workspace's segments with their member counts."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        found = segments.list_segments(session=session, workspace_id=workspace)
    if as_json:
        echo_json({"segments": [s.document() for s in found]})
    else:
        console.print(_segments_table(found))


@segments_app.command("show")
def show(
    workspace: WorkspaceOpt,
    segment: SegmentArg,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """One segment: its rule as text and JSON, kinds and member count."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        found = segments.get_segment(session=session, workspace_id=workspace, segment_id=segment)
    if as_json:
        echo_json(found.document())
        return
    console.print(f"[bold]{found.name}[/] ({found.id})")
    console.print(found.text)
    console.print(f"reads: {', '.join(found.kinds)}; {found.member_count} members")
    console.print_json(json.dumps(found.rule))


@segments_app.command("preview")
def preview(
    workspace: WorkspaceOpt,
    rule: RuleOpt = None,
    rule_file: RuleFileOpt = None,
    sample: Annotated[int, typer.Option("--sample", min=0, max=100)] = 10,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """How many unified profiles a rule selects now (nothing is saved)."""
    from consentry.cli import console

    document = _rule(rule, rule_file)
    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        found = segments.preview(
            session=session, workspace_id=workspace, rule=document, sample=sample
        )
    if as_json:
        echo_json(found.document())
        return
    console.print(found.text)
    console.print(f"{found.count} profiles match")
    for pid in found.sample:
        console.print(f"  {pid}")


@segments_app.command("refresh")
def refresh(
    workspace: WorkspaceOpt,
    segment: Annotated[
        str | None, typer.Argument(help="Only this segment (default: every one).")
    ] = None,
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental",
            help="Only the profiles with events, consent records or merges since the last run.",
        ),
    ] = False,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Refresh membership: every computed trait and segment (default), one segment, or
    incrementally; prints who entered and who left."""
    from consentry.cli import console, fail

    if segment and incremental:
        raise fail("--incremental refreshes every segment: leave out the segment")
    with workspace_store(database_url, workspace) as (_, db):
        if segment or incremental:
            with db.write() as session:
                if segment:
                    report = segments.refresh_segment(
                        session=session, workspace_id=workspace, segment_id=segment
                    )
                else:
                    report = segments.catch_up(session=session, workspace_id=workspace)
        else:
            report = segments.refresh_in_steps(db, workspace_id=workspace)
    if as_json:
        echo_json(report.document())
        return
    console.print(
        f"{report.mode} refresh: {report.segments} segments, {report.entered} entered, "
        f"{report.exited} left, {report.values} computed values written "
        f"({report.seconds:.2f} s)"
    )


@segments_app.command("members")
def members(
    workspace: WorkspaceOpt,
    segment: SegmentArg,
    limit: Annotated[int, typer.Option("--limit", min=1, max=100_000)] = 100,
    after: Annotated[str | None, typer.Option("--after", help="The last id of a page.")] = None,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """The segment's members (unified profile ids) and since when."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        page = segments.members(
            session=session, workspace_id=workspace, segment_id=segment, limit=limit, after=after
        )
    if as_json:
        echo_json({"members": [m.document() for m in page]})
        return
    table = Table("profile", "since")
    for m in page:
        table.add_row(m.profile_id, m.since.isoformat(timespec="seconds"))
    console.print(table)


@segments_app.command("history")
def history(
    workspace: WorkspaceOpt,
    segment: SegmentArg,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Entries and exits of the segment, newest first."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        page = segments.history(
            session=session, workspace_id=workspace, segment_id=segment, limit=limit
        )
    if as_json:
        echo_json({"changes": [c.document() for c in page]})
        return
    table = Table("id", "at", "profile", "change")
    for c in page:
        change = "entered" if c.entered else "left"
        table.add_row(str(c.id), c.at.isoformat(timespec="seconds"), c.profile_id, change)
    console.print(table)


# --- computed traits -----------------------------------------------------------------------------


@computed_app.command("create")
def create_trait(
    workspace: WorkspaceOpt,
    name: Annotated[str, typer.Option("--name", help="lower_case name rules refer to.")],
    op: Annotated[str, typer.Option("--op", help=", ".join(computed.OPS))],
    event: Annotated[str, typer.Option("--event", help="The track event aggregated.")],
    prop: Annotated[
        str | None, typer.Option("--property", help="Dotted path inside its properties.")
    ] = None,
    window_days: Annotated[
        int | None, typer.Option("--window-days", help="Only the last N days (default: all).")
    ] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Define a computed trait and compute it for every unified profile."""
    from consentry.cli import console

    definition: dict[str, Any] = {"name": name, "op": op, "event": event}
    definition.update(property=prop, window_days=window_days, description=description)
    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        found = segments.create_computed_trait(
            session=session, workspace_id=workspace, definition=definition, actor=ACTOR
        )
    if as_json:
        echo_json(found.document())
    else:
        console.print(f"computed trait {found.name} ({found.id})")


@computed_app.command("list")
def list_traits(
    workspace: WorkspaceOpt, as_json: JsonOpt = False, database_url: DatabaseOpt = None
) -> None:
    """The workspace's computed traits (and the built-in ones)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.read() as session:
        found = computed.list_traits(session=session, workspace_id=workspace)
    if as_json:
        echo_json({"computed_traits": [t.document() for t in found]})
        return
    table = Table("name", "op", "event", "property", "window", "kind")
    for t in found:
        window = f"{t.window_days} d" if t.window_days else "all"
        table.add_row(t.name, t.op, t.event, t.property or "-", window, "custom")
    for name, spec in compiler.BUILTINS.items():
        table.add_row(name, "-", "-", "-", "-", f"built in: {spec.about}")
    console.print(table)


@computed_app.command("delete")
def delete_trait(
    workspace: WorkspaceOpt,
    trait: Annotated[str, typer.Argument(help="The computed trait's id or name.")],
    database_url: DatabaseOpt = None,
) -> None:
    """Delete a computed trait and its values (refused while a segment reads it)."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_, db), db.write() as session:
        found = segments.delete_computed_trait(
            session=session, workspace_id=workspace, trait_id=trait
        )
    console.print(f"deleted computed trait {found.name}")


export_cli.register(audiences_app)  # consentry audiences export|exports|export-manifest
