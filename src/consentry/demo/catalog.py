"""Static reference data for the demo shop: markets, stores and the product catalogue.

Everything here is deterministic and independent of the generator seed, so the same
product ids, SKUs and prices exist in every generated data set.
"""

from __future__ import annotations

import bisect
import calendar
import math
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from itertools import accumulate
from typing import Any

SHOP_NAME = "Consentry Demo Shop"
SHOP_URL = "https://shop.example.com"


@dataclass(frozen=True, slots=True)
class Market:
    """A country storefront: locale, currency, tax and local time."""

    country: str
    locale: str
    language: str
    currency: str
    fx_per_usd: float
    tax_rate: float
    shipping_fee: float
    free_shipping_from: float
    utc_offset_hours: int
    timezone: str
    path: str
    share: float


MARKETS: tuple[Market, ...] = (
    Market(
        "US", "en_US", "en-US", "USD", 1.0, 0.08, 5.95, 75.0, -5, "America/New_York", "us", 0.42
    ),
    Market("GB", "en_GB", "en-GB", "GBP", 0.79, 0.20, 3.95, 50.0, 0, "Europe/London", "uk", 0.20),
    Market("DE", "de_DE", "de-DE", "EUR", 0.92, 0.19, 4.95, 60.0, 1, "Europe/Berlin", "de", 0.22),
    Market("FR", "fr_FR", "fr-FR", "EUR", 0.92, 0.20, 4.95, 60.0, 1, "Europe/Paris", "fr", 0.16),
)

#: Units of each currency per US dollar (prices are list prices per storefront).
FX_PER_USD: dict[str, float] = {m.currency: m.fx_per_usd for m in MARKETS}


@dataclass(frozen=True, slots=True)
class Store:
    """A physical store with a point-of-sale system sending server-side events."""

    store_id: str
    name: str
    country: str
    ip: str


STORES: tuple[Store, ...] = (
    Store("store-nyc-01", "New York SoHo", "US", "198.51.100.11"),
    Store("store-sfo-01", "San Francisco Union Square", "US", "198.51.100.12"),
    Store("store-lon-01", "London Covent Garden", "GB", "198.51.100.21"),
    Store("store-man-01", "Manchester Spinningfields", "GB", "198.51.100.22"),
    Store("store-ber-01", "Berlin Mitte", "DE", "198.51.100.31"),
    Store("store-muc-01", "München Maxvorstadt", "DE", "198.51.100.32"),
    Store("store-par-01", "Paris Le Marais", "FR", "198.51.100.41"),
    Store("store-lyo-01", "Lyon Presqu'île", "FR", "198.51.100.42"),
)


#: (referrer, utm campaign) of landing pages, and how often each occurs.
TRAFFIC_SOURCES: tuple[tuple[str, dict[str, str] | None], ...] = (
    ("", None),
    ("https://www.google.com/", None),
    ("https://www.google.com/", {"source": "google", "medium": "cpc", "name": "brand_search"}),
    ("https://www.instagram.com/", {"source": "instagram", "medium": "social", "name": "lookbook"}),
    ("", {"source": "newsletter", "medium": "email", "name": "weekly_digest"}),
)
TRAFFIC_WEIGHTS = (0.34, 0.3, 0.1, 0.1, 0.16)


@dataclass(frozen=True, slots=True)
class Product:
    """One catalogue item; ``prices`` maps currency code to list price."""

    product_id: str
    sku: str
    name: str
    category: str
    brand: str
    prices: dict[str, float] = field(hash=False, compare=False)
    replenish_days: int | None = None
    popularity: float = 1.0

    @property
    def replenishable(self) -> bool:
        return self.replenish_days is not None


@dataclass(frozen=True, slots=True)
class _CategorySpec:
    name: str
    code: str
    count: int
    price_range: tuple[float, float]
    replenish_days: int | None
    brands: tuple[str, ...]
    adjectives: tuple[str, ...]
    nouns: tuple[str, ...]


