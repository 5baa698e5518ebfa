"""Data-subject requests (DSR): the pure rules. No SQL, no HTTP, no I/O.

A person asks the shop for something their privacy law gives them: a copy of their data
(``access``), a portable copy (``portability``), a correction (``rectification``), erasure
(``erasure``), a restriction of processing (``restriction``), to object to a use
(``objection``) or, under the CCPA, to opt out of the sale or sharing of their data
(``opt_out_sale``).

The jurisdiction follows the person's country: the EU/EEA, the UK and Switzerland answer to the
GDPR (one calendar month, extendable once by two further months, the person told why), the US
to the CCPA (45 days, extendable once by 45 days); any other country, or none, takes the
default of the settings. Deadlines run from receipt.

Statuses and what moves them::

    unverified --verify--> verified --start--> in_progress --complete--> completed
        |  \\                  |                   |
        |   `--reject---------+-------------------+--> rejected
        `--expire--> expired   (verification not done in time)

``extended`` is a flag, not a status: set once, with a reason, while the request is verified or
in progress and not yet overdue; it moves ``due_at``. A move the table does not allow is a
:class:`~consentry.errors.Conflict` naming the current status.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import html
import math
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from consentry.config import PrivacySettings
from consentry.consent import links
from consentry.consent.models import OPT_IN_COUNTRIES, truncate_ip
from consentry.delivery.models import ascii_address
from consentry.errors import Conflict, FieldError, Invalid, TooManyRequests
from consentry.privacy.processors import country_problem, normal_country

# --- vocabulary ---------------------------------------------------------------------------------

TYPES: Mapping[str, str] = {
    "access": "a copy of the personal data held (GDPR Art. 15, CCPA right to know)",
    "portability": "the data in a machine-readable form, to take elsewhere (GDPR Art. 20)",
    "rectification": "correct inaccurate data (GDPR Art. 16, CCPA right to correct)",
    "erasure": "delete the data (GDPR Art. 17, CCPA right to delete)",
    "restriction": "restrict the processing of the data (GDPR Art. 18)",
    "objection": "object to a processing, such as direct marketing (GDPR Art. 21)",
    "opt_out_sale": "opt out of the sale or sharing of the data (CCPA)",
}
TYPE_NAMES: Mapping[str, str] = {
    "access": "Access to my data",
    "portability": "A portable copy of my data",
    "rectification": "Correct my data",
    "erasure": "Delete my data",
    "restriction": "Restrict the use of my data",
    "objection": "Object to a use of my data",
    "opt_out_sale": "Do not sell or share my data",
}

UNVERIFIED = "unverified"
VERIFIED = "verified"
IN_PROGRESS = "in_progress"
COMPLETED = "completed"
REJECTED = "rejected"
EXPIRED = "expired"
STATUSES = (UNVERIFIED, VERIFIED, IN_PROGRESS, COMPLETED, REJECTED, EXPIRED)
OPEN = frozenset({UNVERIFIED, VERIFIED, IN_PROGRESS})
ACTIVE = frozenset({VERIFIED, IN_PROGRESS})  # the identity is verified and the work is due
CLOSED = frozenset({COMPLETED, REJECTED, EXPIRED})

# action -> (the statuses it may start from, the status it leads to)
TRANSITIONS: Mapping[str, tuple[frozenset[str], str]] = {
    "verify": (frozenset({UNVERIFIED}), VERIFIED),
    "start": (frozenset({VERIFIED}), IN_PROGRESS),
    "complete": (frozenset({IN_PROGRESS}), COMPLETED),
    "reject": (frozenset({UNVERIFIED, VERIFIED, IN_PROGRESS}), REJECTED),
    "expire": (frozenset({UNVERIFIED}), EXPIRED),
}
_VERBS = {
    "verify": "verified",
    "start": "started",
    "complete": "completed",
    "reject": "rejected",
    "expire": "expired",
    "extend": "extended",
    "link": "linked to a profile",
}

# who verified the requester
BY_CODE = "code"
BY_LINK = "link"
BY_STAFF = "staff"

# where a request came from
SOURCE_FORM = "web_form"  # the public page or the public API
SOURCE_STAFF = "staff"  # the admin API

GDPR = "gdpr"
CCPA = "ccpa"
JURISDICTION_NAMES = {GDPR: "GDPR", CCPA: "CCPA"}

CODE_DIGITS = 6
MAX_MESSAGE = 2000
MAX_REASON = 200
REQUEST_PREFIX = "rq-"
_REQUEST_ID = re.compile(r"^rq-[0-9a-f]{32}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CODE = re.compile(r"^[0-9]{6}$")


def new_request_id() -> str:
    """A new request id, ``rq-`` and 32 hex digits; also the subject whose key seals its email."""
    return REQUEST_PREFIX + secrets.token_hex(16)


def is_request_id(value: str) -> bool:
    """Whether ``value`` has the shape of a request id."""
    return bool(_REQUEST_ID.match(value))


# --- deadlines ----------------------------------------------------------------------------------


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months; a day the target month lacks becomes its last day
    (31 January + 1 month = 28 or 29 February). The time of day and zone are kept."""
    total = moment.year * 12 + (moment.month - 1) + months
    year, month = divmod(total, 12)
    month += 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


