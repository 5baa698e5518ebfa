"""Names and free text."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from consentry.quality import Normalised, Problem, clean_text, validate_name, validate_text
from tests.quality.strategies import any_text, anything, near

name_ish = near("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ '-mcMCvander", 40)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("JOHN MCDONALD", "John McDonald"),
        ("john mcdonald", "John McDonald"),
        ("McDonald", "McDonald"),  # mixed case is the person's own
        ("van der Berg", "van der Berg"),
        ("jan van der berg", "Jan van der Berg"),
        ("VAN DER BERG", "Van der Berg"),
        ("o'brien", "O'Brien"),
        ("JEAN-PIERRE", "Jean-Pierre"),
        ("mary-jane o'neil", "Mary-Jane O'Neil"),
        ("ludwig VON beethoven", "ludwig VON beethoven"),  # mixed: left alone
        ("  Anna \t  Maria\n ", "Anna Maria"),
        ("Ａｎｎａ", "Anna"),  # full-width folds under NFKC
        ("Zo\u00eb", "Zoë"),
        ("Zoe\u0301", "Zoé"),  # combining accent composed
        ("Ma\u200bria", "Maria"),  # zero-width space dropped
        ("Ann\x00a", "Anna"),  # NUL dropped
        ("\u202eevil", "Evil"),  # bidi override dropped
        ("李雷", "李雷"),  # no case: untouched
        ("ΣΩΚΡΆΤΗΣ", "Σωκράτης"),  # final sigma
        ("STRAẞE", "Straße"),
    ],
)
def test_names_are_cleaned_and_cased(raw: str, expected: str) -> None:
    outcome = validate_name(raw)
    assert isinstance(outcome, Normalised)
    assert outcome.value == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", "name.empty"),
        (" \t\u200b ", "name.empty"),
        ("null", "name.placeholder"),
        ("N/A", "name.placeholder"),
        ("Test", "name.placeholder"),
        ("12345", "name.no_letters"),
        ("x" * 257, "name.too_long"),
        (42, "name.not_text"),
        (None, "name.not_text"),
    ],
)
def test_bad_names_are_problems(raw: object, code: str) -> None:
    outcome = validate_name(raw)
    assert isinstance(outcome, Problem)
    assert outcome.code == code


def test_digits_in_a_name_are_a_warning() -> None:
    outcome = validate_name("R2D2")
    assert isinstance(outcome, Normalised)
    assert outcome.codes == ("name.has_digits",)


def test_a_problem_never_repeats_the_value() -> None:
    secret = "Zebediah-Quux"
    outcome = validate_name(secret * 30)
    assert isinstance(outcome, Problem)
    assert "Zebediah" not in repr(outcome)
    assert "Zebediah" not in repr(validate_name(secret))  # Normalised hides its value too


def test_free_text_keeps_its_case() -> None:
    outcome = validate_text("  iPhone 15   PRO\r\nmax ")
    assert isinstance(outcome, Normalised)
    assert outcome.value == "iPhone 15 PRO max"
    too_long = validate_text("x" * 11, max_length=10)
    assert isinstance(too_long, Problem) and too_long.code == "text.too_long"


@given(anything | any_text | name_ish)
def test_name_never_raises(value: object) -> None:
    assert isinstance(validate_name(value), Normalised | Problem)
    assert isinstance(validate_text(value), Normalised | Problem)


@given(any_text | name_ish)
@example("ΐ'ΐ")  # a capital made of two code points must not change the apostrophe rule
@example("ǰ'a")
def test_name_is_idempotent(value: str) -> None:
    first = validate_name(value)
    if isinstance(first, Normalised):
        assert validate_name(first.value) == first


@given(any_text | name_ish)
def test_text_is_idempotent(value: str) -> None:
    first = validate_text(value)
    if isinstance(first, Normalised):
        assert validate_text(first.value) == first
    assert clean_text(clean_text(value)) == clean_text(value)


@given(any_text)
def test_clean_text_leaves_no_control_or_edge_space(value: str) -> None:
    cleaned = clean_text(value)
    assert cleaned == cleaned.strip()
    assert "  " not in cleaned
    assert not any(ch in cleaned for ch in "\x00\t\n\r\x1b\u200b\u202e\ufeff")


@given(st.text(st.sampled_from("abcXYZ é"), min_size=1).filter(lambda s: not s.isupper()))
def test_mixed_case_is_kept(value: str) -> None:
    cleaned = clean_text(value)
    outcome = validate_name(value)
    if isinstance(outcome, Normalised) and not (cleaned.islower() or cleaned.isupper()):
        assert outcome.value == cleaned