# fmt: off
_CATEGORIES: tuple[_CategorySpec, ...] = (
    _CategorySpec(
        "Apparel", "APP", 30, (19, 149), None,
        ("Northwind", "Fieldhouse", "Marlowe", "Lumen & Co"),
        ("Classic", "Organic", "Relaxed", "Essential", "Heritage", "Lightweight", "Everyday"),
        ("T-Shirt", "Oxford Shirt", "Hoodie", "Crewneck Sweater", "Chinos", "Slim Jeans",
         "Linen Shirt", "Polo", "Rain Jacket", "Puffer Vest", "Merino Cardigan", "Summer Dress",
         "Wrap Skirt", "Joggers"),
    ),
    _CategorySpec(
        "Shoes", "SHO", 22, (49, 219), None,
        ("Stride", "Kettle Run", "Alder"),
        ("Court", "Urban", "Weekend", "All-Terrain", "Minimal", "Retro"),
        ("Runner", "Leather Sneaker", "Chelsea Boot", "Loafer", "Trail Shoe", "Canvas Slip-On",
         "Sandal", "Hiking Boot"),
    ),
    _CategorySpec(
        "Accessories", "ACC", 24, (9, 189), None,
        ("Halden", "Marlowe", "Lumen & Co"),
        ("Classic", "Merino", "Leather", "Signature", "Travel", "Everyday"),
        ("Scarf", "Belt", "Beanie", "Sunglasses", "Watch", "Cap", "Gloves", "Wallet",
         "Card Holder", "Socks 3-Pack"),
    ),
    _CategorySpec(
        "Bags", "BAG", 14, (29, 249), None,
        ("Halden", "Roamwell"),
        ("Canvas", "Leather", "Weatherproof", "Compact", "City"),
        ("Backpack", "Tote", "Weekender", "Crossbody Bag", "Laptop Sleeve", "Duffel"),
    ),
    _CategorySpec(
        "Home", "HOM", 22, (15, 180), None,
        ("Hearth & Pine", "Casa Lume", "Nordhem"),
        ("Linen", "Stoneware", "Woven", "Washed", "Nordic", "Hand-Poured"),
        ("Throw Blanket", "Duvet Cover", "Vase", "Candle", "Cushion Cover", "Bath Towel Set",
         "Table Lamp", "Wall Print"),
    ),
    _CategorySpec(
        "Kitchen", "KIT", 20, (12, 160), None,
        ("Casa Lume", "Brightfork"),
        ("Professional", "Cast Iron", "Stoneware", "Olive Wood", "Enamel"),
        ("Chef's Knife", "Skillet", "Pour-Over Set", "Mug", "Salad Bowl", "Cutting Board",
         "Espresso Cups", "Dutch Oven"),
    ),
    _CategorySpec(
        "Beauty", "BEA", 26, (8, 68), 50,
        ("Aurelle", "Verdant Skin", "Maison Clair"),
        ("Hydrating", "Brightening", "Gentle", "Overnight", "Daily", "Repair"),
        ("Face Cream", "Vitamin C Serum", "Cleanser", "Lip Balm", "Sunscreen SPF 50",
         "Eye Cream", "Clay Mask", "Toner"),
    ),
    _CategorySpec(
        "Personal Care", "PER", 20, (4, 32), 35,
        ("Purewell", "Verdant Skin", "Oak & Tide"),
        ("Sensitive", "Fresh", "Natural", "Sport", "Unscented"),
        ("Shampoo", "Conditioner", "Body Wash", "Deodorant", "Toothpaste", "Hand Soap",
         "Razor Blades 8-Pack", "Body Lotion"),
    ),
    _CategorySpec(
        "Pantry", "PAN", 18, (6, 38), 28,
        ("Roast Republic", "Tea Atelier", "Good Grain"),
        ("Organic", "Single-Origin", "Fair-Trade", "House", "Small-Batch"),
        ("Coffee Beans 1kg", "Ground Coffee", "Green Tea", "Earl Grey", "Granola",
         "Dark Chocolate", "Olive Oil", "Hot Chocolate"),
    ),
    _CategorySpec(
        "Outdoor", "OUT", 18, (12, 190), None,
        ("Roamwell", "Summit Line"),
        ("Insulated", "Packable", "Trail", "Ultralight", "Expedition"),
        ("Water Bottle", "Camping Mug", "Daypack", "Rain Poncho", "Trekking Poles",
         "Picnic Blanket", "Headlamp"),
    ),
)
# fmt: on