@dataclass(frozen=True, slots=True)
class Period:
    """A length of time in calendar months and days (months first)."""

    months: int = 0
    days: int = 0

    def after(self, start: datetime) -> datetime:
        """The end of the period that starts at ``start``."""
        return add_months(start, self.months) + timedelta(days=self.days)

    def __add__(self, other: Period) -> Period:
        return Period(self.months + other.months, self.days + other.days)

    def __bool__(self) -> bool:
        return bool(self.months or self.days)

    def describe(self) -> str:
        """``1 month``, ``45 days``, ``2 months and 3 days``."""
        parts = [
            f"{n} {unit}{'s' if n != 1 else ''}"
            for n, unit in ((self.months, "month"), (self.days, "day"))
            if n
        ]
        return " and ".join(parts) or "no time"


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """A privacy law's time to answer and the one extension it allows."""

    key: str
    response: Period
    extension: Period

    @property
    def name(self) -> str:
        return JURISDICTION_NAMES.get(self.key, self.key.upper())


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``count`` attempts in any ``window`` (a sliding window); 0: no limit."""

    count: int
    window: timedelta


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of the public intake (the form and the public API; staff are not limited):
    requests filed per email address, requests filed and new codes asked for per client
    network, new codes per request, codes tried per client network."""

    per_email: Limit = Limit(5, timedelta(hours=24))
    per_network: Limit = Limit(20, timedelta(hours=1))
    resends: Limit = Limit(3, timedelta(hours=1))
    codes_per_network: Limit = Limit(30, timedelta(hours=1))

    @property
    def longest(self) -> timedelta:
        """The longest window: an attempt older than this counts for no limit."""
        return max(
            self.per_email.window,
            self.per_network.window,
            self.resends.window,
            self.codes_per_network.window,
        )


@dataclass(frozen=True, slots=True)
class Rules:
    """The settings of data-subject requests, as the rules use them."""

    jurisdictions: Mapping[str, Jurisdiction]
    default_jurisdiction: str = GDPR
    reminder_days: tuple[int, ...] = (7, 2)
    verification: timedelta = timedelta(days=14)
    code_ttl: timedelta = timedelta(hours=72)
    code_attempts: int = 5
    max_codes: int = 5
    limits: Limits = Limits()

    def jurisdiction(self, key: str) -> Jurisdiction:
        return self.jurisdictions[key]


