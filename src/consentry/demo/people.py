"""Fake people for the demo shop: identities, contact details written several ways, devices.

Faker is only used here, once per person, so generating events stays fast.  Phone numbers
come from ranges reserved for fiction (US 555-01xx, Ofcom drama numbers, ARCEP fiction
numbers, German film/TV ranges); every spelling parses to the same valid number.

A few registered customers (:data:`SECOND_APPEARANCE_SHARE`) show up a second time as someone
deterministic identity resolution cannot join to them: a guest checkout, a store purchase with
the loyalty form filled in by a clerk, or a second account, each with a new email, a new phone
or none, new devices and ids; but the same person's name (now and then with a typo, a nickname,
in capitals or with given name and surname swapped), birthday and address. Only probabilistic
de-duplication can find them.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from faker import Faker

from consentry.demo.catalog import MARKETS, Market

EMAIL_DOMAINS = ("example.com", "example.net", "example.org")

_US_AREA_CODES = (
    "201", "202", "206", "212", "213", "214", "215", "216", "303", "305", "310", "312",
    "313", "314", "404", "407", "408", "410", "412", "415", "425", "469", "503", "512",
    "602", "612", "614", "617", "619", "646", "650", "702", "704", "713", "718", "720",
    "773", "786", "813", "818", "858", "917", "949", "971",
)  # fmt: skip

# National formats of number ranges reserved for drama/fiction; # = a free digit.
_PHONE_BLOCKS: dict[str, tuple[str, ...]] = {
    "US": tuple(f"({npa}) 555-01##" for npa in _US_AREA_CODES),
    "GB": (
        "0113 496 0###", "0114 496 0###", "0116 496 0###", "0117 496 0###", "0118 496 0###",
        "0121 496 0###", "0131 496 0###", "0141 496 0###", "0151 496 0###", "0161 496 0###",
        "0191 498 0###", "020 7946 0###", "028 9649 6###", "029 2018 0###",
    ),
    "FR": ("01 99 00 ## ##", "02 61 91 ## ##", "03 53 01 ## ##", "04 65 71 ## ##",
           "05 36 49 ## ##"),
    "DE": ("030 23125###", "069 90009###", "040 66969###", "0221 4710###", "089 99998###"),
}  # fmt: skip
_CALLING_CODES = {"US": "1", "GB": "44", "FR": "33", "DE": "49"}

_DESKTOP_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/128.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.6 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:130.0) Gecko/20100101 Firefox/130.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/128.0.0.0 Safari/537.36 Edg/128.0.0.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/127.0.0.0 Safari/537.36",
)
_MOBILE_AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/128.0.6613.88 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/127.0.6533.103 Mobile Safari/537.36",
)
_IOS_MODELS = (("iPhone15,2", "17.6.1"), ("iPhone16,1", "18.0"), ("iPhone14,5", "17.5.1"))
_ANDROID_MODELS = (("Google", "Pixel 8", "14"), ("samsung", "SM-S918B", "14"))
_IP_FIRST_OCTETS: dict[str, tuple[int, ...]] = {
    "US": (23, 24, 50, 63, 66, 67, 68, 69, 71, 73, 75, 76, 96, 98, 99, 104, 107, 108),
    "GB": (2, 5, 31, 51, 62, 77, 81, 82, 86, 90, 92, 94),
    "DE": (2, 5, 37, 46, 77, 79, 80, 84, 87, 88, 91, 93),
    "FR": (2, 5, 37, 46, 77, 78, 80, 82, 83, 86, 88, 90),
}
APP_VERSION = ("3.4.1", "341")
_LIBRARIES = {
    "desktop": ("analytics.js", "next-1.70.0"),
    "mobile": ("analytics.js", "next-1.70.0"),
    "ios": ("analytics-ios", "4.1.8"),
    "android": ("analytics-android", "4.11.3"),
    "pos": ("analytics-python", "2.3.2"),
    "server": ("analytics-node", "2.1.2"),
}


@dataclass(slots=True)
class Device:
    """A browser or app install; ``anonymous_id`` is what the Segment library persists."""

    anonymous_id: str
    kind: str  # desktop | mobile | ios | android
    user_agent: str
    ip: str
    manufacturer: str = ""
    model: str = ""
    os_version: str = ""
    device_id: str = ""

    @property
    def is_app(self) -> bool:
        return self.kind in ("ios", "android")


@dataclass(slots=True)
class Person:
    """A shopper. ``user_id`` is None for store-only walk-in customers and for guests.

    A second appearance of the customer of index ``twin_of`` has a ``twin_kind``: ``guest``
    (a guest checkout on the web), ``store`` (a store purchase, loyalty form typed by a clerk)
    or ``account`` (a second registered account); its names and address are written as that
    appearance writes them.
    """

    index: int
    user_id: str | None
    market: Market
    first_name: str
    last_name: str
    email: str
    phone: str | None
    phone_spellings: tuple[str, ...]
    address: dict[str, str]
    birthday: str
    support_id: str
    web: list[Device] = field(default_factory=list)
    app: Device | None = None
    twin_of: int | None = None
    twin_kind: str = ""


def library(source: str) -> dict[str, str]:
    """``context.library`` for a device kind, ``pos`` (store tills) or ``server``."""
    name, version = _LIBRARIES[source]
    return {"name": name, "version": version}


def device_context(device: Device, market: Market, ip: str) -> dict[str, Any]:
    """Segment ``context`` a browser or app library sends (without page/campaign)."""
    ctx: dict[str, Any] = {"library": library(device.kind), "ip": ip}
    ctx.update(userAgent=device.user_agent, locale=market.language, timezone=market.timezone)
    if device.is_app:
        version, build = APP_VERSION
        namespace = "com.example.consentry.shop"
        ctx["app"] = {"name": "Consentry Shop", "version": version, "build": build}
        ctx["app"]["namespace"] = namespace
        ctx["device"] = {"id": device.device_id, "manufacturer": device.manufacturer}
        ctx["device"].update(model=device.model, type=device.kind)
        os_name = "iOS" if device.kind == "ios" else "Android"
        ctx["os"] = {"name": os_name, "version": device.os_version}
    return ctx


def new_uuid(rng: random.Random) -> str:
    """A random UUID v4 string, deterministic from ``rng`` (and fast)."""
    bits = rng.getrandbits
    return f"{bits(32):08x}-{bits(16):04x}-4{bits(12):03x}-{0x8000 | bits(14):04x}-{bits(48):012x}"


def fake_ip(rng: random.Random, country: str) -> str:
    first = rng.choice(_IP_FIRST_OCTETS[country])
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def new_web_device(rng: random.Random, country: str, mobile: bool) -> Device:
    agents = _MOBILE_AGENTS if mobile else _DESKTOP_AGENTS
    kind = "mobile" if mobile else "desktop"
    return Device(new_uuid(rng), kind, rng.choice(agents), fake_ip(rng, country))


def new_app_device(rng: random.Random, country: str) -> Device:
    version, build = APP_VERSION
    if rng.random() < 0.55:
        model, os_version = rng.choice(_IOS_MODELS)
        agent = f"ConsentryShop/{version} (iPhone; iOS {os_version}; Scale/3.00)"
        device_id = new_uuid(rng).upper()
        anonymous_id = new_uuid(rng).upper()
        ip = fake_ip(rng, country)
        return Device(anonymous_id, "ios", agent, ip, "Apple", model, os_version, device_id)
    maker, model, os_version = rng.choice(_ANDROID_MODELS)
    agent = f"Dalvik/2.1.0 (Linux; U; Android {os_version}; {model} Build/AP2A.240805.005)"
    device_id = f"{rng.getrandbits(64):016x}"
    return Device(
        new_uuid(rng), "android", agent, fake_ip(rng, country), maker, model, os_version, device_id
    )


class PhoneBook:
    """Hands out unique fictional phone numbers (national format) until a range runs low."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._taken: set[str] = set()

    def draw(self, country: str) -> str | None:
        for _ in range(12):
            number = "".join(
                str(self._rng.randrange(10)) if ch == "#" else ch
                for ch in self._rng.choice(_PHONE_BLOCKS[country])
            )
            if number not in self._taken:
                self._taken.add(number)
                return number
        return None


