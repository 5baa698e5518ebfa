"""Realistic, deterministic demo-shop traffic as Segment HTTP tracking API messages.

*Planning* walks every person once (lifecycle, orders, sessions, devices, when each device
gets identified); *expansion* turns one calendar month of planned sessions at a time into
messages, sorts them and yields them, carrying spill-over into the next month.  All
randomness comes from ``random.Random`` seeded by the spec: same spec, same output.

Consent (:mod:`consentry.demo.consent`) rides on the events (the cookie banner's answer, GPC);
the newsletter and SMS choices the shop's backend sends to the consent API come out of
:func:`shop_stream` beside the messages, as :class:`ApiConsent` items.

A few customers come back as someone else to the shop's systems (:mod:`consentry.demo.people`):
a guest checkout, a store purchase with the loyalty form, a second account.
:func:`planted_duplicates` names them, for tests and for judging de-duplication.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import attrgetter, itemgetter
from typing import Any
from urllib.parse import quote_plus, urlencode

from consentry.demo.catalog import (
    CATEGORY_NAMES,
    DAY_MS,
    HOUR_MS,
    MARKETS,
    SHOP_NAME,
    SHOP_URL,
    TRAFFIC_SOURCES,
    TRAFFIC_WEIGHTS,
    Calendar,
    Market,
    Order,
    Product,
    ProductPicker,
    build_catalog,
    coupon_for,
    iso,
    lines_payload,
    lines_value,
    open_order,
    order_payload,
    poisson,
    product_payload,
    refund_payload,
    shift_months,
    slug,
)
from consentry.demo.consent import PREFERENCE_EVENT, ApiConsent, ConsentKeeper, Proof
from consentry.demo.people import (
    Device,
    Person,
    build_people,
    contact_traits,
    device_context,
    fake_ip,
    guest_traits,
    library,
    login_traits,
    messy_email,
    new_uuid,
    new_web_device,
    signup_traits,
    store_form_traits,
    ticket_payload,
)

__all__ = [
    "DEFAULT_END",
    "JUNK_IDS",
    "ApiConsent",
    "ShopSpec",
    "generate_shop",
    "planted_duplicates",
    "shop_stream",
    "window",
]

DEFAULT_END = datetime(2026, 11, 1, tzinfo=UTC)
#: Placeholder ids buggy clients send; they never replace a message's only valid id.
JUNK_IDS = ("undefined", "null", "guest", "0", "anonymous", "None")

Message = dict[str, Any]
Item = Message | ApiConsent
Stamped = tuple[int, Item]

_JUNK_RATE = 0.004
_SEGMENTS = ("never", "one", "repeat", "loyal", "vip")
_SEGMENT_WEIGHTS = (0.14, 0.44, 0.28, 0.11, 0.03)
_SECOND_ACCOUNT_SEGMENTS = (("never", "one", "repeat"), (0.3, 0.55, 0.15))
_REPEAT_RATE = {"repeat": (0.2, 2), "loyal": (0.6, 4), "vip": (1.8, 10)}  # per month, floor
_SERVER_IP, _SUPPORT_IP = "203.0.113.10", "203.0.113.25"


@dataclass(frozen=True)
class ShopSpec:
    """Size and shape of the generated shop. ``end`` is exclusive; a naive ``end`` is UTC."""

    customers: int = 5000
    months: int = 18
    seed: int = 42
    end: datetime = DEFAULT_END

    def __post_init__(self) -> None:
        if self.customers < 1 or self.months < 1:
            raise ValueError("customers and months must be positive")


def window(spec: ShopSpec) -> tuple[datetime, datetime]:
    """The generated period ``[start, end)`` of a spec, as aware UTC datetimes."""
    end = spec.end.astimezone(UTC) if spec.end.tzinfo else spec.end.replace(tzinfo=UTC)
    return shift_months(end, -spec.months), end


def generate_shop(spec: ShopSpec) -> Iterator[dict[str, Any]]:
    """Yield Segment-spec messages (dicts, JSON-serialisable) in timestamp order."""
    return (item for item in shop_stream(spec) if isinstance(item, dict))


def shop_stream(spec: ShopSpec) -> Iterator[Message | ApiConsent]:
    """The shop's Segment messages and its backend's consent API calls, in timestamp order."""
    start, end = window(spec)
    cal = Calendar(start, end)
    rng = random.Random(spec.seed)
    people = _people(spec, rng)
    picker = ProductPicker(build_catalog())
    sessions = _Planner(cal, rng, picker).plan(people, visitors=spec.customers // 3)
    yield from _in_order(cal, sessions, _Expander(spec.seed, picker, cal.end_ms))


def _people(spec: ShopSpec, rng: random.Random) -> list[Person]:
    return build_people(spec.seed, rng, spec.customers, walk_ins=max(1, spec.customers // 20))


def planted_duplicates(spec: ShopSpec) -> list[tuple[Person, Person]]:
    """The customers the shop of ``spec`` sees twice without an identifier in common: pairs of
    (the customer, their second appearance), as :func:`shop_stream` generates them."""
    people = _people(spec, random.Random(spec.seed))
    return [(people[p.twin_of], p) for p in people if p.twin_of is not None]


def _in_order(cal: Calendar, sessions: list[_Session], expander: _Expander) -> Iterator[Item]:
    """Expand one calendar month at a time, sort, and carry spill-over into the next."""
    buckets: list[list[_Session]] = [[] for _ in cal.month_starts]
    for session in sessions:
        buckets[bisect.bisect_right(cal.month_starts, session.ts) - 1].append(session)
    bounds = [*cal.month_starts[1:], cal.end_ms + DAY_MS]
    carry: list[Stamped] = []
    for bucket, bound in zip(buckets, bounds, strict=True):
        batch = carry
        for session in bucket:
            batch.extend(expander.expand(session))
        batch.sort(key=itemgetter(0))
        cut = bisect.bisect_left(batch, bound, key=itemgetter(0))
        yield from (message for _, message in batch[:cut])
        carry = batch[cut:]
        bucket.clear()


# --------------------------------------------------------------------------- planning


@dataclass(slots=True)
class _Session:
    ts: int
    kind: str  # web | app | store | support | refund | cancel
    market: Market
    person: Person | None = None
    device: Device | None = None
    depth: int = 0  # 0 browse, 1 cart abandoned, 2 checkout abandoned, 3 purchase
    order: Order | None = None
    known: bool = False  # the device already sends the userId when the session starts
    identify: str = ""  # "", "signup", "login" or "guest" (checkout without an account)
    join: bool = False
    taste: tuple[str, ...] = ()


@dataclass(slots=True)
class _Shopper:
    person: Person
    preexisting: bool  # registered before the window starts
    join: int
    stop: int  # churned shoppers stop buying here
    segment: str
    taste: tuple[str, ...]
    staples: tuple[Product, ...]
    store_share: float


class _Planner:
    def __init__(self, cal: Calendar, rng: random.Random, picker: ProductPicker) -> None:
        self.cal, self.rng, self.picker = cal, rng, picker
        self.sessions: list[_Session] = []
        self.ids: set[str] = set()

    def plan(self, people: list[Person], visitors: int) -> list[_Session]:
        twice = {p.twin_of for p in people if p.twin_of is not None}
        joined: dict[int, int] = {}  # registered customer -> when they joined
        for person in people:
            if person.twin_of is not None:  # after its original, in build_people's order
                self._second_appearance(person, joined[person.twin_of])
            elif person.user_id is None:
                self._walk_in(person)
            else:
                shopper = self._shopper(person, fresh=person.index in twice)
                joined[person.index] = shopper.join
                self._customer(shopper)
        for _ in range(visitors):
            self._visitor()
        return self.sessions

    def _sample(self, market: Market, lo: int, hi: int, kind: str = "online") -> int:
        return self.cal.sample(self.rng, lo, hi, market.utc_offset_hours, kind)

    def _shopper(self, person: Person, fresh: bool = False, after: int | None = None) -> _Shopper:
        """A registered customer's plan. ``fresh``: registers within the window (a customer
        seen twice: their traits are in the data); ``after``: registers after then (a second
        account) and shops little."""
        rng, cal = self.rng, self.cal
        preexisting = rng.random() < 0.35 and not fresh and after is None
        join = cal.start_ms
        if not preexisting:
            lo = cal.start_ms if after is None else after + DAY_MS
            join = self._sample(person.market, lo, cal.last_ms, "acquire")
        stop = cal.last_ms
        if rng.random() < 0.3:  # churns
            stop = join + int(rng.random() * (stop - join))
        taste = tuple(rng.sample(CATEGORY_NAMES, rng.randint(1, 3)))
        segment = rng.choices(_SEGMENTS, _SEGMENT_WEIGHTS)[0]
        if after is not None:
            segment = rng.choices(*_SECOND_ACCOUNT_SEGMENTS)[0]
        share = rng.choice((0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.3, 0.6))
        return _Shopper(
            person, preexisting, join, stop, segment, taste, self.picker.staples(rng, taste), share
        )

    def _order_count(self, shopper: _Shopper) -> int:
        if shopper.segment in ("never", "one"):
            return 0 if shopper.segment == "never" else 1
        rate, floor = _REPEAT_RATE[shopper.segment]
        months = (shopper.stop - shopper.join) / (30 * DAY_MS)
        return max(2, min(floor, int(months * 2)), poisson(self.rng, rate * months))

    def _order_times(self, shopper: _Shopper, count: int) -> tuple[list[int], bool]:
        """Order times; the flag says the first order happens in the signup session."""
        if count == 0:
            return [], False
        market, join = shopper.person.market, shopper.join
        at_join = not shopper.preexisting and self.rng.random() < 0.45
        times = [] if shopper.preexisting else [join]
        if times and not at_join:
            times[0] = self._sample(market, join + HOUR_MS, join + 21 * DAY_MS)
        lo = times[0] if times else join
        while len(times) < count:
            times.append(self._sample(market, lo, shopper.stop))
        return sorted(times), at_join

    def _customer(self, shopper: _Shopper) -> None:
        times, at_join = self._order_times(shopper, self._order_count(shopper))
        sessions = [self._purchase(shopper, ts, i == 0, at_join) for i, ts in enumerate(times)]
        online = sum(1 for s in sessions if s.kind != "store")
        if not shopper.preexisting and not at_join:
            sessions.append(self._browse_session(shopper, shopper.join, join=True))
        sessions += self._browsing(shopper, online)
        sessions.sort(key=attrgetter("ts"))
        self._assign_devices(shopper, sessions)
        self.sessions += sessions
        self._aftercare(shopper.person, [s for s in sessions if s.order is not None])

    def _purchase(self, shopper: _Shopper, ts: int, first: bool, at_join: bool) -> _Session:
        rng, person = self.rng, shopper.person
        join = first and at_join
        if join:
            channel = "web"
        elif rng.random() < shopper.store_share:
            channel = "store"
            ts = self._sample(person.market, ts - 3 * DAY_MS, ts + 3 * DAY_MS, "store")
        else:
            channel = "app" if person.app and rng.random() < 0.6 else "web"
        lines = self.picker.lines(rng, shopper.taste, shopper.staples)
        coupon = coupon_for(rng, ts, first and not shopper.preexisting, shopper.segment == "vip")
        order = open_order(rng, self.ids, person.market, channel, lines, coupon)
        session = _Session(ts, channel, person.market, person, None, 3, order, join=join)
        session.taste = shopper.taste
        return session

    def _browse_session(self, shopper: _Shopper, ts: int, join: bool = False) -> _Session:
        person = shopper.person
        kind = "app" if person.app and self.rng.random() < 0.55 else "web"
        depth = self.rng.choices((0, 1, 2), (0.7, 0.22, 0.08))[0]
        session = _Session(ts, kind, person.market, person, None, depth, join=join)
        session.taste = shopper.taste
        return session

    def _browsing(self, shopper: _Shopper, online_orders: int) -> list[_Session]:
        rng, market = self.rng, shopper.person.market
        months = (shopper.stop - shopper.join) / (30 * DAY_MS)
        count = poisson(rng, 0.15 + 0.3 * online_orders + 0.03 * months)
        if shopper.preexisting:
            count = max(count, 1)
        times = [self._sample(market, shopper.join, shopper.stop) for _ in range(count)]
        if not shopper.preexisting:  # anonymous visits before signing up
            early = [
                shopper.join - rng.randint(HOUR_MS, 30 * DAY_MS) for _ in range(poisson(rng, 0.6))
            ]
            times += [ts for ts in early if ts > self.cal.start_ms]
        return [self._browse_session(shopper, ts) for ts in times]

    def _assign_devices(self, shopper: _Shopper, sessions: list[_Session]) -> None:
        """Pick each web/app session's device and where identify calls happen."""
        rng, person = self.rng, shopper.person
        identified = shopper.preexisting
        known: set[str] = {person.web[0].anonymous_id} if identified else set()
        if identified and person.app and rng.random() < 0.8:
            known.add(person.app.anonymous_id)
        first = True
        for session in (s for s in sessions if s.kind in ("web", "app")):
            device = self._device(person, session, identified and not first)
            first = False
            session.device, session.known = device, device.anonymous_id in known
            session.kind = "app" if device.is_app else "web"
            if session.order is not None:
                session.order.channel = session.kind
            if session.known:
                continue
            if not identified and (session.join or session.order is not None):
                session.identify, identified = "signup", True
            elif identified and (
                session.order is not None or rng.random() < (0.8 if device.is_app else 0.3)
            ):
                session.identify = "login"
            if session.identify:
                known.add(device.anonymous_id)

    def _device(self, person: Person, session: _Session, free: bool) -> Device:
        if not free:
            return person.web[0]
        if session.kind == "app" and person.app is not None:
            return person.app
        if len(person.web) > 1 and self.rng.random() < 0.4:
            return person.web[1]
        return person.web[0]

    def _aftercare(self, person: Person, purchases: list[_Session]) -> None:
        """Cancellations, refunds (some after a support ticket) and other support contacts."""
        rng = self.rng
        for session in purchases:
            roll, store = rng.random(), session.kind == "store"
            if not store and roll < 0.02:
                self._follow_up(session, "cancel", rng.randint(600_000, 8 * HOUR_MS))
            elif roll < (0.04 if store else 0.09):
                delay = rng.randint(3 * DAY_MS, 35 * DAY_MS)
                self._follow_up(session, "refund", delay)
                if not store and rng.random() < 0.4:
                    self._follow_up(session, "support", delay - rng.randint(HOUR_MS, 2 * DAY_MS))
        if purchases and person.user_id and rng.random() < 0.12:
            for _ in range(rng.randint(1, 2)):
                ts = self._sample(person.market, purchases[0].ts, self.cal.last_ms)
                self.sessions.append(_Session(ts, "support", person.market, person))

    def _follow_up(self, session: _Session, kind: str, delay: int) -> None:
        ts = session.ts + delay
        if session.ts < ts < self.cal.last_ms:
            follow = _Session(ts, kind, session.market, session.person, order=session.order)
            self.sessions.append(follow)

    def _walk_in(self, person: Person) -> None:
        market = person.market
        for _ in range(1 + poisson(self.rng, 0.8)):
            ts = self._sample(market, self.cal.start_ms, self.cal.last_ms, "store")
            lines = self.picker.lines(self.rng, (), ())
            coupon = coupon_for(self.rng, ts, False, False)
            order = open_order(self.rng, self.ids, market, "store", lines, coupon)
            session = _Session(ts, "store", market, person, depth=3, order=order)
            self.sessions.append(session)
            self._aftercare(person, [session])

    def _second_appearance(self, person: Person, after: int) -> None:
        """A customer once more, some time after they joined: a second account shops like a
        customer; a guest browses a little and checks out on the web; a store shopper buys
        in a store."""
        if person.twin_kind == "account":
            self._customer(self._shopper(person, after=after))
            return
        rng, market, store = self.rng, person.market, person.twin_kind == "store"
        ts = self._sample(market, after + DAY_MS, self.cal.last_ms, "store" if store else "online")
        taste = tuple(rng.sample(CATEGORY_NAMES, rng.randint(1, 2)))
        lines = self.picker.lines(rng, taste, ())
        coupon = coupon_for(rng, ts, False, False)
        order = open_order(rng, self.ids, market, "store" if store else "web", lines, coupon)
        if store:
            session = _Session(ts, "store", market, person, depth=3, order=order)
        else:
            device = person.web[0]
            session = _Session(ts, "web", market, person, device, 3, order, identify="guest")
            session.taste = taste
            for _ in range(poisson(rng, 0.8)):  # looked around first
                early = ts - rng.randint(HOUR_MS, 14 * DAY_MS)
                if early > self.cal.start_ms:
                    depth = rng.choices((0, 1), (0.75, 0.25))[0]
                    browse = _Session(early, "web", market, person, device, depth)
                    browse.taste = taste
                    self.sessions.append(browse)
        self.sessions.append(session)
        self._aftercare(person, [session])

    def _visitor(self) -> None:
        rng = self.rng
        market = rng.choices(MARKETS, [m.share for m in MARKETS])[0]
        device = new_web_device(rng, market.country, mobile=rng.random() < 0.5)
        ts = self._sample(market, self.cal.start_ms, self.cal.last_ms, "acquire")
        for _ in range(1 + poisson(rng, 0.3)):
            depth = rng.choices((0, 1, 2), (0.8, 0.15, 0.05))[0]
            self.sessions.append(_Session(ts, "web", market, None, device, depth))
            ts += rng.randint(HOUR_MS, 40 * DAY_MS)
            if ts > self.cal.last_ms:
                break