CATEGORY_NAMES: tuple[str, ...] = tuple(c.name for c in _CATEGORIES)


def _usd_price(rng: random.Random, low: float, high: float) -> float:
    value = float(low * (high / low) ** rng.random())
    if value < 100:
        return round(max(round(value) - 0.01, 0.99), 2)
    return round(round(value / 5) * 5 - 0.01, 2)


def local_prices(usd: float) -> dict[str, float]:
    """List price per currency, rounded to the usual .99 endings."""
    prices = {}
    for market in MARKETS:
        local = round(max(round(usd * market.fx_per_usd), 1) - 0.01, 2)
        prices[market.currency] = usd if market.fx_per_usd == 1.0 else local
    return prices


def _unique_name(rng: random.Random, spec: _CategorySpec, taken: set[str]) -> str:
    for _ in range(50):
        name = f"{rng.choice(spec.adjectives)} {rng.choice(spec.nouns)}"
        if name not in taken:
            return name
    return f"{rng.choice(spec.adjectives)} {rng.choice(spec.nouns)} {len(taken)}"


def _category_products(rng: random.Random, spec: _CategorySpec, first: int) -> list[Product]:
    taken: set[str] = set()
    products = []
    for offset in range(spec.count):
        number = first + offset
        name = _unique_name(rng, spec, taken)
        taken.add(name)
        replenish = spec.replenish_days
        products.append(
            Product(
                product_id=f"P{number}",
                sku=f"{spec.code}-{number}-{rng.choice(('BLK', 'NVY', 'NAT', 'GRY', 'STD'))}",
                name=name,
                category=spec.name,
                brand=rng.choice(spec.brands),
                prices=local_prices(_usd_price(rng, *spec.price_range)),
                replenish_days=None if replenish is None else replenish + rng.randint(-7, 14),
                popularity=round(1.0 / (1 + offset) ** 0.8, 4),
            )
        )
    rng.shuffle(products)
    return products


@cache
def build_catalog() -> tuple[Product, ...]:
    """The fixed catalogue of ~200 products in 10 categories (same for every seed)."""
    rng = random.Random(20261101)
    products: list[Product] = []
    for spec in _CATEGORIES:
        products.extend(_category_products(rng, spec, 1001 + len(products)))
    return tuple(products)


def slug(text: str) -> str:
    """URL slug for product and category pages."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# --------------------------------------------------------------------------- seasonality

DAY_MS = 86_400_000
HOUR_MS = 3_600_000

_MONTH_FACTOR = (0.86, 0.8, 0.9, 0.95, 0.97, 0.82, 0.74, 0.78, 0.95, 1.05, 1.7, 1.85)
_WEEKDAY_ONLINE = (1.08, 1.0, 0.98, 0.97, 0.9, 0.85, 1.12)
_WEEKDAY_STORE = (0.8, 0.8, 0.85, 0.95, 1.2, 1.7, 0.35)
_HOURS_ONLINE = (
    0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 0.9, 1.2, 1.4, 1.5, 1.6,
    1.9, 1.8, 1.5, 1.5, 1.6, 1.8, 2.0, 2.4, 2.7, 2.6, 1.8, 0.9,
)  # fmt: skip
_HOURS_STORE = (0,) * 10 + (0.6, 1.0, 1.3, 1.4, 1.2, 1.3, 1.5, 1.6, 1.3, 0.7) + (0,) * 4
_GROWTH = 1.8  # new-customer arrivals per day at the end of the window vs. the start
_HOLIDAYS = {(12, 24): 0.6, (12, 25): 0.25, (12, 26): 1.3, (1, 1): 0.4}


@lru_cache(maxsize=8192)
def _iso_minute(minute: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:", time.gmtime(minute * 60))


def iso(ms: int) -> str:
    """Segment timestamp: ISO 8601 UTC with milliseconds and ``Z``."""
    minute, rest = divmod(ms, 60_000)
    return f"{_iso_minute(minute)}{rest // 1000:02d}.{rest % 1000:03d}Z"


def to_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def shift_months(moment: datetime, months: int) -> datetime:
    """``moment`` moved by whole calendar months, clamping the day (Mar 31 - 1 -> Feb 28)."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    last_day = calendar.monthrange(year, month + 1)[1]
    return moment.replace(year=year, month=month + 1, day=min(moment.day, last_day))