def rules_from(settings: PrivacySettings) -> Rules:
    """The rules the settings describe."""
    return Rules(
        jurisdictions={
            GDPR: Jurisdiction(
                GDPR, Period(months=settings.gdpr_months), Period(settings.gdpr_extension_months)
            ),
            CCPA: Jurisdiction(
                CCPA, Period(days=settings.ccpa_days), Period(days=settings.ccpa_extension_days)
            ),
        },
        default_jurisdiction=settings.default_jurisdiction,
        reminder_days=tuple(sorted(set(settings.reminder_days), reverse=True)),
        verification=timedelta(days=settings.verification_days),
        code_ttl=timedelta(hours=settings.code_ttl_hours),
        code_attempts=settings.code_attempts,
        max_codes=settings.max_codes,
        limits=Limits(
            per_email=Limit(settings.limit_per_email, timedelta(hours=settings.limit_email_hours)),
            per_network=Limit(
                settings.limit_per_network, timedelta(minutes=settings.limit_network_minutes)
            ),
            resends=Limit(settings.limit_resends, timedelta(minutes=settings.limit_resend_minutes)),
            codes_per_network=Limit(
                settings.limit_codes_per_network, timedelta(minutes=settings.limit_code_minutes)
            ),
        ),
    )


DEFAULT_RULES = rules_from(PrivacySettings())


def jurisdiction_for(country: str | None, default: str) -> str:
    """GDPR for the EU/EEA, the UK and Switzerland; the CCPA for the US; else ``default``."""
    if country in OPT_IN_COUNTRIES:
        return GDPR
    if country == "US":
        return CCPA
    return default


def due_at(received_at: datetime, jurisdiction: Jurisdiction) -> datetime:
    """When the answer is due: the jurisdiction's time to answer, from receipt."""
    return jurisdiction.response.after(received_at)


def extended_due_at(received_at: datetime, jurisdiction: Jurisdiction) -> datetime:
    """When the answer is due once extended: the time to answer and the extension together,
    from receipt (GDPR: three months; CCPA: 90 days)."""
    return (jurisdiction.response + jurisdiction.extension).after(received_at)


def days_left(due: datetime, now: datetime) -> int:
    """Whole calendar days (UTC) from today to the due date: 0 on the day, negative after."""
    return (due.astimezone(UTC).date() - now.astimezone(UTC).date()).days


def is_overdue(due: datetime, now: datetime) -> bool:
    """The due moment has passed."""
    return now > due


def reminder_step(
    due: datetime, now: datetime, steps: Iterable[int], sent: Iterable[int]
) -> tuple[int | None, tuple[int, ...]]:
    """The reminder to send now and the steps it settles.

    A step ``n`` is due once at most ``n`` days are left and it was not sent. When several are
    due at once (the job did not run for a while), one reminder is sent, for the nearest step,
    and it settles every step that is due: the contact gets one mail, not a burst.
    """
    left = days_left(due, now)
    done = set(sent)
    due_steps = sorted((s for s in set(steps) if left <= s and s not in done), reverse=True)
    if not due_steps:
        return None, ()
    return due_steps[-1], tuple(due_steps)


def verification_deadline(received_at: datetime, rules: Rules) -> datetime:
    """When an unverified request expires."""
    return received_at + rules.verification


# --- the status machine -------------------------------------------------------------------------


def next_status(current: str, action: str) -> str:
    """The status ``action`` leads to from ``current``; Conflict naming ``current`` when the
    machine does not allow it."""
    if action not in TRANSITIONS:
        raise ValueError(f"unknown action {action!r}")
    allowed, target = TRANSITIONS[action]
    if current not in allowed:
        raise Conflict(_refusal(current, action, allowed))
    return target


def _refusal(current: str, action: str, allowed: Iterable[str]) -> str:
    froms = " or ".join(sorted(allowed))
    return (
        f"the request is {current}; it cannot be {_VERBS.get(action, action)} "
        f"(only a request that is {froms} can)"
    )