# --------------------------------------------------------------------------- expansion


class _Tape:
    """Records one web/app session: advancing clock, identity state, current page."""

    def __init__(self, expander: _Expander, session: _Session, device: Device) -> None:
        rng = expander.rng
        self.x, self.s, self.device, self.ts = expander, session, device, session.ts
        self.currency = session.market.currency
        self.uid = session.person.user_id if session.known and session.person else None
        order = session.order
        self.cart_id = order.cart_id if order else f"cart_{rng.getrandbits(64):016x}"
        keep_ip = rng.random() < (0.85 if device.kind == "desktop" else 0.5)
        ip = device.ip if keep_ip else fake_ip(rng, session.market.country)
        self.ctx = device_context(device, session.market, ip)
        self.page: dict[str, str] = {}
        self.referrer = ""
        self.campaign: dict[str, str] | None = None
        self.out: list[Stamped] = []
        self.consent = expander.consent.device(device.anonymous_id, device.is_app, session.market)
        self.uid_sent = False  # a message carried the userId: the backend can name the person

    def context(self) -> dict[str, Any]:
        ctx = {
            key: dict(value) if type(value) is dict else value for key, value in self.ctx.items()
        }
        if not self.device.is_app:
            ctx["page"] = dict(self.page)
        if self.campaign:
            ctx["campaign"] = dict(self.campaign)
        if self.consent.preferences is not None or self.consent.gpc:
            ctx.update(self.consent.context())
        return ctx

    def emit(self, kind: str, body: Message, traits: dict[str, str] | None = None) -> None:
        rng = self.x.rng
        message: Message = {"type": kind, "messageId": new_uuid(self.x.rng)}
        message["timestamp"] = iso(self.ts)
        message["anonymousId"] = self.device.anonymous_id
        if self.uid:
            message["userId"] = self.uid
        if kind != "alias" and rng.random() < _JUNK_RATE:
            junk = rng.choice(JUNK_IDS)  # keep the other id valid
            message["anonymousId" if self.uid and rng.random() < 0.35 else "userId"] = junk
        self.uid_sent = self.uid_sent or (
            self.uid is not None and message.get("userId") == self.uid
        )
        message["context"] = self.context()
        if traits:
            message["context"]["traits"] = traits
        message.update(body)
        self.out.append((self.ts, message))
        self.ts += 2_000 + int(rng.random() * 68_000)

    def view(self, name: str, path: str, title: str, extra: Message | None = None) -> None:
        """A page call on the web, a screen call in the app."""
        if self.device.is_app:
            self.emit("screen", {"name": name, "properties": dict(extra or {})})
            return
        base, _, query = path.partition("?")
        referrer = self.page.get("url", self.referrer)
        search = f"?{query}" if query else ""
        url = f"{SHOP_URL}{path}"
        self.page = {"path": base, "referrer": referrer, "search": search, "title": title}
        self.page["url"] = url
        self.emit("page", {"name": name, "properties": {**self.page, **(extra or {})}})
        self.campaign = None

    def track(self, event: str, properties: Message, traits: dict[str, str] | None = None) -> None:
        self.emit("track", {"event": event, "properties": properties}, traits)

    def proof(self, source: str) -> Proof:
        """What a form submitted in this session proves: address, browser, page."""
        page = None if self.device.is_app else self.page.get("url")
        return Proof(source, self.ctx["ip"], self.device.user_agent, page)

    def product(self, product: Product, quantity: int = 1) -> Message:
        props = product_payload(product, self.currency, quantity, cart_id=self.cart_id)
        props["currency"] = self.currency
        return props


