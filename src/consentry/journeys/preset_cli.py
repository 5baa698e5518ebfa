"""``consentry journeys presets|preset|attribution``: the ready-made journeys and a journey's
conversions (docs/journeys.md), added to ``consentry journeys`` (journeys.cli imports this
module last).

Exit codes: 0 done; 1 an unknown workspace, journey or preset, or set-up input that does not
hold (each problem printed with its field).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from consentry.cli_options import DatabaseOpt, JsonOpt, WorkspaceOpt, echo_json, workspace_store
from consentry.errors import FieldError, Invalid
from consentry.journeys import attribution, presets
from consentry.journeys.cli import ACTOR, JourneyArg, journeys_app


def _options(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` pairs; a whole number becomes an integer."""
    found: dict[str, Any] = {}
    errors: list[FieldError] = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            errors.append(FieldError("--option", f"{pair!r} is not key=value"))
            continue
        value = value.strip()
        found[key.strip()] = int(value) if value.lstrip("-").isdigit() else value
    if errors:
        raise Invalid("the options are not valid", errors)
    return found


@journeys_app.command("presets")
def list_presets(as_json: JsonOpt = False) -> None:
    """The ready-made journeys, their channels and options."""
    from consentry.cli import console

    found = presets.list_presets()
    if as_json:
        echo_json({"presets": found})
        return
    table = Table("title", "needs", "options")
    table.add_column("name", no_wrap=True)  # what `consentry journeys preset NAME` takes
    for p in found:
        needs = ", ".join(p["channels"] + [f"{c} (optional)" for c in p["optional_channels"]])
        options = ", ".join(
            o["name"] + ("*" if o["required"] else f"={o['default']}") for o in p["options"]
        )
        table.add_row(p["title"], needs, options, p["name"])
    console.print(table)
    console.print("* required; --json shows what each preset does", highlight=False)


@journeys_app.command("preset")
def create_preset(
    workspace: WorkspaceOpt,
    name: Annotated[str, typer.Argument(help="The preset (`consentry journeys presets`).")],
    email: Annotated[
        str | None, typer.Option("--email", help="The email destination's id.")
    ] = None,
    sms: Annotated[
        str | None, typer.Option("--sms", help="An SMS destination's id (abandoned_cart).")
    ] = None,
    option: Annotated[
        list[str] | None,
        typer.Option("--option", "-o", help="key=value, e.g. -o days=120 (repeatable)."),
    ] = None,
    activate: Annotated[
        bool, typer.Option("--activate", help="Switch it on at once (else a draft).")
    ] = False,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Save a ready-made journey for the workspace, checked like any journey."""
    from consentry.cli import console

    destinations = {k: v for k, v in (("email", email), ("sms", sms)) if v is not None}
    with workspace_store(database_url, workspace) as (_, db):
        options = _options(option or [])
        with db.write() as session:
            found = presets.create_from_preset(
                session=session,
                workspace_id=workspace,
                name=name,
                destinations=destinations,
                options=options,
                actor=ACTOR,
                activate=activate,
            )
    document = found.document()
    if as_json:
        echo_json(document)
        return
    console.print(
        f"[bold]{document['name']}[/] {document['id']}  {document['status']}", highlight=False
    )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _money(revenue: dict[str, float]) -> str:
    return ", ".join(f"{amount:,.2f} {currency}" for currency, amount in revenue.items()) or "0"


def _uplift(found: dict[str, Any] | None) -> str:
    if found is None:
        return "-"
    low, high = found["absolute_ci95"]
    sign = "+" if found["absolute"] >= 0 else ""
    mark = " *" if found["significant"] else ""
    return (
        f"{sign}{found['absolute'] * 100:.1f} pts [{low * 100:.1f}, {high * 100:.1f}]"
        f" p={found['p_value']:.3f}{mark}"
    )


@journeys_app.command("attribution")
def show_attribution(
    workspace: WorkspaceOpt,
    journey_id: JourneyArg,
    as_json: JsonOpt = False,
    database_url: DatabaseOpt = None,
) -> None:
    """Orders within the goal window per variant and step, and the uplift over the holdout.

    The uplift is the difference of conversion rates with its 95 % interval; * marks an
    interval that excludes no difference."""
    from consentry.cli import console

    with workspace_store(database_url, workspace) as (_settings, db):
        with db.read() as session:
            found = attribution.journey_attribution(
                session=session, workspace_id=workspace, journey_id=journey_id
            ).document()
    if as_json:
        echo_json(found)
        return
    console.print(f"Conversions: an order within {found['window_days']} days", highlight=False)
    table = Table()
    table.add_column("group", no_wrap=True)
    for column in ("counted", "converted", "rate", "revenue", "uplift vs holdout"):
        table.add_column(column)
    for kind, name, group in attribution.groups(found):
        table.add_row(
            kind if name is None else f"{kind} {name}",
            str(group["total"]),
            str(group["converted"]),
            _percent(group["rate"]),
            _money(group["revenue"]),
            _uplift(group.get("uplift")),
        )
    console.print(table)
