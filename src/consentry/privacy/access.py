"""The access and portability archive of one data subject (GDPR Art. 15 and 20): pure rules.

The archive is a ZIP with, per category, a machine-readable JSON file (``json/<category>.json``)
and a CSV file (``csv/<category>.csv``, RFC 4180, UTF-8 with a header row; nested values as JSON
text), a readable ``summary.html`` and a ``manifest.json`` listing every file with its SHA-256,
so the person (or the next controller) can check nothing was altered in transit.

Categories: ``profile`` (the unified profile and its traits), ``identifiers``, ``events``,
``orders``, ``carts``, ``consent`` (the consent history), ``merges`` (how the profile was unified),
``computed`` (computed traits and segments: the analytics scores, what the recommendation models
hold, duplicate checks that named the person) and ``requests`` (the person's data-subject
requests). An empty category is still written, so
the person sees that it was looked at.
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

CATEGORIES = (
    "profile",
    "identifiers",
    "events",
    "orders",
    "carts",
    "consent",
    "merges",
    "computed",
    "requests",
)
TITLES = {
    "profile": "Your profile and its attributes",
    "identifiers": "Identifiers that point to you (email, phone, user and device ids)",
    "events": "Your activity (page views, app screens, actions)",
    "orders": "Your orders",
    "carts": "Your shopping carts",
    "consent": "Your consent choices and their history",
    "merges": "Records that were recognised as you and joined",
    "computed": "What we computed about you: customer value and segment, recommendations, "
    "checks for duplicate records",
    "requests": "Your privacy requests",
}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # ZIP entries carry this time: same data, same bytes


@dataclass(frozen=True, slots=True)
class SubjectData:
    """Everything held about one person, by category (rows are plain JSON-able mappings)."""

    workspace_id: str
    profile_id: str
    generated_at: datetime
    categories: Mapping[str, Sequence[Mapping[str, Any]]]
    brand: str = ""
    notes: Sequence[str] = field(default_factory=tuple)

    def count(self, category: str) -> int:
        return len(self.categories.get(category, ()))


def to_jsonable(value: Any) -> Any:
    """Datetimes as ISO 8601, decimals as strings (exact), containers recursively."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def csv_cell(value: Any) -> str:
    """One CSV cell: scalars as text, nested values as JSON; a cell a spreadsheet would run as a
    formula (starting with = + - @ or a tab) is prefixed with a quote."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping | list | tuple):
        text = json.dumps(to_jsonable(value), ensure_ascii=False, sort_keys=True)
    else:
        text = str(to_jsonable(value))
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV; the columns are every key seen, in first-seen order."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_cell(c) for c in columns])
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in columns])
    return out.getvalue()


def summary_html(data: SubjectData) -> str:
    """A readable page: who, when, what each category holds and where to find it."""
    esc = html.escape
    brand = esc(data.brand or data.workspace_id)
    rows = "".join(
        f"<tr><th scope=row>{esc(TITLES[c])}</th><td>{data.count(c)}</td>"
        f'<td><a href="json/{c}.json">json/{c}.json</a>, <a href="csv/{c}.csv">csv/{c}.csv</a>'
        "</td></tr>"
        for c in CATEGORIES
    )
    profile = data.categories.get("profile", ())
    traits = profile[0].get("traits", {}) if profile else {}
    trait_rows = "".join(
        f"<tr><th scope=row>{esc(str(k))}</th><td>{esc(csv_cell(v))}</td></tr>"
        for k, v in sorted(traits.items())
    )
    notes = "".join(f"<li>{esc(n)}</li>" for n in data.notes)
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>Your data held by {brand}</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:50rem;margin:2rem auto;"
        "padding:0 1rem}table{border-collapse:collapse;width:100%}th,td{text-align:left;"
        "padding:.3rem .5rem;border-bottom:1px solid #ddd;vertical-align:top}</style></head>"
        f"<body><h1>Your data held by {brand}</h1>"
        f"<p>Prepared {esc(data.generated_at.isoformat())} for profile "
        f"<code>{esc(data.profile_id)}</code>. Every category below is also in the archive as "
        "JSON (for another service) and CSV (for a spreadsheet); <code>manifest.json</code> "
        "lists each file's SHA-256.</p>"
        f"<h2>What we hold</h2><table><tr><th>Category</th><th>Records</th><th>Files</th></tr>"
        f"{rows}</table>"
        f"<h2>Your attributes</h2><table>{trait_rows or '<tr><td>none</td></tr>'}</table>"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + "</body></html>"
    )


def build_archive(data: SubjectData) -> bytes:
    """The ZIP of :class:`SubjectData` (deterministic: the same data gives the same bytes)."""
    files: dict[str, bytes] = {}
    for category in CATEGORIES:
        rows = [to_jsonable(r) for r in data.categories.get(category, ())]
        files[f"json/{category}.json"] = json.dumps(
            rows, ensure_ascii=False, indent=2, sort_keys=True
        ).encode()
        files[f"csv/{category}.csv"] = ("\ufeff" + to_csv(rows)).encode()  # BOM: Excel reads UTF-8
    files["summary.html"] = summary_html(data).encode()
    manifest = {
        "workspace_id": data.workspace_id,
        "profile_id": data.profile_id,
        "generated_at": data.generated_at.isoformat(),
        "counts": {c: data.count(c) for c in CATEGORIES},
        "files": {name: hashlib.sha256(body).hexdigest() for name, body in sorted(files.items())},
    }
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True).encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, files[name])
    return out.getvalue()


def archive_name(profile_id: str, generated_at: datetime) -> str:
    return f"consentry-access-{profile_id}-{generated_at.strftime('%Y%m%dT%H%M%SZ')}.zip"