def phone_spellings(national: str, country: str) -> tuple[str, ...]:
    """One number as people and systems write it; E.164 first, then international, national,
    international with spaces, 00-prefixed and country-specific habits."""
    code = _CALLING_CODES[country]
    digits = "".join(ch for ch in national if ch.isdigit())
    if code == "1":
        e164, intl = f"+1{digits}", "+1 " + national.replace("(", "").replace(") ", "-")
    else:
        e164, intl = f"+{code}{digits[1:]}", f"+{code} {national[1:]}"
    spaced = intl.replace("-", " ")
    variants = [e164, intl, national, spaced, "00" + spaced[1:]]
    if code == "1":
        variants += [digits, f"{digits[:3]}.{digits[3:6]}.{digits[6:]}"]
    elif code == "33":
        variants.append(national.replace(" ", "."))
    else:
        variants.append(f"+{code} (0){national[1:]}")
    return tuple(dict.fromkeys(variants))


def ascii_fold(text: str) -> str:
    text = text.lower().replace("ß", "ss")
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded if ch.isalnum())


def make_email(rng: random.Random, first: str, last: str, taken: set[str]) -> str:
    given, family = ascii_fold(first) or "customer", ascii_fold(last) or "shopper"
    patterns = (
        f"{given}.{family}",
        f"{given}{family}",
        f"{given[0]}.{family}",
        f"{given}_{family}",
        f"{family}.{given}",
        f"{given}.{family}",
    )
    return _unique_email(rng, rng.choice(patterns), taken, suffixes=(1, 999))


