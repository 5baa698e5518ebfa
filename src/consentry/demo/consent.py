"""Consent in the demo shop, sent the ways a real shop sends it.

- **The cookie banner** (a CMP behind Segment's consent wrapper): each browser and app install
  answers it on its first visit, the answer is announced with a ``Segment Consent Preference
  Updated`` event, and every later event of that device carries it in
  ``context.consent.categoryPreferences`` (ingestion turns changes into ledger records, source
  ``cmp``). Now and then a shopper reopens the banner's settings and changes their mind,
  mostly to take a grant back. EU and UK visitors reject more than US visitors, whose banner
  is a notice with everything on by default.
- **Global Privacy Control**: some browsers send ``Sec-GPC: 1``, which ingestion puts on their
  events as ``context.gpc``; the CMP honours it by switching advertising off.
- **Newsletter and SMS checkboxes** of the sign-up form (at checkout or on the account page),
  the newsletter form in the footer, and later unsubscriptions (the account page, or the email
  provider's unsubscribe synced by the shop's backend): these are not cookie categories, and
  ingestion never reads email consent from a banner, so the shop's backend sends them to the
  consent API (``POST /v1/consent/bulk``), as :class:`ApiConsent` items.

Pure and deterministic: all randomness comes from one ``random.Random`` seeded by the spec.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from consentry.demo.catalog import DAY_MS, SHOP_URL, Market, iso
from consentry.demo.people import Person

PREFERENCE_EVENT = "Segment Consent Preference Updated"
NEWSLETTER = "marketing.communications.email"
SMS = "marketing.communications.sms"
NEWSLETTER_NOTICE = "signup-newsletter-2025-03"
SMS_NOTICE = "signup-sms-2025-03"
CHANNELS = {NEWSLETTER: "email", SMS: "sms"}
CATEGORIES = ("Analytics", "Personalization", "Advertising")

Preferences = dict[str, bool]


@dataclass(frozen=True, slots=True)
class MarketConsent:
    """How a market's visitors answer: the banner's accept-all and reject-all shares (the rest
    customise), the newsletter and SMS opt-in rates of the sign-up form, GPC browsers."""

    accept_all: float
    reject_all: float
    newsletter: float
    sms: float
    gpc: float


# The US banner is a notice (all on unless the visitor opts out); the EU and UK ones ask first,
# with a reject button as regulators require, and Germans say no most often.
RATES: dict[str, MarketConsent] = {
    "US": MarketConsent(accept_all=0.86, reject_all=0.04, newsletter=0.5, sms=0.16, gpc=0.07),
    "GB": MarketConsent(accept_all=0.58, reject_all=0.27, newsletter=0.38, sms=0.08, gpc=0.03),
    "DE": MarketConsent(accept_all=0.46, reject_all=0.37, newsletter=0.29, sms=0.05, gpc=0.04),
    "FR": MarketConsent(accept_all=0.53, reject_all=0.31, newsletter=0.33, sms=0.07, gpc=0.03),
}
_CUSTOMISE = {"Analytics": 0.55, "Personalization": 0.45, "Advertising": 0.12}
_SAME_ANSWER = 0.85  # a person answers the banner of a second device as they did the first
_CHANGE_PER_SESSION = 0.025
_FOOTER_SIGNUP = 0.015  # per identified web session of a customer not subscribed
_UNSUBSCRIBE = {NEWSLETTER: 0.2, SMS: 0.3}  # of the subscribers, within the window


@dataclass(frozen=True, slots=True)
class ApiConsent:
    """A choice the shop's backend sends to the consent API: one item of
    ``POST /v1/consent/bulk`` (JSON-serialisable, as ``consent.models.ConsentIn`` reads it)."""

    body: dict[str, Any]


@dataclass(slots=True)
class DeviceConsent:
    """What a browser or app install says of consent: the banner's answer and GPC."""

    preferences: Preferences | None = None
    gpc: bool = False

    def context(self) -> dict[str, Any]:
        """The ``context`` fields these make on an event."""
        ctx: dict[str, Any] = {}
        if self.preferences is not None:
            ctx["consent"] = {"categoryPreferences": {"Necessary": True, **self.preferences}}
        if self.gpc:
            ctx["gpc"] = True
        return ctx


@dataclass(frozen=True, slots=True)
class Proof:
    """Where a choice was made: the form's source and what the request proves."""

    source: str
    ip: str | None = None
    user_agent: str | None = None
    page_url: str | None = None

    def call(
        self, person: Person, purpose: str, state: str, ts: int, notice: str | None
    ) -> ApiConsent:
        """The consent API item of a choice of ``person`` (named by their user id)."""
        body: dict[str, Any] = {"user_id": person.user_id, "purpose": purpose}
        body.update(channel=CHANNELS[purpose], state=state, source=self.source)
        body["occurred_at"] = iso(ts)
        if notice:
            body["notice_version"] = notice
        proof = {"ip": self.ip, "user_agent": self.user_agent, "page_url": self.page_url}
        if any(proof.values()):
            body["proof"] = {key: value for key, value in proof.items() if value}
        return ApiConsent(body)


