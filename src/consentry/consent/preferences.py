"""The preference center and one-click unsubscribe: what the page shows, what a submission
changes, the look of the pages (branding, contrast) and the links and mail headers that open
them. Pure rules: no SQL and no HTTP (``preference_routes`` does the I/O).

The page offers one choice per purpose of the workspace. A purpose named
``marketing.communications.<channel>`` (email, sms, push, phone, postal, ...) is chosen for its
channel; every other purpose for the channel ``any``. Purposes of the category ``marketing`` are
grouped as messages; the others as uses of data. What a choice shows is what the policy decides
today (:func:`consentry.consent.policy.decide`), so a subject of an opt-out jurisdiction without
any record sees "yes"; a grant waiting for confirmation shows "yes" with a note.

A submission records only what differs from what the page showed: a "yes" where the subject was
not allowed is a grant, a "no" where they were is a withdrawal (of a grant, or of a pending
grant) or a denial (of an opt-out default). Every record has the source ``preference_center``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from consentry.consent import links
from consentry.consent.i18n import LANGUAGES, REFERENCE, Translator
from consentry.consent.models import (
    ANY_CHANNEL,
    CHANNELS,
    CONSENT,
    DEFAULT_PURPOSES,
    DENIED,
    GRANTED,
    PENDING,
    WITHDRAWN,
    ConsentConfig,
    ConsentEntry,
    CurrentState,
    ProofIn,
    Purpose,
    make_proof,
    truncate_ip,
)
from consentry.consent.policy import decide, pick
from consentry.errors import FieldError, Invalid

SOURCE = "preference_center"  # the page, its "unsubscribe from everything" and one-click
PAGE_ACTOR = "link:preferences"
UNSUBSCRIBE_ACTOR = "link:unsubscribe"

MARKETING = "marketing"  # the category whose purposes are messages
USES = "uses"  # every other category
CHANNEL_PREFIX = "marketing.communications."

FIELD_PREFIX = "choice:"  # a form field is choice:<purpose>:<channel> = yes | no
YES, NO = "yes", "no"
ACTION_FIELD = "action"
SAVE, UNSUBSCRIBE_ALL = "save", "unsubscribe_all"
ACTIONS = (SAVE, UNSUBSCRIBE_ALL)
MAX_FIELDS = 200

# RFC 8058: the body a mail client posts to the List-Unsubscribe URL.
ONE_CLICK_FIELD, ONE_CLICK_VALUE = "List-Unsubscribe", "One-Click"
LIST_UNSUBSCRIBE_POST = f"{ONE_CLICK_FIELD}={ONE_CLICK_VALUE}"

PREFERENCES_PATH, UNSUBSCRIBE_PATH = "/p/", "/u/"


def channel_of(purpose: str) -> str:
    """The channel a purpose is chosen for: ``marketing.communications.sms`` -> ``sms``."""
    if purpose.startswith(CHANNEL_PREFIX):
        channel = purpose.removeprefix(CHANNEL_PREFIX)
        if channel in CHANNELS:
            return channel
    return ANY_CHANNEL


# --- branding -----------------------------------------------------------------------------------

DEFAULT_COLOR = "#2f5bd3"
WHITE, DARK_TEXT, BLACK = "#ffffff", "#1d2433", "#000000"
AA_TEXT = 4.5  # WCAG 2 AA, normal text
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
_URL = re.compile(r"^https?://[^\s\"'<>;,\\`{}|^]+$")
_EMAIL = re.compile(r"^[^@\s<>\"(),;:\\\[\]]+@[^@\s<>\"(),;:\\\[\]]+\.[^@\s<>\"(),;:\\\[\]]+$")


@dataclass(frozen=True, slots=True)
class Branding:
    """How a workspace's customer-facing pages look."""

    brand_name: str
    primary_color: str = DEFAULT_COLOR
    logo_url: str | None = None
    default_language: str = REFERENCE
    privacy_policy_url: str | None = None
    support_email: str | None = None


def _printable(value: str, field: str) -> str:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{field} must not hold control characters")
    return value


def _url(value: str | None, *, https_only: bool = False) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    parts = urlsplit(value) if _URL.match(value) else None
    if parts is None or not parts.hostname:
        raise ValueError("an absolute http(s) URL")
    if https_only and parts.scheme != "https":
        raise ValueError("an https URL (the pages refuse mixed content)")
    return value


def is_email(value: str) -> bool:
    """Whether ``value`` looks like one email address (no display name, no list)."""
    return bool(_EMAIL.match(value.strip()))


