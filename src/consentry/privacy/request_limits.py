"""The limits of the public intake of data-subject requests, counted in the database.

The public form and API take anyone's word for an email address, so without limits they would
let anyone flood a victim's mailbox (each request mails a code) or the shop's queue. Every
attempt they take is counted in ``privacy_request_attempts`` (workspace-scoped), in the
caller's transaction: a request filed counts against its email address (blind index) and the
client's network; a new code against the request and the network; a code tried against the
network (see :class:`~consentry.privacy.requests.Limits`). One over a limit raises
:class:`~consentry.privacy.requests.RateLimited` and the caller's transaction records nothing.
Only attempts that were taken are counted, so a flood does not grow the table and the wait
ends one window after the oldest attempt that counts.

Being in the database, the counts hold across server processes and restarts. Concurrent
attempts of a workspace are serialised: SQLite has one writer; on PostgreSQL an advisory
transaction lock is taken per workspace before counting, so two processes cannot both take
the last place. Attempts older than the longest window are deleted as the workspace's
attempts are counted, and for every workspace by :func:`prune` (``consentry privacy requests
remind``, the hourly cron job).

No personal data is stored in clear: the email is its blind index, the network a keyed hash of
the truncated address (:func:`~consentry.privacy.requests.network_key`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from consentry.platform.db import lock_workspace
from consentry.privacy import requests as rq
from consentry.privacy.request_tables import RequestAttemptRow


@dataclass(frozen=True, slots=True)
class Guard:
    """The public intake's caller: the limits of the rules apply to what it asks, its network
    taken from ``client`` (the client's address as the server sees it; None when unknown)."""

    client: str | None


@dataclass(frozen=True, slots=True)
class Check:
    """One attempt to count: against ``kind`` and ``key``, under ``limit``."""

    kind: str
    key: str
    limit: rq.Limit


def _lock(session: Session, workspace_id: str) -> None:
    """Serialise the counting of a workspace's attempts on PostgreSQL (SQLite has one
    writer already)."""
    lock_workspace(session, workspace_id, scope="dsr-limits")


def _recent(session: Session, workspace_id: str, check: Check, now: datetime) -> list[datetime]:
    """The newest attempts of the check's window (at most ``count``), newest first."""
    return list(
        session.scalars(
            select(RequestAttemptRow.at)
            .where(
                RequestAttemptRow.workspace_id == workspace_id,
                RequestAttemptRow.kind == check.kind,
                RequestAttemptRow.key == check.key,
                RequestAttemptRow.at > now - check.limit.window,
            )
            .order_by(RequestAttemptRow.at.desc())
            .limit(check.limit.count)
        )
    )


def take(
    session: Session,
    *,
    workspace_id: str,
    checks: Sequence[Check],
    limits: rq.Limits,
    now: datetime,
) -> None:
    """Count one attempt against each check, or raise RateLimited naming every limit it is
    over (``Retry-After``: the longest wait) and count nothing. A check whose limit is 0 is
    not counted. The workspace's attempts older than the longest of ``limits`` go."""
    active = [c for c in checks if c.limit.count > 0]
    if not active:
        return
    _lock(session, workspace_id)
    over: list[tuple[Check, int]] = []
    for check in active:
        wait = rq.retry_after(_recent(session, workspace_id, check, now), check.limit, now)
        if wait is not None:
            over.append((check, wait))
    if over:
        raise rq.RateLimited(
            "too many requests: try again later",
            [rq.limit_error(c.kind, c.limit) for c, _ in over],
            max(wait for _, wait in over),
        )
    session.execute(
        delete(RequestAttemptRow).where(
            RequestAttemptRow.workspace_id == workspace_id,
            RequestAttemptRow.at <= now - limits.longest,
        )
    )
    session.add_all(
        RequestAttemptRow(workspace_id=workspace_id, kind=c.kind, key=c.key, at=now) for c in active
    )
    session.flush()


def intake_checks(*, limits: rq.Limits, email_index: str, network: str) -> list[Check]:
    """A request filed: per email address and per client network."""
    return [
        Check(rq.BY_EMAIL, email_index, limits.per_email),
        Check(rq.BY_NETWORK, network, limits.per_network),
    ]


def resend_checks(*, limits: rq.Limits, request_id: str, network: str) -> list[Check]:
    """A new code: per request and per client network (the network's mails)."""
    return [
        Check(rq.BY_REQUEST, request_id, limits.resends),
        Check(rq.BY_NETWORK, network, limits.per_network),
    ]


def code_checks(*, limits: rq.Limits, network: str) -> list[Check]:
    """A code tried: per client network."""
    return [Check(rq.BY_CODE_NETWORK, network, limits.codes_per_network)]


def prune(*, session: Session, limits: rq.Limits, now: datetime) -> int:
    """Delete every workspace's attempts older than the longest window; how many went."""
    result = session.execute(
        delete(RequestAttemptRow).where(RequestAttemptRow.at <= now - limits.longest)
    )
    return int(getattr(result, "rowcount", 0) or 0)