def black_friday(year: int) -> date:
    first = date(year, 11, 1)
    return first + timedelta(days=(3 - first.weekday()) % 7 + 22)


def _special(day: date, store: bool) -> float:
    friday = black_friday(day.year)
    if day == friday:
        return 2.4 if store else 3.2
    if day == friday + timedelta(days=3):
        return 1.0 if store else 2.6
    return _HOLIDAYS.get((day.month, day.day), 1.0)


def _day_weight(day: date, store: bool) -> float:
    weekday = (_WEEKDAY_STORE if store else _WEEKDAY_ONLINE)[day.weekday()]
    return _MONTH_FACTOR[day.month - 1] * weekday * _special(day, store)


def poisson(rng: random.Random, lam: float) -> int:
    """A Poisson draw (normal approximation for large ``lam``)."""
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, count, product = math.exp(-max(lam, 0.0)), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class Calendar:
    """Seasonal timestamp sampling over ``[start, end)``: month, weekday, holidays, hour."""

    def __init__(self, start: datetime, end: datetime) -> None:
        self.start_ms, self.end_ms = to_ms(start), to_ms(end)
        self.last_ms = max(self.start_ms, self.end_ms - 2 * HOUR_MS)  # latest session start
        first = start.date()
        self.day0_ms = to_ms(datetime(first.year, first.month, first.day, tzinfo=UTC))
        days = [first + timedelta(days=i) for i in range((end.date() - first).days + 2)]
        online = [_day_weight(d, False) for d in days]
        ramp = [1 + (_GROWTH - 1) * i / len(days) for i in range(len(days))]
        self.online = list(accumulate(online, initial=0.0))
        self.store = list(accumulate((_day_weight(d, True) for d in days), initial=0.0))
        self.acquire = list(
            accumulate((w * r for w, r in zip(online, ramp, strict=True)), initial=0.0)
        )
        self.online_hours = list(accumulate(_HOURS_ONLINE, initial=0.0))
        self.store_hours = list(accumulate(_HOURS_STORE, initial=0.0))
        self.month_starts = [self.start_ms]
        cursor = datetime(start.year, start.month, 1, tzinfo=UTC)
        while (cursor := shift_months(cursor, 1)) < end:
            self.month_starts.append(to_ms(cursor))

    def sample(
        self, rng: random.Random, lo: int, hi: int, utc_offset: int, kind: str = "online"
    ) -> int:
        """A timestamp in ``[lo, hi]`` (clamped to the window); ``kind``: online|store|acquire.

        Days are drawn by seasonal weight, the hour by local hour-of-day weight.
        """
        lo, hi = max(lo, self.start_ms), min(hi, self.last_ms)
        if hi <= lo:
            return max(self.start_ms, min(lo, self.last_ms))
        cum = self.store if kind == "store" else self.acquire if kind == "acquire" else self.online
        lo_day = (lo - self.day0_ms) // DAY_MS
        hi_day = (hi - self.day0_ms) // DAY_MS + 1
        point = cum[lo_day] + rng.random() * (cum[hi_day] - cum[lo_day])
        day = min(bisect.bisect_right(cum, point, lo_day, hi_day + 1) - 1, hi_day - 1)
        hours = self.store_hours if kind == "store" else self.online_hours
        hour = bisect.bisect_right(hours, rng.random() * hours[-1]) - 1
        stamp = self.day0_ms + day * DAY_MS + (hour - utc_offset) * HOUR_MS
        stamp += int(rng.random() * HOUR_MS)
        return stamp if lo <= stamp <= hi else lo + int(rng.random() * (hi - lo))


