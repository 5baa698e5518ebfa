"""Names and free text: Unicode NFKC, whitespace collapsed, control characters dropped, and a
careful change of case only for text typed all in upper or all in lower case; and the folded
form names and places are compared in (:func:`fold`)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from consentry.profiles.models import JUNK_VALUES, normalize_text
from consentry.quality.problems import Normalised, Outcome, problem, warning

MAX_NAME_LENGTH = 256
MAX_TEXT_LENGTH = 10_000

# Format characters that are part of spelling (Persian, Indic scripts, emoji sequences): kept.
_KEEP_FORMAT = frozenset({"\u200c", "\u200d"})
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})

# Lower-case name particles when they are not the first word ("Jan van der Berg"); the first word
# is always capitalised ("Van der Berg" as a surname on its own, as Dutch writes it).
PARTICLES = frozenset(
    {"van", "der", "den", "de", "del", "des", "du", "von", "zu", "dos", "das", "ter", "ten", "y"}
)
_PIECES = re.compile(r"([-'\u2019])")
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")
_NOT_KEY = re.compile(r"[^\w ]+")


def clean_text(value: str) -> str:
    """NFKC, every kind of whitespace as one space, control and invisible format characters
    dropped, trimmed. Idempotent."""
    text = normalize_text(value)
    if not text.isprintable():
        kept = []
        for ch in text:
            if ch.isspace():
                kept.append(" ")
            elif unicodedata.category(ch) not in _DROP_CATEGORIES or ch in _KEEP_FORMAT:
                kept.append(ch)
        # Dropping a character can bring a base letter and a combining mark together.
        text = unicodedata.normalize("NFKC", "".join(kept))
    return " ".join(text.split())


def fold(text: str) -> str:
    """A comparison key of free text: clean (NFKC, one space), no accents, case-folded,
    hyphens and other punctuation as a space, apostrophes dropped ("José-Luis O'Brien" ->
    "jose luis obrien"). Idempotent. Identity matching's name, street and city keys and the
    audit's likely duplicates both compare names through it."""
    decomposed = unicodedata.normalize("NFKD", clean_text(text).casefold())
    # dotless i: its capital is "I", so "Ayşe Işık" typed in capitals would fold apart
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).replace("ı", "i")
    bare = bare.replace("'", "").replace("\u2019", "")
    bare = _NOT_KEY.sub(" ", bare).replace("_", " ")
    return " ".join(unicodedata.normalize("NFKC", bare).split())


def _cap(piece: str) -> str:
    return piece[:1].title() + piece[1:].lower()


def _letters(piece: str) -> int:
    """Length without combining marks: "ΐ" is one letter whether composed or not."""
    return sum(not unicodedata.combining(ch) for ch in piece)


def _case_word(word: str, first: bool) -> str:
    lower = word.lower()
    if not first and lower in PARTICLES:
        return lower
    parts = _PIECES.split(lower)
    out: list[str] = []
    for i, part in enumerate(parts):
        if i % 2:  # a separator
            out.append(part)
            continue
        after_apostrophe = i >= 2 and parts[i - 1] in ("'", "\u2019")
        if after_apostrophe and _letters(parts[i - 2]) > 1:
            out.append(part)  # "jack's": only O'Brien, D'Arcy, L'Estrange take a capital
        elif part.startswith("mc") and len(part) > 2:
            out.append("Mc" + _cap(part[2:]))
        else:
            out.append(_cap(part))
    return "".join(out)


def smart_case(text: str) -> str:
    """Name case for text typed all upper or all lower ("JOHN MCDONALD" -> "John McDonald",
    "jan van der berg" -> "Jan van der Berg"); mixed case is the person's own and is kept."""
    if not (text.isupper() or text.islower()):
        return text
    words = text.split(" ")
    cased = " ".join(_case_word(w, i == 0) for i, w in enumerate(words))
    return unicodedata.normalize("NFKC", cased)


def validate_name(value: Any, *, max_length: int = MAX_NAME_LENGTH) -> Outcome[str]:
    """A person's name (first, last or full) in clean form."""
    if not isinstance(value, str):
        return problem("name.not_text", "The name is not text.")
    text = clean_text(value)
    if not text:
        return problem("name.empty", "The name is empty.")
    if text.lower() in JUNK_VALUES:
        return problem("name.placeholder", "The name is a placeholder, not a name.")
    if len(text) > max_length:
        return problem("name.too_long", f"The name is longer than {max_length} characters.")
    if not _LETTER.search(text):
        return problem("name.no_letters", "The name has no letters.")
    text = smart_case(text)
    if _DIGIT.search(text):
        return Normalised(text, (warning("name.has_digits", "The name contains digits."),))
    return Normalised(text)


def validate_text(value: Any, *, max_length: int = MAX_TEXT_LENGTH) -> Outcome[str]:
    """Free text in clean form; its case is left alone."""
    if not isinstance(value, str):
        return problem("text.not_text", "The value is not text.")
    text = clean_text(value)
    if not text:
        return problem("text.empty", "The text is empty.")
    if len(text) > max_length:
        return problem("text.too_long", f"The text is longer than {max_length} characters.")
    return Normalised(text)