def _unique_email(
    rng: random.Random, local: str, taken: set[str], suffixes: tuple[int, int]
) -> str:
    """``local`` at one of the mail domains, with a number from ``suffixes`` appended while
    the address was given out before; the address is taken from then on."""
    email = f"{local}@{rng.choice(EMAIL_DOMAINS)}"
    while email in taken:
        email = f"{local}{rng.randint(*suffixes)}@{rng.choice(EMAIL_DOMAINS)}"
    taken.add(email)
    return email


def messy_email(rng: random.Random, email: str) -> str:
    """The email as a support agent or clerk types it: different case, stray whitespace."""
    local, domain = email.split("@", 1)
    local = ".".join(part[:1].upper() + part[1:] for part in local.split("."))
    if rng.random() < 0.3:
        local = local.upper()
    name, _, tld = domain.partition(".")
    domain = rng.choice((f"{name.title()}.{tld.upper()}", domain.upper(), f"{name.title()}.{tld}"))
    pad_left, pad_right = rng.choice((("  ", ""), (" ", " "), ("", " "), ("", ""), ("\t", "")))
    return f"{pad_left}{local}@{domain}{pad_right}"


def invalid_email(rng: random.Random, email: str) -> str:
    """A typo'd or placeholder email of the kind shop staff and forms let through."""
    local, domain = email.split("@", 1)
    return rng.choice(
        (
            f"{local}@{domain.split('.')[0]}",
            f"{local}@@{domain}",
            f"{local}.{domain}",
            f"{local} @{domain}",
            "n/a",
            "none@none",
        )
    )


def _birthday(rng: random.Random) -> str:
    start, stop = date(1950, 1, 1).toordinal(), date(2006, 12, 31).toordinal()
    return date.fromordinal(rng.randint(start, stop)).isoformat()


