"""Translations of the customer-facing consent pages: one JSON catalog per language.

A catalog is a flat object from a key (``page.title``, ``purpose.analytics.name``) to a text with
``{name}`` placeholders. English is the reference: every catalog holds every English key (a test
checks it), and a key missing at run time falls back to English, then to the key itself.

The language of a page is, in order: the ``?lang=`` parameter, the best match of the browser's
``Accept-Language`` header (``fr-CA`` matches ``fr``), the workspace's default language.
Pure functions; the catalogs are read once from the package's data files.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

LANGUAGES = ("en", "fr", "de", "es", "it", "nl", "pt")
REFERENCE = "en"
# Each language named in itself: the same in every catalog, so not translated.
NATIVE_NAMES = {
    "en": "English",
    "fr": "Français",
    "de": "Deutsch",
    "es": "Español",
    "it": "Italiano",
    "nl": "Nederlands",
    "pt": "Português",
}
MAX_ACCEPT_LANGUAGE = 1000  # characters of the header that are read


@lru_cache(maxsize=len(LANGUAGES))
def catalog(language: str) -> Mapping[str, str]:
    """The texts of one language (an empty mapping for a language without a catalog)."""
    if language not in LANGUAGES:
        return {}
    raw = resources.files(__name__).joinpath(f"{language}.json").read_text(encoding="utf-8")
    loaded: dict[str, str] = json.loads(raw)
    return loaded


def normalise(tag: str | None) -> str | None:
    """The supported language of a tag (``pt-BR`` -> ``pt``, ``FR`` -> ``fr``), or None."""
    if not tag:
        return None
    primary = tag.strip().replace("_", "-").split("-", 1)[0].lower()
    return primary if primary in LANGUAGES else None


def accepted(header: str | None) -> list[str]:
    """The supported languages of an ``Accept-Language`` header, best first (by q, then order)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "")[:MAX_ACCEPT_LANGUAGE].split(",")):
        tag, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = normalise(tag)
        if language is not None and 0 < quality <= 1:
            ranked.append((-quality, index, language))
    return list(dict.fromkeys(language for _, _, language in sorted(ranked)))


def negotiate(query: str | None, accept_language: str | None, default: str | None) -> str:
    """The language of a page: ``?lang=``, else ``Accept-Language``, else the default, else en."""
    chosen = normalise(query)
    if chosen is not None:
        return chosen
    found = accepted(accept_language)
    if found:
        return found[0]
    return normalise(default) or REFERENCE


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


@dataclass(frozen=True, slots=True)
class Translator:
    """The texts of one language: ``t("page.title")``, ``t("page.intro", brand="Shop")``."""

    language: str

    def __call__(self, key: str, **values: Any) -> str:
        text = catalog(self.language).get(key) or catalog(REFERENCE).get(key) or key
        return text.format_map(_Blank(values)) if values else text

    def has(self, key: str) -> bool:
        """Whether the language (or English) has a text for ``key``."""
        return key in catalog(self.language) or key in catalog(REFERENCE)
