"""Shared data for the matching tests: one Faker-made set of people, deduplicated once."""

from __future__ import annotations

import pytest

from consentry.matching import MatchSettings, RecordBatch, dedupe
from consentry.matching.dedupe import DedupeResult
from tests.matching.synthetic import People, people


@pytest.fixture(scope="session")
def crowd() -> People:
    return people(2000, duplicate_share=0.1, seed=7)


@pytest.fixture(scope="session")
def crowd_batch(crowd: People) -> RecordBatch:
    return RecordBatch.from_records(crowd.records)


@pytest.fixture(scope="session")
def crowd_result(crowd_batch: RecordBatch) -> DedupeResult:
    return dedupe(crowd_batch, MatchSettings(workers=1))
