"""Synthetic people with injected duplicates, made with Faker (seeded): no network, no files.

Keys come out as the matching code expects them: lower-cased strings, ``None`` for missing.
``entity[id]`` says which person a record is, so true pairs are those of equal entity.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from faker import Faker

LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass
class People:
    records: list[dict[str, str | None]]
    entity: dict[str, int]

    def true_pairs(self) -> set[tuple[str, str]]:
        by_entity: dict[int, list[str]] = {}
        for rid, e in self.entity.items():
            by_entity.setdefault(e, []).append(rid)
        out = set()
        for ids in by_entity.values():
            for i, x in enumerate(ids):
                for y in ids[i + 1 :]:
                    out.add((min(x, y), max(x, y)))
        return out

    def duplicates_per_entity(self) -> Counter[int]:
        return Counter(self.entity.values())


def typo(rng: random.Random, value: str) -> str:
    """One random edit: substitute, insert, delete or swap two neighbours."""
    if len(value) < 2:
        return value + rng.choice(LETTERS)
    i = rng.randrange(len(value) - 1)
    kind = rng.randrange(4)
    if kind == 0:
        return value[:i] + rng.choice(LETTERS) + value[i + 1 :]
    if kind == 1:
        return value[:i] + rng.choice(LETTERS) + value[i:]
    if kind == 2:
        return value[:i] + value[i + 1 :]
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :]


def digit_typo(rng: random.Random, value: str) -> str:
    i = rng.randrange(len(value))
    if rng.random() < 0.5 and i < len(value) - 1:
        return value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    return value[:i] + rng.choice("0123456789") + value[i + 1 :]


class Pools:
    """Names, streets and cities drawn once from Faker (its slow calls), then picked from with
    skewed weights, so that some names are common and some rare, as in life."""

    def __init__(self, fake: Faker, rng: random.Random, size: int = 400) -> None:
        self.rng = rng
        self.given = sorted({fake.first_name().lower() for _ in range(size)})
        self.surname = sorted({fake.last_name().lower() for _ in range(size)})
        self.street = sorted({fake.street_name().lower() for _ in range(size)})
        self.city = sorted({fake.city().lower() for _ in range(size)})
        self.emails: set[tuple[str, str]] = set()

    def pick(self, pool: list[str]) -> str:
        # Zipf-like: index ~ size * u^2 favours the first entries.
        return pool[int(len(pool) * self.rng.random() ** 2)]


def person(fake: Faker, rng: random.Random, pools: Pools) -> dict[str, str | None]:
    given = pools.pick(pools.given)
    surname = pools.pick(pools.surname)
    local = rng.choice(
        [f"{given}.{surname}", f"{given[0]}{surname}", f"{given}{rng.randrange(100)}"]
    )
    domain = fake.free_email_domain()
    while (local, domain) in pools.emails:  # an address belongs to one person
        local += str(rng.randrange(10))
    pools.emails.add((local, domain))
    return {
        "given_name": given,
        "surname": surname,
        "email_local": local,
        "email_domain": domain,
        "phone": "+1" + "".join(rng.choice("0123456789") for _ in range(10)),
        "birth_date": fake.date_of_birth(minimum_age=18, maximum_age=90).strftime("%Y%m%d"),
        "street_number": fake.building_number(),
        "street": pools.pick(pools.street),
        "postcode": fake.postcode(),
        "city": pools.pick(pools.city),
        "national_id": fake.ssn().replace("-", "") if rng.random() < 0.6 else None,
    }


def corrupt(
    fake: Faker, rng: random.Random, pools: Pools, record: dict[str, str | None]
) -> dict[str, str | None]:
    out = dict(record)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(9)
        if kind == 0:
            field = rng.choice(["given_name", "surname", "street", "city"])
            if out[field]:
                out[field] = typo(rng, out[field])  # type: ignore[arg-type]
        elif kind == 1:
            out["given_name"], out["surname"] = out["surname"], out["given_name"]
        elif kind == 2:
            field = rng.choice(["email_local", "phone", "national_id", "street", "given_name"])
            out[field] = None
        elif kind == 3:
            other = fake.free_email_domain()
            if (out["email_local"], other) not in pools.emails:  # addresses are one person's
                out["email_domain"] = other
                pools.emails.add((out["email_local"], other))  # type: ignore[arg-type]
        elif kind == 4 and out["phone"]:
            out["phone"] = digit_typo(rng, out["phone"])
        elif kind == 5 and out["birth_date"]:
            out["birth_date"] = digit_typo(rng, out["birth_date"])
        elif kind == 6 and out["postcode"]:
            out["postcode"] = digit_typo(rng, out["postcode"])
        elif kind == 7:  # moved house
            out["street_number"] = fake.building_number()
            out["street"] = pools.pick(pools.street)
            out["postcode"] = fake.postcode()
            out["city"] = pools.pick(pools.city)
        elif kind == 8 and out["email_local"]:
            out["email_local"] = typo(rng, out["email_local"])
    return out


def people(n: int, duplicate_share: float = 0.1, seed: int = 0) -> People:
    """``n`` distinct people, then ``duplicate_share * n`` corrupted copies of random ones."""
    fake = Faker("en_US")
    fake.seed_instance(seed)
    rng = random.Random(seed)
    records: list[dict[str, str | None]] = []
    entity: dict[str, int] = {}
    pools = Pools(fake, rng)
    for i in range(n):
        record = person(fake, rng, pools)
        record["id"] = f"p{i}"
        records.append(record)
        entity[f"p{i}"] = i
    for k in range(int(n * duplicate_share)):
        source = rng.randrange(n)
        record = corrupt(fake, rng, pools, records[source])
        record["id"] = f"d{k}"
        records.append(record)
        entity[f"d{k}"] = source
    rng.shuffle(records)
    return People(records, entity)