def extension_due(
    *,
    status: str,
    extended: bool,
    received_at: datetime,
    due: datetime,
    now: datetime,
    jurisdiction: Jurisdiction,
) -> datetime:
    """The new due date of an extension; Conflict when the request cannot be extended: it is
    not verified or in progress, it was extended already, its deadline passed (an extension is
    decided and told to the person within the first period), or the law allows none."""
    if status not in ACTIVE:
        raise Conflict(_refusal(status, "extend", ACTIVE))
    if extended:
        raise Conflict("the request was extended already; a deadline is extended once")
    if not jurisdiction.extension:
        raise Conflict(f"{jurisdiction.name} allows no extension in these settings")
    if is_overdue(due, now):
        raise Conflict(
            f"the request is {status} and its deadline passed on {due.date().isoformat()}; "
            "an extension must be decided before it"
        )
    return extended_due_at(received_at, jurisdiction)


def link_allowed(status: str) -> None:
    """Conflict unless a profile may still be linked (the request is open)."""
    if status not in OPEN:
        raise Conflict(_refusal(status, "link", OPEN))


# --- the requester ------------------------------------------------------------------------------


def requester_email(raw: str) -> str:
    """The email as compared and stored (NFKC, trimmed, lower-cased, the same form as the
    profiles' identifiers, so the blind indexes match); Invalid naming ``email`` when it is not
    one address a mail can be sent to."""
    text = unicodedata.normalize("NFKC", raw).strip().lower()
    if not _EMAIL.match(text) or len(text) > 254 or text.count("@") != 1:
        raise Invalid("not an email address", [FieldError("email", "not an email address")])
    try:
        ascii_address(text)
    except ValueError as exc:
        raise Invalid("not an email address", [FieldError("email", str(exc))]) from exc
    return text


def requester_country(raw: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code (``uk`` -> ``GB``), None when none was given; Invalid
    naming ``country`` when it is not one."""
    if raw is None or not raw.strip():
        return None
    code = normal_country(raw)
    problem = country_problem(code)
    if problem:
        raise Invalid("not a country", [FieldError("country", problem)])
    return code


def request_type(raw: str) -> str:
    """The request type; Invalid naming ``type`` and listing the types otherwise."""
    value = raw.strip().lower()
    if value not in TYPES:
        raise Invalid("unknown request type", [FieldError("type", "one of " + ", ".join(TYPES))])
    return value


def message_text(raw: str | None) -> str | None:
    """The person's own words (what to correct, which processing): trimmed, at most 2,000
    characters, no control characters but new lines."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip().replace("\r\n", "\n")
    if len(text) > MAX_MESSAGE:
        raise Invalid("too long", [FieldError("message", f"at most {MAX_MESSAGE} characters")])
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in text):
        raise Invalid("bad characters", [FieldError("message", "no control characters")])
    return text


# --- verification: the code ---------------------------------------------------------------------


def new_code() -> str:
    """Six random digits."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_key(secret: str, workspace_id: str) -> bytes:
    """The key of a workspace's code digests, derived from the server's secret: a copy of the
    database alone cannot test the million possible codes."""
    return hmac.new(
        secret.encode(), b"consentry-dsr-code\x00" + workspace_id.encode(), hashlib.sha256
    ).digest()


def code_digest(key: bytes, request_id: str, code: str) -> str:
    """What is stored of a code: HMAC-SHA256 over the request id and the code (hex)."""
    return hmac.new(key, f"{request_id}\x00{code}".encode(), hashlib.sha256).hexdigest()


def code_matches(key: bytes, request_id: str, code: str, stored: str | None) -> bool:
    """Whether ``code`` is the request's code, compared in constant time."""
    if stored is None or not _CODE.match(code):
        return False
    return hmac.compare_digest(code_digest(key, request_id, code), stored)


WRONG = "wrong"
EXPIRED_CODE = "expired"
EXHAUSTED = "exhausted"


def code_problem(
    *, expires_at: datetime | None, attempts: int, max_attempts: int, now: datetime
) -> str | None:
    """Why no code can be tried now (``expired``, ``exhausted``), or None."""
    if attempts >= max_attempts:
        return EXHAUSTED
    if expires_at is None or now >= expires_at:
        return EXPIRED_CODE
    return None


# --- verification: the signed link --------------------------------------------------------------