# --------------------------------------------------------------------------- orders


def money(value: float) -> float:
    return round(value + 1e-9, 2)


@dataclass(slots=True)
class Order:
    """A priced order: ``revenue = subtotal - discount``, ``total = revenue + shipping + tax``."""

    order_id: str
    checkout_id: str
    cart_id: str
    channel: str  # web | app | store
    market: Market
    lines: list[tuple[Product, int]]
    coupon: str | None
    subtotal: float
    discount: float
    revenue: float
    shipping: float
    tax: float
    total: float
    store: Store | None = None
    pos_id: str = ""
    contact: str = ""  # store orders: email | phone | both | none


def price_order(
    ids: tuple[str, str, str],
    market: Market,
    channel: str,
    lines: list[tuple[Product, int]],
    coupon: tuple[str | None, float],
) -> Order:
    """Price ``lines`` in the market's currency; ``ids`` = (order, checkout, cart)."""
    subtotal = lines_value(lines, market.currency)
    discount = money(subtotal * coupon[1])
    revenue = money(subtotal - discount)
    free = channel == "store" or coupon[0] == "FREESHIP" or revenue >= market.free_shipping_from
    shipping = 0.0 if free else market.shipping_fee
    tax = money(revenue * market.tax_rate)
    total = money(revenue + shipping + tax)
    code = coupon[0]
    return Order(
        *ids, channel, market, lines, code, subtotal, discount, revenue, shipping, tax, total
    )


def open_order(
    rng: random.Random,
    taken: set[str],
    market: Market,
    channel: str,
    lines: list[tuple[Product, int]],
    coupon: tuple[str | None, float],
) -> Order:
    """A new priced order with unique id; store orders get a store, POS id and contact."""
    while (order_id := f"{channel[0].upper()}{rng.randrange(10**7, 10**8)}") in taken:
        pass
    taken.add(order_id)
    ids = (order_id, f"chk_{rng.getrandbits(64):016x}", f"cart_{rng.getrandbits(64):016x}")
    order = price_order(ids, market, channel, lines, coupon)
    if channel == "store":
        order.store = rng.choice([s for s in STORES if s.country == market.country])
        order.pos_id = f"pos_{order.store.store_id}_{rng.getrandbits(40):010x}"
        order.contact = rng.choices(("email", "phone", "both", "none"), (5, 3, 1.2, 0.8))[0]
    return order


def coupon_for(rng: random.Random, ts: int, first: bool, vip: bool) -> tuple[str | None, float]:
    """A seasonal, welcome or VIP coupon code and its discount rate (or no coupon)."""
    day = datetime.fromtimestamp(ts / 1000, UTC).date()
    friday = black_friday(day.year)
    roll = rng.random()
    if friday - timedelta(days=7) <= day <= friday + timedelta(days=4) and roll < 0.45:
        return "BLACKFRIDAY25", 0.25
    if day.month == 12 and day.day <= 23 and roll < 0.2:
        return "XMAS15", 0.15
    if day.month == 7 and roll < 0.2:
        return "SUMMER20", 0.2
    if first and roll < 0.3:
        return "WELCOME10", 0.1
    if vip and roll < 0.3:
        return "VIP15", 0.15
    return ("FREESHIP", 0.0) if roll > 0.96 else (None, 0.0)