class _NamePool:
    """A few hundred Faker values per field and locale, recombined per person (fast)."""

    def __init__(self, seed: int, market: Market, size: int) -> None:
        fake = Faker(market.locale)
        fake.seed_instance(seed)
        self.first = [fake.first_name() for _ in range(size)]
        self.last = [fake.last_name() for _ in range(size)]
        self.street = [fake.street_address() for _ in range(size)]
        self.city = [fake.city() for _ in range(size // 2 + 1)]
        self.postcode = [fake.postcode() for _ in range(size)]
        us = market.country == "US"
        self.state = [fake.state_abbr(include_territories=False) for _ in range(50 if us else 0)]

    def address(self, rng: random.Random, country: str) -> dict[str, str]:
        address = {"street": rng.choice(self.street), "city": rng.choice(self.city)}
        if self.state:
            address["state"] = rng.choice(self.state)
        address["postal_code"] = rng.choice(self.postcode)
        address["country"] = country
        return address


def _attach_devices(rng: random.Random, person: Person) -> None:
    country = person.market.country
    person.web.append(new_web_device(rng, country, mobile=rng.random() < 0.3))
    if rng.random() < 0.45:
        person.web.append(new_web_device(rng, country, mobile=person.web[0].kind != "mobile"))
    if rng.random() < 0.35:
        person.app = new_app_device(rng, country)


# --------------------------------------------------------------------------- second appearances

#: Share of the registered customers who show up a second time as an unlinked profile.
SECOND_APPEARANCE_SHARE = 0.035
_TWIN_KINDS = ("guest", "store", "account")
_TWIN_WEIGHTS = (0.4, 0.35, 0.25)
_NICKNAMES = {
    "Alexander": "Alex", "Alexandra": "Alex", "Alexandre": "Alex", "Andrew": "Andy",
    "Anthony": "Tony", "Benjamin": "Ben", "Catherine": "Cathy", "Christian": "Chris",
    "Christina": "Tina", "Christine": "Tina", "Christophe": "Chris", "Christopher": "Chris",
    "Daniel": "Dan", "Daniela": "Dani", "David": "Dave", "Deborah": "Debbie", "Donald": "Don",
    "Edward": "Ed", "Elizabeth": "Liz", "Frederic": "Fred", "Frédéric": "Fred",
    "Gregory": "Greg", "James": "Jim", "Jennifer": "Jenny", "Jessica": "Jess",
    "Johannes": "Hannes", "Jonathan": "Jon", "Joseph": "Joe", "Joshua": "Josh",
    "Katharina": "Kathi", "Katherine": "Kate", "Kenneth": "Ken", "Margaret": "Maggie",
    "Matthew": "Matt", "Maximilian": "Max", "Michael": "Mike", "Nicholas": "Nick",
    "Nicolas": "Nico", "Patricia": "Pat", "Rebecca": "Becky", "Richard": "Rick",
    "Robert": "Bob", "Samantha": "Sam", "Samuel": "Sam", "Stephanie": "Steph",
    "Stephen": "Steve", "Steven": "Steve", "Susan": "Sue", "Theodor": "Theo",
    "Thomas": "Tom", "Timothy": "Tim", "Victoria": "Vicky", "William": "Bill",
}  # fmt: skip
_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe",
                                  "Ü": "Ue", "ß": "ss"})  # fmt: skip
# How else a street gets written: abbreviations, and a flat on one line.
_STREET_SPELLINGS = (
    (re.compile(r"\bApt\. "), "#"),
    (re.compile(r"\bSuite\b"), "Ste"),
    (re.compile(r"\n"), ", "),
    (re.compile(r"straße\b"), "str."),
    (re.compile(r"Straße\b"), "Str."),
    (re.compile(r"\bavenue\b"), "av."),
    (re.compile(r"\bboulevard\b"), "bd"),
)


def typo(rng: random.Random, word: str) -> str:
    """``word`` with one slip of the fingers (two letters swapped, one dropped or doubled),
    never in its first letter; words shorter than four letters stay as they are."""
    spots = [i for i in range(1, len(word) - 1) if word[i].isalpha() and word[i + 1].isalpha()]
    if len(word) < 4 or not spots:
        return word
    i = rng.choice(spots)
    slip = rng.randrange(3)
    if slip == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if slip == 1:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i] + word[i:]


def name_variant(rng: random.Random, first: str, last: str) -> tuple[str, str]:
    """The name as the person (or a form) writes it another time: mostly the same, sometimes
    with a typo in the surname, an umlaut spelled out, a nickname, or the two swapped."""
    roll = rng.random()
    if roll < 0.3:
        spelled_out = last.translate(_TRANSLITERATION)
        if spelled_out != last and rng.random() < 0.6:
            return first, spelled_out
        return first, typo(rng, last)
    if roll < 0.5:
        return _NICKNAMES.get(first) or typo(rng, first), last
    if roll < 0.58:
        return last, first
    return first, last