class ConsentKeeper:
    """The consent state of every device and person as the expansion walks through time."""

    def __init__(self, seed: int, end_ms: int) -> None:
        self.rng = random.Random(f"consentry-demo-consent-{seed}")
        self.end_ms = end_ms
        self.devices: dict[str, DeviceConsent] = {}
        self.usual: dict[int, Preferences] = {}  # a person's usual banner answer
        self.subscribed: dict[tuple[int, str], bool] = {}  # (person, purpose) -> subscribed

    def device(self, anonymous_id: str, is_app: bool, market: Market) -> DeviceConsent:
        """A device's consent state; a browser's GPC setting is known from its first visit."""
        state = self.devices.get(anonymous_id)
        if state is None:
            gpc = not is_app and self.rng.random() < RATES[market.country].gpc
            state = self.devices[anonymous_id] = DeviceConsent(gpc=gpc)
        return state

    def banner(self, state: DeviceConsent, market: Market, person: int | None) -> bool:
        """Whether the banner gets an answer in this session: on a device's first visit, and
        when a shopper reopens its settings and changes their mind (mostly taking a grant
        back). Updates ``state``."""
        rng = self.rng
        if state.preferences is None:
            usual = self.usual.get(person) if person is not None else None
            if usual is not None and rng.random() < _SAME_ANSWER:
                answer = dict(usual)
            else:
                answer = self._answer(RATES[market.country])
            state.preferences = self._with_gpc(answer, state.gpc)
        elif rng.random() < _CHANGE_PER_SESSION:
            changed = self._change(state.preferences)
            if changed is None:
                return False
            state.preferences = self._with_gpc(changed, state.gpc)
        else:
            return False
        if person is not None:
            self.usual[person] = dict(state.preferences)
        return True

    def _answer(self, rates: MarketConsent) -> Preferences:
        roll = self.rng.random()
        if roll < rates.accept_all:
            return dict.fromkeys(CATEGORIES, True)
        if roll < rates.accept_all + rates.reject_all:
            return dict.fromkeys(CATEGORIES, False)
        return {name: self.rng.random() < share for name, share in _CUSTOMISE.items()}

    def _change(self, current: Preferences) -> Preferences | None:
        rng = self.rng
        if all(current.values()):  # takes back advertising, sometimes analytics too
            revoked = ("Advertising",) if rng.random() < 0.6 else ("Advertising", "Analytics")
            return {name: name not in revoked for name in CATEGORIES}
        if rng.random() < 0.35:  # the other way round: accepts everything after all
            return dict.fromkeys(CATEGORIES, True)
        return None

    @staticmethod
    def _with_gpc(answer: Preferences, gpc: bool) -> Preferences:
        return {**answer, "Advertising": False} if gpc else answer

    # ------------------------------------------------------------------ the consent API

    def signup(
        self, person: Person, market: Market, ts: int, has_phone: bool, how: Proof
    ) -> list[tuple[int, ApiConsent]]:
        """The sign-up form's newsletter checkbox (and the SMS one when a phone was given):
        ticked or left unticked, each is a choice; some subscribers unsubscribe later."""
        rates = RATES[market.country]
        asked = [(NEWSLETTER, rates.newsletter, NEWSLETTER_NOTICE)]
        if has_phone:
            asked.append((SMS, rates.sms, SMS_NOTICE))
        out: list[tuple[int, ApiConsent]] = []
        for purpose, rate, notice in asked:
            granted = self.rng.random() < rate
            self.subscribed[(person.index, purpose)] = granted
            state = "granted" if granted else "denied"
            out.append((ts, how.call(person, purpose, state, ts, notice)))
            if granted:
                out += self._unsubscribe(person, purpose, ts, market)
        return out

    def footer(
        self, person: Person, market: Market, ts: int, how: Proof
    ) -> list[tuple[int, ApiConsent]]:
        """Now and then a known customer who is not subscribed signs up in the footer form."""
        if self.subscribed.get((person.index, NEWSLETTER)) or self.rng.random() >= _FOOTER_SIGNUP:
            return []
        self.subscribed[(person.index, NEWSLETTER)] = True
        grant = how.call(person, NEWSLETTER, "granted", ts, None)
        return [(ts, grant), *self._unsubscribe(person, NEWSLETTER, ts, market)]

    def _unsubscribe(
        self, person: Person, purpose: str, since: int, market: Market
    ) -> list[tuple[int, ApiConsent]]:
        """Some subscribers leave, weeks or months later (if still within the window): by
        replying STOP or with the mail's link (synced by the backend), or on the account page."""
        if self.rng.random() >= _UNSUBSCRIBE[purpose]:
            return []
        ts = since + DAY_MS + int(self.rng.expovariate(1 / (120 * DAY_MS)))
        if ts >= self.end_ms:
            return []
        if purpose == SMS or self.rng.random() < 0.6:
            how = Proof("api")
        else:
            how = Proof("web_form", page_url=f"{SHOP_URL}/{market.path}/account/preferences")
        return [(ts, how.call(person, purpose, "withdrawn", ts, None))]