class ProductPicker:
    """Popularity-weighted product choice, optionally biased to preferred categories."""

    def __init__(self, catalog: tuple[Product, ...]) -> None:
        self.catalog = catalog
        self.cum = list(accumulate(p.popularity for p in catalog))
        self.by_category = {c: [p for p in catalog if p.category == c] for c in CATEGORY_NAMES}
        self.category_cum = {
            c: list(accumulate(p.popularity for p in products))
            for c, products in self.by_category.items()
        }

    def pick(self, rng: random.Random, taste: tuple[str, ...] = ()) -> Product:
        if taste and rng.random() < 0.7:
            products = self.by_category[category := rng.choice(taste)]
            cum = self.category_cum[category]
        else:
            products, cum = list(self.catalog), self.cum
        return products[bisect.bisect(cum, rng.random() * cum[-1])]

    def staples(self, rng: random.Random, taste: tuple[str, ...]) -> tuple[Product, ...]:
        """Replenishable favourites a shopper keeps re-buying (often none)."""
        replenishable = [c for c in CATEGORY_NAMES if self.by_category[c][0].replenishable]
        liked = [c for c in taste if c in replenishable]
        if not liked and rng.random() < 0.7:
            return ()
        category = rng.choice(liked or replenishable)
        return tuple(self.pick(rng, (category,)) for _ in range(rng.randint(1, 2)))

    def lines(
        self, rng: random.Random, taste: tuple[str, ...], staples: tuple[Product, ...]
    ) -> list[tuple[Product, int]]:
        """1-5 distinct products with quantities; a staple is often re-bought."""
        count = rng.choices((1, 2, 3, 4, 5), (0.55, 0.27, 0.11, 0.05, 0.02))[0]
        chosen = {p.product_id: p for p in (self.pick(rng, taste) for _ in range(count))}
        if staples and rng.random() < 0.5:
            staple = rng.choice(staples)
            chosen = {staple.product_id: staple, **chosen}
        lines = []
        for product in list(chosen.values())[:count]:
            weights = (0.7, 0.22, 0.08) if product.replenishable else (0.92, 0.07, 0.01)
            lines.append((product, rng.choices((1, 2, 3), weights)[0]))
        return lines


def product_payload(product: Product, currency: str, quantity: int, **extra: Any) -> dict[str, Any]:
    """E-commerce spec v2 product properties."""
    return {
        "product_id": product.product_id,
        "sku": product.sku,
        "name": product.name,
        "category": product.category,
        "brand": product.brand,
        "price": product.prices[currency],
        "quantity": quantity,
        **extra,
    }


def lines_value(lines: list[tuple[Product, int]], currency: str) -> float:
    return money(sum(p.prices[currency] * q for p, q in lines))


def lines_payload(lines: list[tuple[Product, int]], currency: str) -> list[dict[str, Any]]:
    return [product_payload(p, currency, q, position=i) for i, (p, q) in enumerate(lines, 1)]


def order_payload(order: Order) -> dict[str, Any]:
    """``Order Completed`` / ``Order Cancelled`` properties (plus custom ``channel``)."""
    currency = order.market.currency
    affiliation = order.store.name if order.store else f"{SHOP_NAME} {order.market.country}"
    props: dict[str, Any] = {
        "order_id": order.order_id,
        "checkout_id": order.checkout_id,
        "affiliation": affiliation,
        "total": order.total,
        "revenue": order.revenue,
        "shipping": order.shipping,
        "tax": order.tax,
        "discount": order.discount,
        "currency": currency,
        "products": lines_payload(order.lines, currency),
        "channel": order.channel,
    }
    if order.coupon:
        props["coupon"] = order.coupon
    if order.store:
        props["store_id"] = order.store.store_id
    return props


def refund_payload(rng: random.Random, order: Order) -> dict[str, Any]:
    """``Order Refunded``: full refunds (products optional) or partial ones with products."""
    currency, lines = order.market.currency, order.lines
    props: dict[str, Any] = {"order_id": order.order_id, "total": order.total}
    props["currency"] = currency
    if len(lines) > 1 and rng.random() < 0.5:
        lines = rng.sample(lines, rng.randint(1, len(lines) - 1))
        share = lines_value(lines, currency) / (order.subtotal or 1.0)
        props["total"] = money(share * (order.revenue + order.tax))
        props["products"] = lines_payload(lines, currency)
    elif rng.random() < 0.3:
        props["products"] = lines_payload(lines, currency)
    return props


def usd_rates() -> dict[str, float]:
    """US dollars per unit of each storefront's currency (the shop's own fixed rates), for the
    analytics of the demo, which report in USD."""
    return {m.currency: round(1 / m.fx_per_usd, 6) for m in MARKETS if m.currency != "USD"}