def address_variant(rng: random.Random, address: dict[str, str]) -> dict[str, str]:
    """The same address, its street sometimes abbreviated."""
    out = dict(address)
    if rng.random() < 0.5:
        street = out["street"]
        for pattern, spelling in _STREET_SPELLINGS:
            street = pattern.sub(spelling, street)
        out["street"] = street
    return out


def second_email(rng: random.Random, first: str, last: str, birthday: str, taken: set[str]) -> str:
    """A new address of a person who already has one: other patterns, often with the birth
    year, never an address given out before."""
    given, family = ascii_fold(first) or "customer", ascii_fold(last) or "shopper"
    nick = ascii_fold(_NICKNAMES.get(first, "")) or given[0]
    year = birthday[:4]
    patterns = (
        f"{given}{family}{year[2:]}",
        f"{given}.{family}.{year}",
        f"{given[0]}{family}{year[2:]}",
        f"{family}{given}",
        f"{nick}.{family}",
        f"{given}{rng.randint(2, 99)}",
    )
    return _unique_email(rng, rng.choice(patterns), taken, suffixes=(100, 9999))


class _PersonFactory:
    def __init__(self, seed: int, rng: random.Random, size: int) -> None:
        self.rng = rng
        self.pools = {
            m.country: _NamePool(seed * 31 + offset, m, size) for offset, m in enumerate(MARKETS)
        }
        self.phones = PhoneBook(rng)
        self.emails: set[str] = set()
        self.user_ids: set[str] = set()

    def _user_id(self) -> str:
        while (user_id := f"cus_{self.rng.getrandbits(48):012x}") in self.user_ids:
            pass
        self.user_ids.add(user_id)
        return user_id

    def make(self, index: int, registered: bool) -> Person:
        rng = self.rng
        market = rng.choices(MARKETS, weights=[m.share for m in MARKETS])[0]
        pool = self.pools[market.country]
        first, last = rng.choice(pool.first), rng.choice(pool.last)
        phone = self.phones.draw(market.country) if rng.random() < 0.78 else None
        spellings = phone_spellings(phone, market.country) if phone else ()
        person = Person(
            index=index,
            user_id=self._user_id() if registered else None,
            market=market,
            first_name=first,
            last_name=last,
            email=make_email(rng, first, last, self.emails),
            phone=spellings[0] if spellings else None,
            phone_spellings=spellings,
            address=pool.address(rng, market.country),
            birthday=_birthday(rng),
            support_id=f"zd_{rng.randrange(10**11, 10**12)}",
        )
        if registered:
            _attach_devices(rng, person)
        return person

    def second_appearance(self, index: int, original: Person) -> Person:
        """``original`` once more, unlinkable by identifiers: a new email, a new phone or
        none, new ids and devices; the same birthday and address, the name written again."""
        rng, market = self.rng, original.market
        kind = rng.choices(_TWIN_KINDS, _TWIN_WEIGHTS)[0]
        first, last = name_variant(rng, original.first_name, original.last_name)
        address = address_variant(rng, original.address)
        if kind == "store":  # the clerk types in capitals
            first, last = first.upper(), last.upper()
            address = {k: v if k == "country" else v.upper() for k, v in address.items()}
        phone = self.phones.draw(market.country) if rng.random() < 0.25 else None
        spellings = phone_spellings(phone, market.country) if phone else ()
        email = second_email(
            rng, original.first_name, original.last_name, original.birthday, self.emails
        )
        person = Person(
            index=index,
            user_id=self._user_id() if kind == "account" else None,
            market=market,
            first_name=first,
            last_name=last,
            email=email,
            phone=spellings[0] if spellings else None,
            phone_spellings=spellings,
            address=address,
            birthday=original.birthday,
            support_id=f"zd_{rng.randrange(10**11, 10**12)}",
            twin_of=original.index,
            twin_kind=kind,
        )
        if kind == "account":
            _attach_devices(rng, person)
        elif kind == "guest":
            person.web.append(new_web_device(rng, market.country, mobile=rng.random() < 0.5))
        return person