# A mailed link is a customer link of its own kind, signed with a key of its own
# (:mod:`consentry.consent.links`): it names the request (the link's subject) and the code it
# was mailed with. LinkError (``reason``: malformed, forged, expired, kind) when it opens nothing.
LinkError = links.LinkError
VERIFY_PATH = "/dsr/"  # the page a verification link opens


@dataclass(frozen=True, slots=True)
class VerificationLink:
    """What a verified link names: the request and the code it was mailed with."""

    workspace_id: str
    request_id: str
    code_ref: str  # the first 16 hex digits of the code digest: a new code voids older links
    expires_at: datetime


def sign_link(
    secret: str, *, workspace_id: str, request_id: str, code_ref: str, expires_at: datetime
) -> str:
    """The token of a request's verification link, valid until ``expires_at``."""
    return links.sign_until(
        links.link_key(secret, workspace_id, links.DSR_VERIFY),
        workspace_id=workspace_id,
        profile_id=request_id,
        kind=links.DSR_VERIFY,
        expires_at=expires_at,
        c=code_ref,
    )


def read_link(secret: str, token: str, now: datetime) -> VerificationLink:
    """What a link token names, if it was signed here for verification and has not expired."""
    link = links.read(secret, token, kind=links.DSR_VERIFY, now=now)
    code = link.extra.get("c")
    if not isinstance(code, str):
        raise LinkError("malformed", "the link is not valid")
    return VerificationLink(link.workspace_id, link.profile_id, code, link.expires_at)


def verify_url(public_url: str, token: str) -> str:
    """Where a verification link points: ``{public_url}/dsr/{token}``."""
    return f"{public_url.rstrip('/')}{VERIFY_PATH}{token}"


def code_ref(stored_digest: str) -> str:
    """The part of a code's digest a link carries."""
    return stored_digest[:16]


# --- limits of the public intake ----------------------------------------------------------------

# What an attempt is counted against (the ``kind`` of a stored attempt).
BY_EMAIL = "email"  # a request filed for the address (its blind index)
BY_NETWORK = "network"  # a request filed or a new code asked for, from the client's network
BY_REQUEST = "resend"  # a new code asked for the request (its id)
BY_CODE_NETWORK = "code"  # a code tried, from the client's network
# Each kind's field in a refusal, and what its limit counts.
_LIMITED = {
    BY_EMAIL: ("email", "requests for this email address"),
    BY_NETWORK: ("client", "requests and new codes from your network"),
    BY_REQUEST: ("request", "new codes for this request"),
    BY_CODE_NETWORK: ("code", "codes tried from your network"),
}
UNKNOWN_CLIENT = "unknown"


class RateLimited(TooManyRequests):
    """Over a limit of the public intake (the API answers 429 with a ``Retry-After`` header;
    the form shows what was limited and how long to wait)."""


def client_network(host: str | None) -> str:
    """What the limits count a client by: the network of its address, truncated as the
    consent proofs are (IPv4 /24, IPv6 /48); a host that is not an address is taken as given
    (lower case); no host: ``unknown``."""
    if not host or not host.strip():
        return UNKNOWN_CLIENT
    try:
        return truncate_ip(host)
    except ValueError:
        return "host:" + host.strip().lower()[:200]


def network_key(secret: str, workspace_id: str, host: str | None) -> str:
    """The stored key of a client's network: a keyed hash (HMAC-SHA256 under a key derived
    from the server's secret and the workspace), so not even the truncated address is kept."""
    key = hmac.new(
        secret.encode(), b"consentry-dsr-limit\x00" + workspace_id.encode(), hashlib.sha256
    ).digest()
    return hmac.new(key, client_network(host).encode(), hashlib.sha256).hexdigest()


def retry_after(recent: Sequence[datetime], limit: Limit, now: datetime) -> int | None:
    """None when ``limit`` takes one more attempt now, given the attempts of its window,
    newest first (at least the ``count`` newest); else the seconds until the oldest of the
    ``count`` newest leaves the window (at least 1)."""
    if limit.count <= 0:
        return None
    inside = [at for at in recent if at > now - limit.window]
    if len(inside) < limit.count:
        return None
    frees_at = inside[limit.count - 1] + limit.window
    return max(1, math.ceil((frees_at - now).total_seconds()))


