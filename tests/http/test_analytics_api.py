"""The analytics API through the real app, on both stores: a run, each metric endpoint,
marketing spend (JSON and CSV) feeding acquisition cost, scopes, and bad input as 4xx."""

from __future__ import annotations

from fastapi.testclient import TestClient

from consentry.platform import tenancy
from consentry.platform.db import Database
from tests.analytics.shop import AS_OF, START, generate
from tests.support.segment import bearer
from tests.support.store import profile_of, send

BASE = "/v1/analytics"
RANGE = {"since": START.isoformat(), "until": AS_OF.isoformat()}


def _token(db: Database, workspace: str, role: tenancy.Role) -> dict[str, str]:
    with db.write() as session:
        issued = tenancy.issue_key(
            session=session, workspace_id=workspace, kind="token", name=role.value, role=role
        )
    return bearer(issued.secret)


def test_run_then_read_every_metric(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    send(db, workspace, *generate(customers=120, seed=11).messages)
    auth = bearer(admin_token)
    assert client.get(f"{BASE}/runs/latest", headers=auth).status_code == 404
    run = client.post(f"{BASE}/runs", json={"as_of": AS_OF.isoformat()}, headers=auth)
    assert run.status_code == 200, run.text
    report = run.json()
    assert report["customers"] > 100 and report["models"]["fitted"] is True
    assert client.get(f"{BASE}/runs/latest", headers=auth).json()["run_id"] == report["run_id"]

    grid = client.get(f"{BASE}/rfm", headers=auth).json()
    assert sum(map(sum, grid["grid"])) == report["customers"]
    clv = client.get(f"{BASE}/clv", params={"bins": 10}, headers=auth).json()
    assert clv["customers"] == report["customers"] and len(clv["bins"]) == 10
    assert sum(b["customers"] for b in clv["bins"]) == clv["customers"]
    churn = client.get(f"{BASE}/churn", params={"min_risk": 0.2}, headers=auth).json()
    risks = [c["churn_risk"] for c in churn["customers"]]
    assert risks and all(r >= 0.2 for r in risks)
    at_stake = [c["clv"] * c["churn_risk"] for c in churn["customers"]]
    assert at_stake == sorted(at_stake, reverse=True)

    person = profile_of(db, workspace, user_id="u3").id
    one = client.get(f"{BASE}/customers/{person}", headers=auth).json()
    assert one["rfm"]["segment"] and 0 <= one["p_alive"] <= 1
    assert client.get(f"{BASE}/customers/nobody", headers=auth).status_code == 404

    kpis = client.get(f"{BASE}/kpis", params={**RANGE, "interval": "month"}, headers=auth).json()
    assert kpis["totals"]["orders"] == sum(p["orders"] for p in kpis["periods"]) > 0
    cohorts = client.get(f"{BASE}/cohorts", params=RANGE, headers=auth).json()
    assert sum(c["customers"] for c in cohorts["cohorts"]) == kpis["totals"]["customers"]


def test_marketing_spend_gives_acquisition_cost(
    client: TestClient, db: Database, workspace: str, admin_token: str
) -> None:
    send(db, workspace, *generate(customers=40, seed=12).messages)
    auth = bearer(admin_token)
    put = client.put(
        f"{BASE}/spend",
        json={"entries": [{"month": "2025-03", "channel": "Ads", "amount": "300.00"}]},
        headers=auth,
    )
    assert put.status_code == 200, put.text
    csv_body = "month,channel,amount\n2025-03,email,100\n2025-04,ads,50.5\n"
    posted = client.post(
        f"{BASE}/spend.csv", content=csv_body, headers={**auth, "Content-Type": "text/csv"}
    )
    assert posted.json() == {"recorded": 2}
    listed = client.get(f"{BASE}/spend", headers=auth).json()["entries"]
    assert [(e["month"], e["channel"], e["amount"]) for e in listed] == [
        ("2025-03", "ads", 300.0),
        ("2025-03", "email", 100.0),
        ("2025-04", "ads", 50.5),
    ]
    kpis = client.get(f"{BASE}/kpis", params=RANGE, headers=auth).json()
    march = next(p for p in kpis["periods"] if p["period"] == "2025-03-01")
    assert march["marketing_spend"] == 400.0
    if march["new_customers"]:
        assert march["customer_acquisition_cost"] == round(40_000 / march["new_customers"]) / 100


def test_bad_input_is_a_4xx_naming_the_field(
    client: TestClient, workspace: str, admin_token: str
) -> None:
    auth = bearer(admin_token)
    bad = client.put(
        f"{BASE}/spend",
        json={"entries": [{"month": "2025-13", "channel": "", "amount": "-1"}]},
        headers=auth,
    )
    assert bad.status_code == 400
    fields = {e["field"] for e in bad.json()["errors"]}
    assert fields == {"entries.0.month", "entries.0.channel", "entries.0.amount"}
    csv_bad = client.post(
        f"{BASE}/spend.csv",
        content="month,channel\n2025-01,ads\n",
        headers={**auth, "Content-Type": "text/csv"},
    )
    assert csv_bad.status_code == 400 and csv_bad.json()["errors"][0]["field"] == "header"
    line = client.post(
        f"{BASE}/spend.csv",
        content="month,channel,amount\n2025-01,ads,1\n2025-02,ads,1.234\n",
        headers={**auth, "Content-Type": "text/csv"},
    )
    assert line.status_code == 400 and line.json()["errors"][0]["field"] == "line 3: amount"
    reversed_range = client.get(
        f"{BASE}/kpis", params={"since": AS_OF.isoformat(), "until": START.isoformat()},
        headers=auth,
    )  # fmt: skip
    assert reversed_range.status_code == 400
    assert reversed_range.json()["errors"][0]["field"] == "since"
    assert client.get(f"{BASE}/kpis", params={"interval": "year"}, headers=auth).status_code == 400
    assert client.post(f"{BASE}/runs", json={"engine": "hadoop"}, headers=auth).status_code == 400


def test_scopes(client: TestClient, db: Database, workspace: str) -> None:
    support = _token(db, workspace, tenancy.Role.SUPPORT)
    analyst = _token(db, workspace, tenancy.Role.ANALYST)
    assert client.get(f"{BASE}/rfm", headers=support).status_code == 403
    assert client.post(f"{BASE}/runs", headers=support).status_code == 403
    assert client.get(f"{BASE}/rfm", headers=analyst).status_code == 200
    assert client.post(f"{BASE}/runs", headers=analyst).status_code == 200
