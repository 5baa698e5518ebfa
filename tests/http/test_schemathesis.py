"""Property-based run of the whole OpenAPI schema against the in-process app, on both stores.

Schemathesis generates requests for every operation of the schema, with a real write key on the
ingestion routes and a real admin token on the admin routes, so requests get past authentication
and reach the services and the store. Four passes per operation, where they apply:

- ``positive``: data that fits the schema; ``negative``: data that does not;
- ``seeded``: path parameters naming a profile and an order that exist, so the 360 view, the
  timeline (with fuzzed cursors) and the trait history run on real rows;
- ``segment-spec``: ingestion bodies repaired to satisfy the rules the JSON schema cannot say
  (userId or anonymousId, event of a track, ...), so fuzzed traits, properties, context and
  timestamps reach the store and the processor.

No request may end in a 5xx, every documented response must match its schema, and afterwards
every stored event must have been applied to profiles (processing runs after the 200, in the
ingest writer, so its failures are invisible to HTTP). Example counts are bounded and
derandomized, so a CI run is stable and takes well under a minute per backend.

Operations are driven one by one with ``APIOperation.as_strategy``: the lazy pytest loader of
schemathesis 4.32 (``schemathesis.pytest.from_fixture``) fails on pytest 9 with
``'Function' object has no attribute '_nodeid'``. Every failure is collected and reported
together, each with a curl command that reproduces it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from consentry.api import create_app
from consentry.config import Settings
from consentry.ingest import service as ingest
from consentry.platform.db import Database
from tests.support.segment import basic, bearer, identify, track

INGEST_CALLS = ("batch", "identify", "track", "page", "screen", "group", "alias")
INGEST_PATHS = frozenset(f"/v1/{call}" for call in INGEST_CALLS)
CHECKS = [not_a_server_error, response_schema_conformance]
# Per operation and pass; the API has ~110 operations on two stores, so these are kept small
# enough for the suite's 10-minute budget (new routes get a deeper one-off pass when written).
EXAMPLES = {"positive": 8, "negative": 4, "seeded": 6, "segment-spec": 20}
# What the Segment spec requires beyond the JSON schema, with a value to fill in when missing.
REQUIRED_BY_TYPE = {
    "track": {"event": "Fuzzed Event"},
    "alias": {"previousId": "fuzz-previous", "userId": "fuzz-user"},
    "group": {"groupId": "fuzz-group"},
}
Strategy = hypothesis.strategies.SearchStrategy[Case]


@dataclass(frozen=True)
class Seeded:
    """An app whose workspace holds a known profile and order."""

    app: FastAPI
    path_parameters: dict[str, str]


def seed(app: FastAPI, write_key: str, admin_token: str) -> dict[str, str]:
    """A profile with traits, events and an order; return path parameters naming them."""
    messages = [
        identify(userId="seed-user", anonymousId="seed-anon", traits={"email": "s@example.com"}),
        track("Order Completed", userId="seed-user", properties={"order_id": "seed-1", "total": 9}),
    ]
    with TestClient(app) as client:
        sent = client.post("/v1/batch", json={"batch": messages}, headers=basic(write_key))
        assert sent.status_code == 200, sent.text
        app.state.ingest_writer.settle()
        found = client.get(
            "/v1/profiles", params={"user_id": "seed-user"}, headers=bearer(admin_token)
        )
        assert found.status_code == 200, found.text
    profile_id = found.json()["profiles"][0]["id"]
    return {"profile_id": profile_id, "order_id": "seed-1"}


@pytest.fixture
def seeded(settings: Settings, db: Database, write_key: str, admin_token: str) -> Seeded:
    app = create_app(settings, db)
    return Seeded(app, seed(app, write_key, admin_token))


def repaired(body: Any, kind: str | None) -> dict[str, Any]:
    """A generated message with the spec's cross-field rules satisfied; other fields kept."""
    message = dict(body) if isinstance(body, dict) else {}
    kind = kind or message.get("type") or "track"
    message["type"] = kind
    if not (message.get("userId") or message.get("anonymousId")):
        message["userId"] = "fuzz-user"
    for name, value in REQUIRED_BY_TYPE.get(kind, {}).items():
        if not message.get(name):
            message[name] = value
    return message


def with_body(case: Case, body: Any) -> Case:
    case.body = body
    return case


def spec_cases(operation: APIOperation, schema: schemathesis.BaseSchema) -> Strategy:
    """Cases of an ingestion operation whose messages follow the Segment spec."""
    kind = operation.path.rsplit("/", 1)[1]
    if kind != "batch":
        return operation.as_strategy().map(lambda c: with_body(c, repaired(c.body, kind)))
    one = schema["/v1/track"]["POST"].as_strategy().map(lambda c: repaired(c.body, None))
    return st.tuples(operation.as_strategy(), st.lists(one, min_size=1, max_size=5)).map(
        lambda pair: with_body(pair[0], {**(pair[0].body or {}), "batch": pair[1]})
    )