class _Expander:
    """Turns planned sessions into messages."""

    def __init__(self, seed: int, picker: ProductPicker, end_ms: int) -> None:
        self.rng = random.Random(f"consentry-demo-expand-{seed}")
        self.picker = picker
        self.consent = ConsentKeeper(seed, end_ms)
        self.paths = {
            p.product_id: f"p/{slug(p.name)}-{p.product_id.lower()}" for p in picker.catalog
        }

    def expand(self, session: _Session) -> list[Stamped]:
        if session.device is not None:
            return self._shop(session, session.device)
        if session.kind == "support":
            return self._support(session)
        assert session.order is not None and session.person is not None
        return self._server_side(session, session.order, session.person)

    # ------------------------------------------------------------------ web and app sessions

    def _shop(self, session: _Session, device: Device) -> list[Stamped]:
        tape = _Tape(self, session, device)
        self._land(tape)
        person = session.person
        if self.consent.banner(tape.consent, session.market, person.index if person else None):
            tape.track(PREFERENCE_EVENT, {})
        if session.identify == "login":
            self._login(tape)
        elif session.known and person and self.rng.random() < 0.3:
            tape.emit("identify", {"traits": login_traits(self.rng, person)})  # refresh
        viewed = self._browse(tape)
        if tape.uid_sent and person and not device.is_app:  # the footer's newsletter form
            tape.out += self.consent.footer(person, session.market, tape.ts, tape.proof("web_form"))
        if session.identify == "signup" and session.order is None:
            self._signup(tape)
        if session.depth >= 1:
            lines = self._cart(tape, viewed)
            if session.depth >= 2:
                self._checkout(tape, lines)
        if session.order is not None:
            if session.identify == "signup":
                self._signup(tape)
            elif session.identify == "guest":
                self._guest(tape)
            self._complete(tape, session.order)
        return tape.out

    def _land(self, tape: _Tape) -> None:
        rng, market = self.rng, tape.s.market
        tape.referrer, campaign = rng.choices(TRAFFIC_SOURCES, TRAFFIC_WEIGHTS)[0]
        query = ""
        if campaign and not tape.device.is_app:
            tape.campaign = campaign
            utm = {"utm_source": campaign["source"], "utm_medium": campaign["medium"]}
            query = "?" + urlencode({**utm, "utm_campaign": campaign["name"]})
        if rng.random() < 0.5:
            tape.view("Home", f"/{market.path}/{query}", SHOP_NAME)
            return
        category = rng.choice(tape.s.taste or CATEGORY_NAMES)
        path = f"/{market.path}/c/{slug(category)}{query}"
        tape.view("Category", path, f"{category} | {SHOP_NAME}", {"category": category})

    def _browse(self, tape: _Tape) -> list[Product]:
        rng, session = self.rng, tape.s
        wanted = [p for p, _ in session.order.lines] if session.order else []
        if rng.random() < 0.25:
            self._search(tape)
        extra = rng.randint(0, 1) if wanted else rng.randint(1, 3)
        viewed = [self.picker.pick(rng, session.taste) for _ in range(extra)] + wanted
        for product in viewed:
            path = f"/{session.market.path}/{self.paths[product.product_id]}"
            extras = {"product_id": product.product_id}
            tape.view("Product", path, f"{product.name} | {SHOP_NAME}", extras)
            tape.track("Product Viewed", tape.product(product))
        return viewed

    def _search(self, tape: _Tape) -> None:
        rng = self.rng
        words = self.picker.pick(rng, tape.s.taste).name.lower().split()
        query = " ".join(words[-rng.randint(1, min(2, len(words))) :])
        if rng.random() < 0.1 and len(query) > 4:  # typo
            cut = rng.randrange(1, len(query) - 1)
            query = query[:cut] + query[cut + 1 :]
        tape.track("Products Searched", {"query": query})
        path = f"/{tape.s.market.path}/search?q={quote_plus(query)}"
        tape.view("Search Results", path, f"Search: {query} | {SHOP_NAME}", {"query": query})

    def _cart(self, tape: _Tape, viewed: list[Product]) -> list[tuple[Product, int]]:
        rng, session, currency = self.rng, tape.s, tape.currency
        if session.order is not None:
            lines = session.order.lines
        else:
            lines = [(p, 1) for p in rng.sample(viewed, min(len(viewed), rng.randint(1, 2)))]
        for product, quantity in lines:
            tape.track("Product Added", tape.product(product, quantity))
        if rng.random() < 0.1:
            second_thoughts = self.picker.pick(rng)
            tape.track("Product Added", tape.product(second_thoughts))
            tape.track("Product Removed", tape.product(second_thoughts))
        if rng.random() < 0.5:  # otherwise the cart drawer, no page load
            tape.view("Cart", f"/{session.market.path}/cart", f"Cart | {SHOP_NAME}")
        props = {
            "cart_id": tape.cart_id,
            "value": lines_value(lines, currency),
            "currency": currency,
        }
        tape.track("Cart Viewed", {**props, "products": lines_payload(lines, currency)})
        return lines

    def _checkout(self, tape: _Tape, lines: list[tuple[Product, int]]) -> None:
        order, currency = tape.s.order, tape.currency
        value = lines_value(lines, currency)
        checkout_id = order.checkout_id if order else f"chk_{self.rng.getrandbits(64):016x}"
        props: Message = {"checkout_id": checkout_id, "cart_id": tape.cart_id, "value": value}
        props["revenue"] = order.revenue if order else value
        props.update(currency=currency, products=lines_payload(lines, currency))
        if order and order.coupon:
            props["coupon"] = order.coupon
        tape.view("Checkout", f"/{tape.s.market.path}/checkout", f"Checkout | {SHOP_NAME}")
        tape.track("Checkout Started", props)

    def _complete(self, tape: _Tape, order: Order) -> None:
        person = tape.s.person
        traits = {"email": person.email} if person and self.rng.random() < 0.6 else None
        tape.track("Order Completed", order_payload(order), traits)
        path = f"/{tape.s.market.path}/checkout/confirmation?order={order.order_id}"
        tape.view("Order Confirmation", path, f"Thank you | {SHOP_NAME}")

    def _signup(self, tape: _Tape) -> None:
        person = tape.s.person
        assert person is not None and person.user_id is not None
        traits = signup_traits(self.rng, person)
        traits["created_at"] = iso(tape.ts)
        tape.uid = person.user_id
        tape.emit("identify", {"traits": traits})
        tape.track("Signed Up", {"method": "checkout" if tape.s.order else "account_page"})
        if tape.uid_sent:  # the form's newsletter and SMS checkboxes, sent by the backend
            how = tape.proof("checkout" if tape.s.order else "web_form")
            phone = "phone" in traits
            tape.out += self.consent.signup(person, tape.s.market, tape.ts, phone, how)

    def _guest(self, tape: _Tape) -> None:
        """A checkout without an account: the form's traits on an anonymous identify."""
        person = tape.s.person
        assert person is not None
        tape.emit("identify", {"traits": guest_traits(self.rng, person)})

    def _login(self, tape: _Tape) -> None:
        person = tape.s.person
        assert person is not None and person.user_id is not None
        tape.uid = person.user_id
        if self.rng.random() < 0.08:
            tape.emit("alias", {"previousId": tape.device.anonymous_id})
        tape.emit("identify", {"traits": login_traits(self.rng, person)})

    # ------------------------------------------------------------------ server-side sources

    def _server(self, kind: str, ts: int, ids: dict[str, str], source: str, ip: str) -> Message:
        message: Message = {"type": kind, "messageId": new_uuid(self.rng), "timestamp": iso(ts)}
        message.update(ids)
        message["context"] = {"library": library(source), "ip": ip}
        return message

    def _support(self, session: _Session) -> list[Stamped]:
        """The support desk knows people by its own id and an email typed by an agent."""
        rng, person, order = self.rng, session.person, session.order
        assert person is not None
        ids = {"anonymousId": person.support_id}
        identify = self._server("identify", session.ts, ids, "server", _SUPPORT_IP)
        identify["traits"] = {"email": messy_email(rng, person.email)}
        ticket_ts = session.ts + rng.randint(1_000, 9_000)
        ticket = self._server("track", ticket_ts, ids, "server", _SUPPORT_IP)
        props = ticket_payload(rng, order.order_id if order else None)
        ticket.update(event="Ticket Created", properties=props)
        return [(session.ts, identify), (ticket_ts, ticket)]

    def _server_side(self, session: _Session, order: Order, person: Person) -> list[Stamped]:
        """Store purchases (POS) and back-office refunds and cancellations. A store shopper who
        fills in the loyalty form is identified by the till just before the purchase."""
        out: list[Stamped] = []
        ts = session.ts
        if order.store is None and person.user_id:
            ids = {"userId": person.user_id}
            message = self._server("track", ts, ids, "server", _SERVER_IP)
        elif order.store is None:  # a guest's order: the back office knows its checkout browser
            ids = {"anonymousId": person.web[0].anonymous_id}
            message = self._server("track", ts, ids, "server", _SERVER_IP)
        elif session.kind == "store" and person.twin_kind == "store":
            ids = {"anonymousId": order.pos_id}
            form = self._server("identify", ts, ids, "pos", order.store.ip)
            form["traits"] = store_form_traits(self.rng, person)
            out.append((ts, form))
            ts += self.rng.randint(20_000, 120_000)
            message = self._server("track", ts, ids, "pos", order.store.ip)
        else:
            ids = {"anonymousId": order.pos_id}
            message = self._server("track", ts, ids, "pos", order.store.ip)
            if order.contact != "none":
                message["context"]["traits"] = contact_traits(self.rng, person, order.contact)
        if session.kind == "refund":
            message.update(event="Order Refunded", properties=refund_payload(self.rng, order))
        elif session.kind == "cancel":
            message.update(event="Order Cancelled", properties=order_payload(order))
        else:
            message.update(event="Order Completed", properties=order_payload(order))
        out.append((ts, message))
        return out
