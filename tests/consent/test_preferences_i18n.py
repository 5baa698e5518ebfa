"""Translations of the customer pages: every catalog has every key, placeholders agree, every
key the templates and the routes use exists, and the page's language is negotiated."""

from __future__ import annotations

import re
import string
from importlib import resources

import pytest

from consentry.consent import i18n, preferences
from consentry.consent.i18n import LANGUAGES, Translator, accepted, catalog, negotiate
from consentry.consent.models import DEFAULT_PURPOSES

TEMPLATES = resources.files("consentry.consent") / "templates" / "preferences"
ROUTES = resources.files("consentry.consent") / "preference_routes.py"
_KEY_IN_SOURCE = re.compile(r"""\bt\(\s*["']([a-z_.]+)["']""")
_SECTIONS = "page|group|choice|action|done|data|footer|error|unsubscribe"
_KEY_LITERAL = re.compile(rf"""["']((?:{_SECTIONS})\.[a-z_.]*[a-z_])["']""")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def used_keys() -> set[str]:
    """Keys named literally in the templates (``t("...")``) and the routes (any literal)."""
    sources = [f.read_text(encoding="utf-8") for f in TEMPLATES.iterdir() if f.is_file()]
    keys = {key for source in sources for key in _KEY_IN_SOURCE.findall(source)}
    keys |= set(_KEY_LITERAL.findall(ROUTES.read_text(encoding="utf-8")))
    return {key for key in keys if not key.endswith(".")}  # "group." ~ name: checked below


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalog_has_every_key_with_the_same_placeholders(language: str) -> None:
    reference, translated = catalog("en"), catalog(language)
    assert sorted(translated) == sorted(reference), "keys missing or extra"
    for key, text in reference.items():
        assert translated[key].strip(), key
        assert placeholders(translated[key]) == placeholders(text), key


def test_languages_differ_from_english() -> None:
    for language in LANGUAGES[1:]:
        same = [k for k, v in catalog(language).items() if v == catalog("en")[k]]
        # Only words that are the same in both languages may be equal ("No", "Error {code}").
        assert len(same) <= 4, (language, same)


def test_every_default_purpose_has_a_name_and_a_description() -> None:
    for purpose in DEFAULT_PURPOSES:
        for part in ("name", "description"):
            assert f"purpose.{purpose.key}.{part}" in catalog("en"), purpose.key


def test_every_key_the_pages_use_exists() -> None:
    keys = used_keys()
    assert {"page.title", "choice.yes", "error.field", "unsubscribe.done"} <= keys
    missing = sorted(k for k in keys if k not in catalog("en"))
    assert missing == []
    assert {"error.title.expired", "error.title.gone", "done.pending"} <= keys
    for group in (preferences.MARKETING, preferences.USES):
        assert f"group.{group}" in catalog("en")
    reasons = ("purpose", "channel", "pair", "value", "shape", "action", "repeated", "too_many")
    for reason in (*reasons, "one_click"):
        assert f"error.reason.{reason}" in catalog("en")


def test_every_language_has_its_own_name() -> None:
    assert set(i18n.NATIVE_NAMES) == set(LANGUAGES)


def test_translator_fills_placeholders_and_falls_back() -> None:
    assert Translator("fr")("page.intro", brand="Acme").startswith("Choisissez ce que Acme")
    assert Translator("de")("no.such.key") == "no.such.key"
    assert Translator("xx")("choice.yes") == "Yes"  # unknown language: English
    assert Translator("en")("page.intro") == catalog("en")["page.intro"]  # unfilled: as is


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("fr-CA,fr;q=0.9,en;q=0.8", ["fr", "en"]),
        ("en;q=0.2, de;q=0.9, zz", ["de", "en"]),
        ("pt-BR", ["pt"]),
        ("nl;q=0, it", ["it"]),  # q=0 means "not this one"
        ("*", []),
        ("es;q=abc, it;q=0.5", ["it"]),
        ("", []),
        (None, []),
    ],
)
def test_accept_language_is_ranked_by_quality(header: str | None, expected: list[str]) -> None:
    assert accepted(header) == expected


def test_the_query_wins_then_the_browser_then_the_branding_default() -> None:
    assert negotiate("it", "de", "fr") == "it"
    assert negotiate("IT-ch", None, None) == "it"
    assert negotiate("xx", "de-AT", "fr") == "de"
    assert negotiate(None, "ja", "fr") == "fr"
    assert negotiate(None, None, None) == "en"
    assert negotiate(None, "x" * 100_000, "es") == "es"