def passes(
    operation: APIOperation, schema: schemathesis.BaseSchema, known: dict[str, str]
) -> dict[str, Strategy]:
    """The strategies that apply to ``operation``, by pass name."""
    out: dict[str, Strategy] = {
        "positive": operation.as_strategy(GenerationMode.POSITIVE),
        "negative": operation.as_strategy(GenerationMode.NEGATIVE),
    }
    names = re.findall(r"{(\w+)}", operation.path)
    if names and all(n in known for n in names):
        fixed = {n: known[n] for n in names}
        out["seeded"] = operation.as_strategy(path_parameters=fixed)
    if operation.path in INGEST_PATHS:
        out["segment-spec"] = spec_cases(operation, schema)
    return out


def fuzz(strategy: Strategy, examples: int, headers: dict[str, str]) -> None:
    """Run ``examples`` derandomized cases; raise on the first failure (shrunk)."""

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking: bounded
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def run(case: Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    run()


def describe(exc: BaseException) -> str:
    """The message of a failure, or of each failure Hypothesis found."""
    if isinstance(exc, BaseExceptionGroup):
        return "\n---\n".join(describe(e) for e in exc.exceptions)
    return str(exc)


def test_no_server_errors_and_responses_match_the_schema(
    seeded: Seeded,
    db: Database,
    workspace: str,
    write_key: str,
    admin_token: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", seeded.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16, [op.label for op in operations]
    failures: list[str] = []
    with caplog.at_level(logging.ERROR, logger="consentry"):
        for operation in operations:
            ingest_route = operation.path in INGEST_PATHS
            headers = basic(write_key) if ingest_route else bearer(admin_token)
            for name, strategy in passes(operation, schema, seeded.path_parameters).items():
                try:
                    fuzz(strategy, EXAMPLES[name], headers)
                except hypothesis.errors.Unsatisfiable:
                    assert name == "negative", operation.label  # nothing there to get wrong
                except Exception as exc:  # noqa: BLE001 - every operation's failure is reported
                    failures.append(f"{operation.label} ({name}):\n{describe(exc)}")
        seeded.app.state.ingest_writer.settle()
    assert not failures, "\n\n".join(failures)
    with db.read() as session:
        pending = ingest.pending_count(session=session, workspace_id=workspace)
    logged = "\n".join(r.getMessage() + "\n" + (r.exc_text or "") for r in caplog.records)
    assert pending == 0, f"{pending} stored events were never applied:\n{logged}"


@pytest.mark.parametrize(
    "dates",
    [
        {"timestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"},
        {"timestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00Z"},
        {"timestamp": "0001-01-01T00:00:00+01:00"},
        {"timestamp": "9999-12-31T23:59:59-01:00"},
        {"timestamp": "1000-01-01T00:00:00Z", "sentAt": "9000-01-01T00:00:00Z"},
    ],
    ids=[
        "skew-below-year-1",
        "skew-above-year-9999",
        "offset-below-year-1",
        "offset-above-9999",
        "skew-of-8000-years",
    ],
)
def test_extreme_timestamps_are_refused_not_500(
    settings: Settings, db: Database, write_key: str, dates: dict[str, str]
) -> None:
    """Found by the segment-spec pass (it overflowed the clock-skew correction): a 400 naming
    the field, never a 500."""
    body = {"type": "track", "userId": "u-dates", "event": "Dated", **dates}
    with TestClient(create_app(settings, db), raise_server_exceptions=False) as client:
        response = client.post("/v1/track", json=body, headers=basic(write_key))
    assert response.status_code == 400, response.text
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields & set(dates), response.text


@pytest.mark.parametrize(
    "body",
    [
        {"type": "track", "userId": "u\u0000", "event": "E"},
        {"type": "track", "userId": "u", "event": "E", "properties": {"a": [1, "x\u0000"]}},
        {"type": "track", "userId": "u", "event": "E", "context": {"k\u0000": 1}},
    ],
    ids=["user-id", "nested-list", "key"],
)
def test_nul_characters_are_refused_on_every_store(
    client: TestClient, write_key: str, admin_token: str, body: dict[str, Any]
) -> None:
    """Found on PostgreSQL, which cannot store U+0000: refused with the field named, on both."""
    raw = json.dumps(body).encode()  # json escapes the NUL as \u0000
    assert b"\\u0000" in raw
    for path in ("/v1/track", "/v1/batch"):
        data = raw if path == "/v1/track" else b'{"batch": [' + raw + b"]}"
        response = client.post(
            path, content=data, headers={**basic(write_key), "content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        error = response.json()["errors"][0]
        assert "NUL" in error["reason"], error
    counts = client.get("/v1/workspace", headers=bearer(admin_token)).json()["counts"]
    assert counts["events"] == 0