class BrandingIn(BaseModel):
    """The look of the preference center and unsubscribe pages; the whole set is replaced."""

    model_config = ConfigDict(extra="forbid")

    brand_name: str = Field(..., min_length=1, max_length=200, examples=["Acme Shop"])
    primary_color: str = Field(DEFAULT_COLOR, max_length=7, description="#rrggbb")
    logo_url: str | None = Field(None, max_length=2000, description="An https URL of an image.")
    default_language: str = Field(REFERENCE, max_length=16, description=", ".join(LANGUAGES))
    privacy_policy_url: str | None = Field(None, max_length=2000)
    support_email: str | None = Field(None, max_length=320)

    @field_validator("brand_name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = _printable(value, "brand_name").strip()
        if not value:
            raise ValueError("brand_name must not be blank")
        return value

    @field_validator("primary_color")
    @classmethod
    def _color(cls, value: str) -> str:
        if not _COLOR.match(value):
            raise ValueError("a colour as #rrggbb, e.g. #2f5bd3")
        return value.lower()

    @field_validator("logo_url")
    @classmethod
    def _logo(cls, value: str | None) -> str | None:
        return _url(value, https_only=True)

    @field_validator("privacy_policy_url")
    @classmethod
    def _policy(cls, value: str | None) -> str | None:
        return _url(value)

    @field_validator("default_language")
    @classmethod
    def _language(cls, value: str) -> str:
        if value not in LANGUAGES:
            raise ValueError(f"one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("support_email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not is_email(value):
            raise ValueError("an email address, e.g. privacy@example.com")
        return value.strip()

    def branding(self) -> Branding:
        """The validated branding."""
        return Branding(**self.model_dump())


# --- contrast (WCAG 2) --------------------------------------------------------------------------


def luminance(color: str) -> float:
    """The relative luminance of a ``#rrggbb`` colour."""
    if not _COLOR.match(color):
        raise ValueError(f"not a #rrggbb colour: {color!r}")
    linear = []
    for i in (1, 3, 5):
        c = int(color[i : i + 2], 16) / 255
        linear.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    red, green, blue = linear
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two colours, from 1 to 21."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@dataclass(frozen=True, slots=True)
class Theme:
    """The colours of a page: the brand colour where it is legible, dark text where it is not."""

    brand: str  # backgrounds: the header band, primary buttons
    on_brand: str  # text on the brand colour
    accent: str  # the brand colour as text on white (links, focus ring), or dark text


def theme_for(color: str) -> Theme:
    """Colours with at least 4.5:1 contrast: white or dark text on the brand colour, and the
    brand colour on white only when it is dark enough (else the dark text colour)."""
    color = color.lower() if _COLOR.match(color) else DEFAULT_COLOR
    if contrast(color, WHITE) >= AA_TEXT:
        return Theme(brand=color, on_brand=WHITE, accent=color)
    on_brand = DARK_TEXT if contrast(color, DARK_TEXT) >= AA_TEXT else BLACK
    return Theme(brand=color, on_brand=on_brand, accent=DARK_TEXT)


# --- what the page shows ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Choice:
    """One purpose on the page, over one channel, with what the subject has chosen."""

    purpose: Purpose
    channel: str
    group: str  # MARKETING or USES
    chosen: bool  # the "yes" the page shows: allowed now, or a grant waiting for confirmation
    pending: bool  # a grant waiting for confirmation (double opt-in)
    state: str | None  # the state of the deciding record, None without one

    @property
    def field(self) -> str:
        """The name of the form field of this choice."""
        return f"{FIELD_PREFIX}{self.purpose.key}:{self.channel}"

    @property
    def dom_id(self) -> str:
        """An HTML id for this choice."""
        return f"c-{self.purpose.key.replace('.', '-')}-{self.channel}"


def choices(
    config: ConsentConfig, states: Iterable[CurrentState], regime: str, at: datetime
) -> list[Choice]:
    """The choices of the page, messages first, each in the workspace's order of purposes.

    ``states`` are the unified profile's current states (``service.subject_consent``)."""
    by_purpose: dict[str, list[CurrentState]] = {}
    for state in states:
        by_purpose.setdefault(state.purpose, []).append(state)
    found: list[Choice] = []
    for purpose in config.purposes:
        channel = channel_of(purpose.key)
        deciding = pick(by_purpose.get(purpose.key, ()), channel)
        decision = decide(deciding, regime, at)
        pending = decision.reason == "pending_confirmation"
        found.append(
            Choice(
                purpose=purpose,
                channel=channel,
                group=MARKETING if purpose.category == MARKETING else USES,
                chosen=decision.allowed or pending,
                pending=pending,
                state=deciding.state if deciding else None,
            )
        )
    return sorted(found, key=lambda c: c.group != MARKETING)


_DEFAULT_NAMES = {p.key: p.name for p in DEFAULT_PURPOSES}


def purpose_name(t: Translator, purpose: Purpose) -> str:
    """The name of a purpose in the page's language; a workspace's own name is kept as it is."""
    key = f"purpose.{purpose.key}.name"
    if _DEFAULT_NAMES.get(purpose.key) == purpose.name and t.has(key):
        return t(key)
    return purpose.name


def purpose_description(t: Translator, purpose: Purpose) -> str | None:
    """The description of a default purpose in the page's language (None for others)."""
    key = f"purpose.{purpose.key}.description"
    if _DEFAULT_NAMES.get(purpose.key) == purpose.name and t.has(key):
        return t(key)
    return None


# --- what a submission changes ------------------------------------------------------------------


class FormRejected(Exception):
    """A submission that changes nothing: each problem is (field, reason code)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(", ".join(f"{field}: {reason}" for field, reason in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Submission:
    """What a posted form asks for: an action and an answer per form field."""

    action: str
    wanted: Mapping[str, bool]


def parse_form(
    fields: Sequence[tuple[str, str]], offered: Sequence[Choice], purposes: Iterable[str]
) -> Submission:
    """Read a posted form; FormRejected names every field that is not a choice of this page
    (reasons: purpose, channel, pair, value, shape, repeated, action, too_many).

    Fields that are not ``choice:...`` or ``action`` are ignored."""
    if len(fields) > MAX_FIELDS:
        raise FormRejected([("form", "too_many")])
    known = frozenset(purposes)
    by_field = {c.field: c for c in offered}
    action = SAVE
    wanted: dict[str, bool] = {}
    problems: list[tuple[str, str]] = []
    for name, value in fields:
        if name == ACTION_FIELD:
            if value in ACTIONS:
                action = value
            else:
                problems.append((name, "action"))
            continue
        if not name.startswith(FIELD_PREFIX):
            continue
        purpose, sep, channel = name.removeprefix(FIELD_PREFIX).rpartition(":")
        if not sep or not purpose:
            problems.append((name, "shape"))
        elif purpose not in known:
            problems.append((name, "purpose"))
        elif channel not in CHANNELS:
            problems.append((name, "channel"))
        elif name not in by_field:
            problems.append((name, "pair"))
        elif value not in (YES, NO):
            problems.append((name, "value"))
        elif wanted.setdefault(name, value == YES) != (value == YES):
            problems.append((name, "repeated"))
    if problems:
        raise FormRejected(list(dict.fromkeys(problems)))
    return Submission(action, wanted)


@dataclass(frozen=True, slots=True)
class Change:
    """A choice whose state changes, and the new state."""

    choice: Choice
    state: str


def refusal_state(choice: Choice) -> str:
    """A "no": the withdrawal of a grant (or of one waiting for confirmation), else a denial."""
    return WITHDRAWN if choice.state in (GRANTED, PENDING) else DENIED


def changes(offered: Sequence[Choice], submission: Submission) -> list[Change]:
    """What the submission changes, in the page's order: nothing for an unchanged answer."""
    if submission.action == UNSUBSCRIBE_ALL:
        return unsubscribe_all(offered)
    found = []
    for choice in offered:
        wanted = submission.wanted.get(choice.field)
        if wanted is None or wanted == choice.chosen:
            continue
        found.append(Change(choice, GRANTED if wanted else refusal_state(choice)))
    return found


def unsubscribe_all(offered: Sequence[Choice]) -> list[Change]:
    """Every marketing choice that is "yes" now, withdrawn (or denied) at once."""
    return [
        Change(choice, refusal_state(choice))
        for choice in offered
        if choice.group == MARKETING and choice.chosen
    ]


def entries(
    found: Sequence[Change],
    *,
    profile_id: str,
    occurred_at: datetime,
    actor: str = PAGE_ACTOR,
    proof: Mapping[str, str] | None = None,
) -> list[ConsentEntry]:
    """The ledger entries of the changes: source ``preference_center``, one per change."""
    return [
        ConsentEntry(
            profile_id=profile_id,
            purpose=change.choice.purpose.key,
            channel=change.choice.channel,
            state=change.state,
            source=SOURCE,
            occurred_at=occurred_at,
            actor=actor,
            legal_basis=CONSENT,
            proof=proof,
        )
        for change in found
    ]


def one_click_choice(offered: Sequence[Choice], purpose: str, channel: str) -> Choice | None:
    """The choice an unsubscribe link names, or None when the workspace no longer offers it."""
    return next((c for c in offered if c.purpose.key == purpose and c.channel == channel), None)


def one_click_change(choice: Choice) -> Change | None:
    """One-click unsubscribe: a withdrawal, unless the subject already refused (then nothing)."""
    if choice.state in (DENIED, WITHDRAWN):
        return None
    return Change(choice, WITHDRAWN)


# --- links and mail headers ---------------------------------------------------------------------

MAX_TTL_DAYS = 730


class LinkIn(BaseModel):
    """A link for one subject: to the preference center, or to unsubscribe from one purpose."""

    model_config = ConfigDict(extra="forbid")

    profile_id: str | None = Field(None, max_length=36)
    email: str | None = Field(None, max_length=512)
    user_id: str | None = Field(None, max_length=512)
    kind: Literal["preferences", "unsubscribe"] = "preferences"
    purpose: str | None = Field(
        None, max_length=100, description="Kind unsubscribe: the purpose it withdraws."
    )
    language: str | None = Field(
        None, max_length=16, description="Opens the page in: " + ", ".join(LANGUAGES)
    )
    ttl_days: int | None = Field(
        None, ge=1, le=MAX_TTL_DAYS, description="Lifetime; 30 days (preferences), 365 (unsub)."
    )
    mailto: str | None = Field(
        None, max_length=320, description="Kind unsubscribe: the mailto: of List-Unsubscribe."
    )

    @field_validator("language")
    @classmethod
    def _language(cls, value: str | None) -> str | None:
        if value is not None and value not in LANGUAGES:
            raise ValueError(f"one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("mailto")
    @classmethod
    def _mailto(cls, value: str | None) -> str | None:
        if value is not None and not is_email(value):
            raise ValueError("an email address")
        return value


def link_claims(body: LinkIn, config: ConsentConfig) -> dict[str, str]:
    """The extra fields a link of this kind carries (an unsubscribe link: its purpose and
    channel); Invalid naming the field when the request does not fit the kind."""
    errors: list[FieldError] = []
    if body.kind == links.PREFERENCES:
        errors += [
            FieldError(name, "only for kind unsubscribe")
            for name in ("purpose", "mailto")
            if getattr(body, name) is not None
        ]
        if errors:
            raise Invalid("the link request is not valid", errors)
        return {}
    if body.purpose is None:
        errors.append(FieldError("purpose", "required for kind unsubscribe"))
    elif body.purpose not in config.purpose_keys:
        known = ", ".join(sorted(config.purpose_keys))
        errors.append(FieldError("purpose", f"unknown purpose {body.purpose!r}; one of {known}"))
    if errors or body.purpose is None:
        raise Invalid("the link request is not valid", errors)
    return {"purpose": body.purpose, "channel": channel_of(body.purpose)}


# --- proof --------------------------------------------------------------------------------------


def token_digest(token: str) -> str:
    """What stands for a link's token in stored proof: the token itself is a credential."""
    return "sha256-" + hashlib.sha256(token.encode()).hexdigest()[:32]


def page_proof(
    *, ip: str | None, user_agent: str | None, public_url: str, path: str, token: str
) -> dict[str, str] | None:
    """The proof of a choice made through a link: the truncated IP (when it is one), the user
    agent, and the page's URL with the token replaced by its digest."""
    try:
        address = truncate_ip(ip) if ip else None
    except ValueError:  # not an address (a test client, a unix socket): left out
        address = None
    page_url = f"{public_url.rstrip('/')}{path}{token_digest(token)}"
    proof = ProofIn(
        ip=address,
        user_agent=(user_agent or None) and user_agent[:512],
        page_url=page_url[:2048],
    )
    stored, _ = make_proof(proof)
    return stored


def link_url(public_url: str, kind_path: str, token: str, language: str | None = None) -> str:
    """The public URL of a link: ``{public_url}/p/{token}`` (``?lang=`` when a language is set)."""
    url = f"{public_url.rstrip('/')}{kind_path}{token}"
    return f"{url}?lang={language}" if language else url


def mailto_uri(address: str) -> str:
    """A ``mailto:`` URI asking to unsubscribe ``address``'s list."""
    return f"mailto:{quote(address, safe='@')}?subject=unsubscribe"


def unsubscribe_headers(url: str, mailto: str | None = None) -> dict[str, str]:
    """The headers of an outgoing message (RFC 2369 and RFC 8058 one-click)::

    List-Unsubscribe: <https://.../u/TOKEN>, <mailto:...?subject=unsubscribe>
    List-Unsubscribe-Post: List-Unsubscribe=One-Click
    """
    targets = [f"<{url}>"]
    if mailto:
        targets.append(f"<{mailto_uri(mailto)}>")
    return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": LIST_UNSUBSCRIBE_POST}


def branding_json(branding: Branding) -> dict[str, Any]:
    """Branding as the API shows it, with the colours the pages derive from it."""
    theme = theme_for(branding.primary_color)
    return {
        "brand_name": branding.brand_name,
        "primary_color": branding.primary_color,
        "logo_url": branding.logo_url,
        "default_language": branding.default_language,
        "privacy_policy_url": branding.privacy_policy_url,
        "support_email": branding.support_email,
        "theme": {"on_brand": theme.on_brand, "accent": theme.accent},
    }
