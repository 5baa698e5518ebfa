"""Generated shoppers with planted duplicates, as Segment identify calls (Faker, seeded).

Every person has a userId, names, an email, most a phone, a birthday and a postal address. A
duplicate is the same person under another userId, with no email or phone in common with the
original (else deterministic resolution would already have joined them at ingestion). Each kind
is a way the same person shows up again in a shop:

- ``typo``: a typo in the surname, no email or phone (an order taken by phone);
- ``swapped``: first and last name swapped, a new email, no phone;
- ``new_email``: a new email at another provider and a new phone number, all else the same;
- ``store``: a till in the shop: names in capitals, the address, nothing else;
- ``nickname_moved``: a typo in the given name, a new email, the same phone digits but one.

``truth`` maps each userId to the person it is; true pairs are the userIds of one person.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import phonenumbers
from faker import Faker

from tests.support.segment import identify

KINDS = ("typo", "swapped", "new_email", "store", "nickname_moved", "sparse")
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def typo(rng: random.Random, value: str) -> str:
    """Change one inner letter (the first stays: people rarely get it wrong)."""
    i = rng.randrange(1, len(value) - 1) if len(value) > 2 else len(value) - 1
    kind = rng.randrange(3)
    if kind == 0:
        letter = rng.choice([c for c in LETTERS if c != value[i].lower()])
        return value[:i] + letter + value[i + 1 :]
    if kind == 1:
        return value[:i] + value[i + 1 :]
    return value[:i] + rng.choice(LETTERS) + value[i:]


def us_phone(rng: random.Random) -> str:
    """A valid US number in E.164."""
    while True:
        number = f"+1{rng.choice(['212', '415', '646', '312', '617'])}{rng.randrange(2, 10)}"
        number += "".join(rng.choice("0123456789") for _ in range(6))
        if phonenumbers.is_valid_number(phonenumbers.parse(number)):
            return number


def other_phone(rng: random.Random, phone: str) -> str:
    """A valid number one digit away from ``phone``."""
    while True:
        i = rng.randrange(len(phone) - 4, len(phone))
        candidate = (
            phone[:i] + rng.choice([d for d in "0123456789" if d != phone[i]]) + phone[i + 1 :]
        )
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            return candidate


@dataclass
class Shop:
    messages: list[dict[str, Any]] = field(default_factory=list)
    truth: dict[str, int] = field(default_factory=dict)  # userId -> person
    kinds: dict[str, str] = field(default_factory=dict)  # duplicate userId -> kind
    traits: dict[str, dict[str, Any]] = field(default_factory=dict)  # userId -> traits

    def true_pairs(self) -> set[frozenset[str]]:
        by_person: dict[int, list[str]] = {}
        for user, person in self.truth.items():
            by_person.setdefault(person, []).append(user)
        return {
            frozenset((x, y))
            for users in by_person.values()
            for i, x in enumerate(users)
            for y in users[i + 1 :]
        }


def shop(
    people: int, *, duplicates: int, namesakes: int = 0, seed: int = 3, prefix: str = ""
) -> Shop:
    """``people`` shoppers, then ``duplicates`` of them again (cycling through the kinds), then
    ``namesakes``: other people (guest checkouts) with the first and last name of a shopper
    and nothing else in common."""
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    given = sorted({fake.first_name() for _ in range(150)})
    surnames = sorted({fake.last_name() for _ in range(300)})
    streets = sorted({fake.street_name() for _ in range(200)})
    places = [(fake.city(), fake.postcode()) for _ in range(60)]
    out = Shop()
    used_emails: set[str] = set()
    base: list[dict[str, Any]] = []
    for i in range(people):
        first, last = rng.choice(given), rng.choice(surnames)
        domain = rng.choice(["gmail.com", "yahoo.com", "outlook.com"])
        email = f"{first}.{last}{rng.randrange(1000)}@{domain}".lower()
        while email in used_emails:
            email = "x" + email
        used_emails.add(email)
        city, postcode = rng.choice(places)
        traits: dict[str, Any] = {
            "first_name": first,
            "last_name": last,
            "email": email,
            "birthday": fake.date_of_birth(minimum_age=18, maximum_age=85).isoformat(),
            "address": {
                "street": f"{rng.randrange(1, 400)} {rng.choice(streets)}",
                "city": city,
                "postalCode": postcode,
                "country": "US",
            },
        }
        if rng.random() < 0.8:
            traits["phone"] = us_phone(rng)
        if i % 3 == 0:  # the Segment spec's spellings
            traits["firstName"] = traits.pop("first_name")
            traits["lastName"] = traits.pop("last_name")
        user = f"{prefix}p-{i}"
        out.truth[user] = i
        out.traits[user] = traits
        out.messages.append(identify(userId=user, traits=traits))
        base.append(traits)
    for k in range(duplicates):
        source = rng.randrange(people)
        kind = KINDS[k % len(KINDS)]
        original = base[source]
        first = original.get("first_name") or original["firstName"]
        last = original.get("last_name") or original["lastName"]
        address = dict(original["address"])
        traits = {"first_name": first, "last_name": last, "address": address}
        domain = rng.choice(["icloud.com", "proton.me"])
        new_email = f"{first[0]}{last}{rng.randrange(100, 999)}@{domain}".lower()
        if kind == "typo":
            traits["last_name"] = typo(rng, last)
            traits["birthday"] = original["birthday"]
        elif kind == "swapped":
            traits["first_name"], traits["last_name"] = last, first
            traits["birthday"] = original["birthday"]
            traits["email"] = new_email
        elif kind == "new_email":
            traits["birthday"] = original["birthday"]
            traits["email"] = new_email
            traits["phone"] = other_phone(rng, original.get("phone") or us_phone(rng))
        elif kind == "store":
            traits["first_name"], traits["last_name"] = first.upper(), last.upper()
        elif kind == "sparse":
            traits = {"last_name": last, "address": {"city": address["city"]}}
        else:  # nickname_moved
            traits["first_name"] = typo(rng, first)
            traits["birthday"] = original["birthday"]
            traits["email"] = new_email
            if original.get("phone"):
                traits["phone"] = other_phone(rng, original["phone"])
        if "email" in traits:
            while traits["email"] in used_emails:
                traits["email"] = "y" + traits["email"]
            used_emails.add(traits["email"])
        user = f"{prefix}d-{k}"
        out.truth[user] = source
        out.kinds[user] = kind
        out.traits[user] = traits
        out.messages.append(identify(anonymousId=user, traits=traits))
    for k in range(namesakes):
        source = rng.randrange(people)
        original = base[source]
        city, postcode = rng.choice([p for p in places if p[0] != original["address"]["city"]])
        first = original.get("first_name") or original["firstName"]
        last = original.get("last_name") or original["lastName"]
        traits = {
            "first_name": first,
            "last_name": last,
            "email": f"{last}.{k}.{rng.randrange(10**6)}@fastmail.com".lower(),
            "birthday": fake.date_of_birth(minimum_age=18, maximum_age=85).isoformat(),
            "address": {
                "street": f"{rng.randrange(400, 900)} {rng.choice(streets)}",
                "city": city,
                "postalCode": postcode,
                "country": "US",
            },
        }
        user = f"{prefix}n-{k}"
        out.truth[user] = people + k
        out.kinds[user] = "namesake"
        out.traits[user] = traits
        out.messages.append(identify(anonymousId=user, traits=traits))
    return out