def build_people(seed: int, rng: random.Random, customers: int, walk_ins: int) -> list[Person]:
    """``customers`` registered shoppers, then ``walk_ins`` store-only shoppers, then the
    second appearances of :data:`SECOND_APPEARANCE_SHARE` of the registered shoppers (in the
    order of their originals)."""
    factory = _PersonFactory(seed, rng, size=min(300, 20 + (customers + walk_ins) // 4))
    people = [factory.make(i, registered=True) for i in range(customers)]
    people += [factory.make(customers + i, registered=False) for i in range(walk_ins)]
    twice = sorted(rng.sample(range(customers), round(customers * SECOND_APPEARANCE_SHARE)))
    index = customers + walk_ins
    people += [factory.second_appearance(index + k, people[i]) for k, i in enumerate(twice)]
    return people


# --------------------------------------------------------------------------- traits


def signup_traits(rng: random.Random, person: Person) -> dict[str, Any]:
    """Everything a shopper types into the registration or checkout form."""
    email = person.email if rng.random() > 0.015 else invalid_email(rng, person.email)
    traits: dict[str, Any] = {
        "email": email,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "address": dict(person.address),
    }
    if person.phone_spellings and rng.random() < 0.85:
        # E.164, international or national, as typed
        traits["phone"] = rng.choices(person.phone_spellings[:3], (0.4, 0.25, 0.35))[0]
    if rng.random() < 0.75:
        traits["birthday"] = person.birthday
    return traits


def guest_traits(rng: random.Random, person: Person) -> dict[str, Any]:
    """The guest checkout form: contact, name and delivery address; the birthday field (for
    a birthday voucher) is optional."""
    traits: dict[str, Any] = {
        "email": person.email,
        "first_name": person.first_name,
        "last_name": person.last_name,
        "address": dict(person.address),
    }
    if person.phone_spellings:
        traits["phone"] = rng.choice(person.phone_spellings[:3])
    if rng.random() < 0.6:
        traits["birthday"] = person.birthday
    return traits


def store_form_traits(rng: random.Random, person: Person) -> dict[str, Any]:
    """The store's loyalty form, typed in by the clerk at the till."""
    email = person.email if rng.random() < 0.6 else messy_email(rng, person.email)
    traits: dict[str, Any] = {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "email": email,
        "address": dict(person.address),
    }
    if person.phone_spellings:
        usable = [p for p in person.phone_spellings if p.startswith(("+", "00"))]
        traits["phone"] = rng.choice(usable)
    if rng.random() < 0.9:
        traits["birthday"] = person.birthday
    return traits


def login_traits(rng: random.Random, person: Person) -> dict[str, str]:
    traits = {"email": person.email}
    if rng.random() < 0.5:
        traits.update(first_name=person.first_name, last_name=person.last_name)
    return traits


def contact_traits(rng: random.Random, person: Person, how: str) -> dict[str, str]:
    """What a store customer tells the clerk: ``how`` is email, phone or both."""
    traits = {}
    if how in ("email", "both") or not person.phone_spellings:
        roll = rng.random()
        email = person.email if roll < 0.6 else messy_email(rng, person.email)
        traits["email"] = invalid_email(rng, person.email) if roll > 0.95 else email
    if how in ("phone", "both") and person.phone_spellings:
        # tills prefix the country code for foreign numbers; US numbers come in any spelling
        us = person.market.country == "US"
        usable = [p for p in person.phone_spellings if us or p.startswith(("+", "00"))]
        traits["phone"] = rng.choice(usable)
    return traits


_TOPICS = ("Delivery status", "Product question", "Account access", "Payment issue")


def ticket_payload(rng: random.Random, order_id: str | None) -> dict[str, str]:
    """``Ticket Created`` properties from the support desk."""
    props = {"ticket_id": str(rng.randrange(100_000, 999_999))}
    props["topic"] = "Return request" if order_id else rng.choice(_TOPICS)
    props["channel"] = rng.choice(("email", "chat", "phone"))
    if order_id:
        props["order_id"] = order_id
    return props
