"""Admin routes of a workspace's consent set-up: its purposes, default regime and notices."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from consentry.consent import notices, rates
from consentry.consent.ledger import choices, configure, get_config
from consentry.consent.models import REGIMES, ConsentConfig, Purpose
from consentry.deps import ConsentRead, ConsentWrite, DbDep
from consentry.errors import FieldError, Invalid
from consentry.platform.db import Database, utcnow

router = APIRouter(prefix="/v1/consent", tags=["consent"])


class PurposeIn(BaseModel):
    """A purpose a subject can agree to or refuse."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(..., max_length=100, examples=["marketing.communications.email"])
    name: str = Field(..., min_length=1, max_length=200)
    category: str = Field(..., min_length=1, max_length=100)
    third_party: bool = False


class ConfigIn(BaseModel):
    """Purposes and/or the default regime; what is left out is kept."""

    model_config = ConfigDict(extra="forbid")

    purposes: list[PurposeIn] | None = Field(None, max_length=200)
    default_regime: str | None = Field(None, description=", ".join(REGIMES))


def _config_json(config: ConsentConfig) -> dict[str, Any]:
    return {
        "default_regime": config.default_regime,
        "purposes": [asdict(p) for p in config.purposes],
    }


@router.get("/config")
def read_config(principal: ConsentRead, db: DbDep) -> dict[str, Any]:
    """The workspace's purposes and the regime used when a subject's country is unknown."""
    with db.read() as session:
        return _config_json(get_config(session=session, workspace_id=principal.workspace_id))


@router.put("/config")
def write_config(body: ConfigIn, principal: ConsentWrite, db: DbDep) -> dict[str, Any]:
    """Set the purposes and/or default regime (opt_in or opt_out)."""
    purposes = (
        [Purpose(**p.model_dump()) for p in body.purposes] if body.purposes is not None else None
    )
    with db.write() as session:
        config = configure(
            session=session,
            workspace_id=principal.workspace_id,
            purposes=purposes,
            default_regime=body.default_regime,
        )
    return _config_json(config)


@router.post("/notices", status_code=201)
def publish_notice(
    body: notices.NoticeIn, principal: ConsentWrite, db: DbDep, response: Response
) -> dict[str, Any]:
    """Publish the text of a notice version in one language (201), or find it already
    published with the same text (200). Notices are never edited: a new text is a new version."""
    with db.write() as session:
        known = get_config(session=session, workspace_id=principal.workspace_id).purpose_keys
        notice, created = notices.publish(
            session=session, workspace_id=principal.workspace_id, notice=body, known_purposes=known
        )
    if not created:
        response.status_code = 200
    return asdict(notice)


@router.get("/notices")
def list_notices(
    principal: ConsentRead,
    db: DbDep,
    version: Annotated[str | None, Query(max_length=100)] = None,
    language: Annotated[str | None, Query(max_length=16)] = None,
) -> dict[str, Any]:
    """Published notices, newest first, optionally of one version and/or language."""
    with db.read() as session:
        found = notices.list_notices(
            session=session, workspace_id=principal.workspace_id, version=version, language=language
        )
    return {"notices": [asdict(n) for n in found]}


@router.get("/notices/{notice_id}")
def get_notice(notice_id: str, principal: ConsentRead, db: DbDep) -> dict[str, Any]:
    """One published notice with its text and content hash."""
    with db.read() as session:
        return asdict(
            notices.get_notice(
                session=session, workspace_id=principal.workspace_id, notice_id=notice_id
            )
        )


MAX_RANGE = timedelta(days=3 * 366)


@router.get("/rates")
def consent_rates(
    principal: ConsentRead,
    db: DbDep,
    interval: Literal["day", "week", "month"] = "week",
    by: Literal["purpose", "channel", "source", "notice_version"] = "purpose",
    since: datetime | None = None,
    until: datetime | None = None,
    purpose: Annotated[str | None, Query(max_length=100)] = None,
    channel: Annotated[str | None, Query(max_length=16)] = None,
) -> dict[str, Any]:
    """Opt-in rate, withdrawal rate and the share of GPC opt-outs per period and per purpose,
    channel, source or notice version, over the choices made in ``[since, until)`` (default:
    the last 90 days; at most three years)."""
    start, end, series, overall = tallies(
        db, principal.workspace_id, interval, by, since, until, purpose, channel
    )
    return {
        "interval": interval,
        "by": by,
        "since": start,
        "until": end,
        "overall": overall.as_dict(),
        "series": [t.as_dict() for t in series],
    }


def tallies(
    db: Database,
    workspace_id: str,
    interval: str,
    by: str,
    since: datetime | None = None,
    until: datetime | None = None,
    purpose: str | None = None,
    channel: str | None = None,
) -> tuple[datetime, datetime, list[rates.Tally], rates.Tally]:
    """The window asked for (default: the last 90 days) and its tallies; also used by the
    dashboard page."""
    end = _utc(until) if until else utcnow()
    start = _utc(since) if since else end - timedelta(days=90)
    if start >= end:
        raise Invalid("since must be before until", [FieldError("since", "not before until")])
    if end - start > MAX_RANGE:
        raise Invalid("the range is too long", [FieldError("since", "at most three years")])
    with db.read() as session:
        found = choices(
            session=session,
            workspace_id=workspace_id,
            since=start,
            until=end,
            purpose=purpose,
            channel=channel,
        )
        series, overall = rates.tally(found, interval=interval, by=by)
    return start, end, series, overall


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