def window_text(window: timedelta) -> str:
    """``24 hours``, ``1 hour``, ``30 minutes``."""
    minutes = int(window.total_seconds() // 60)
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def wait_text(seconds: int) -> str:
    """How long to wait, for a person: ``a minute``, ``about 25 minutes``, ``about 3 hours``."""
    minutes = math.ceil(seconds / 60)
    if minutes <= 1:
        return "a minute"
    if minutes < 90:
        return f"about {minutes} minutes"
    return f"about {round(minutes / 60)} hours"


def limit_error(kind: str, limit: Limit) -> FieldError:
    """The error naming a limit of ``kind``: its field and what the limit allows."""
    field, what = _LIMITED[kind]
    return FieldError(field, f"at most {limit.count} {what} in {window_text(limit.window)}")


# --- a request as read --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    """A data-subject request as stored (the email sealed: see ``email`` of :class:`Detail`)."""

    id: str
    workspace_id: str
    type: str
    status: str
    jurisdiction: str
    country: str | None
    source: str
    profile_id: str | None
    received_at: datetime
    due_at: datetime
    original_due_at: datetime
    verify_by: datetime
    extended: bool
    extension_reason: str | None
    verified_at: datetime | None
    verified_by: str | None
    closed_at: datetime | None
    resolution: str | None
    duplicate_of: str | None
    reminders_sent: tuple[int, ...] = ()

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def days_left(self, now: datetime) -> int:
        return days_left(self.due_at, now)

    def overdue(self, now: datetime) -> bool:
        return self.open and is_overdue(self.due_at, now)


@dataclass(frozen=True, slots=True)
class Detail:
    """A request with what the person wrote, opened (None once erased)."""

    request: Request
    email: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One step of a request: who did what, when, from which status to which."""

    seq: int
    at: datetime
    actor: str
    action: str
    from_status: str | None
    to_status: str
    reason: str | None
    details: dict[str, Any] = field(default_factory=dict)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def request_json(request: Request, now: datetime) -> dict[str, Any]:
    """A request as the admin API shows it (no email: see :func:`detail_json`)."""
    return {
        "id": request.id,
        "workspace_id": request.workspace_id,
        "type": request.type,
        "status": request.status,
        "jurisdiction": request.jurisdiction,
        "country": request.country,
        "source": request.source,
        "profile_id": request.profile_id,
        "received_at": _iso(request.received_at),
        "due_at": _iso(request.due_at),
        "original_due_at": _iso(request.original_due_at),
        "days_left": request.days_left(now) if request.open else None,
        "overdue": request.overdue(now),
        "verify_by": _iso(request.verify_by) if request.status == UNVERIFIED else None,
        "extended": request.extended,
        "extension_reason": request.extension_reason,
        "verified_at": _iso(request.verified_at),
        "verified_by": request.verified_by,
        "closed_at": _iso(request.closed_at),
        "resolution": request.resolution,
        "duplicate_of": request.duplicate_of,
        "reminders_sent": list(request.reminders_sent),
    }


def public_json(request: Request) -> dict[str, Any]:
    """A request as its requester sees it: what was asked, its status and dates."""
    return {
        "id": request.id,
        "workspace": request.workspace_id,
        "type": request.type,
        "status": request.status,
        "jurisdiction": request.jurisdiction,
        "received_at": _iso(request.received_at),
        "due_at": _iso(request.due_at),
        "verify_by": _iso(request.verify_by) if request.status == UNVERIFIED else None,
        "duplicate_of": request.duplicate_of,
    }


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "at": _iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "from_status": entry.from_status,
        "to_status": entry.to_status,
        "reason": entry.reason,
        "details": entry.details,
    }


def queue_order(requests: Sequence[Request], now: datetime) -> list[Request]:
    """The work queue: overdue first, then by due date (soonest first), then by receipt."""
    return sorted(requests, key=lambda r: (not r.overdue(now), r.due_at, r.received_at, r.id))


# --- mails --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mail:
    """A mail's subject and its two bodies."""

    subject: str
    text: str
    html: str


def _html(paragraphs: Sequence[str], *, code: str | None = None, url: str | None = None) -> str:
    body = "".join(f"<p>{html.escape(p)}</p>\n" for p in paragraphs)
    if code:
        body += (
            '<p style="font-size:1.6em;letter-spacing:.3em;font-weight:700">'
            f"{html.escape(code)}</p>\n"
        )
    if url:
        body += f'<p><a href="{html.escape(url, quote=True)}">Confirm my request</a></p>\n'
    return f"<!doctype html>\n<html><body>\n{body}</body></html>\n"


def verification_mail(
    *, brand: str, request_type: str, code: str, url: str, expires_at: datetime
) -> Mail:
    """The mail that proves the requester holds the address: a code and a link."""
    what = TYPE_NAMES.get(request_type, request_type)
    until = expires_at.strftime("%Y-%m-%d %H:%M UTC")
    lead = f"We received a privacy request for {brand}: {what}."
    confirm = (
        "To confirm that it was you, enter this code on the request page, or open the link "
        f"below. Both work until {until}."
    )
    ignore = "If you did not make this request, ignore this mail: nothing will happen."
    text = f"{lead}\n\n{confirm}\n\nYour code: {code}\n\n{url}\n\n{ignore}\n"
    body = _html([lead, confirm], code=code, url=url)
    body = body.replace("</body>", f"<p>{html.escape(ignore)}</p>\n</body>")
    return Mail(subject=f"Confirm your privacy request to {brand}", text=text, html=body)


def extension_mail(
    *, brand: str, request: Request, reason: str, jurisdiction: Jurisdiction
) -> Mail:
    """The notice of an extension the person must receive: the new date and why."""
    what = TYPE_NAMES.get(request.type, request.type)
    paragraphs = [
        f"Your privacy request to {brand} ({what}, reference {request.id}) needs more time.",
        f"As {jurisdiction.name} allows, we extended the time to answer by "
        f"{jurisdiction.extension.describe()}: you will have our answer by "
        f"{request.due_at.date().isoformat()}.",
        f"Why: {reason}",
    ]
    return Mail(
        subject=f"Your privacy request to {brand}: more time needed",
        text="\n\n".join(paragraphs) + "\n",
        html=_html(paragraphs),
    )


def reminder_mail(
    *, brand: str, workspace_id: str, due: Sequence[tuple[Request, int]], now: datetime, url: str
) -> Mail:
    """The digest a privacy contact receives: each request due soon, with its days left. It
    names requests by id and type only: no personal data."""
    lines = []
    for request, _step in due:
        left = request.days_left(now)
        when = (
            f"overdue by {-left} day{'s' if left != -1 else ''}"
            if left < 0
            else "due today"
            if left == 0
            else f"{left} day{'s' if left != 1 else ''} left"
        )
        lines.append(
            f"- {request.id}  {request.type}  {request.status}  "
            f"due {request.due_at.date().isoformat()} ({when})"
        )
    lead = (
        f"{len(due)} privacy request{'s' if len(due) != 1 else ''} of {brand} "
        f"({workspace_id}) {'are' if len(due) != 1 else 'is'} due soon:"
    )
    text = f"{lead}\n\n" + "\n".join(lines) + f"\n\nThe queue: {url}\n"
    items = "".join(f"<li><code>{html.escape(line[2:])}</code></li>\n" for line in lines)
    body = (
        f"<!doctype html>\n<html><body>\n<p>{html.escape(lead)}</p>\n<ul>\n{items}</ul>\n"
        f'<p><a href="{html.escape(url, quote=True)}">Open the queue</a></p>\n</body></html>\n'
    )
    return Mail(
        subject=f"[consentry] {len(due)} privacy request{'s' if len(due) != 1 else ''} due "
        f"soon ({workspace_id})",
        text=text,
        html=body,
    )
