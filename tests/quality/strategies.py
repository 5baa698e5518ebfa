"""Hypothesis strategies shared by the data-quality tests."""

from __future__ import annotations

import string

from hypothesis import strategies as st

# Anything a trait can hold once decoded from JSON, and a few things it cannot.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(),
)
anything = st.one_of(
    json_scalars,
    st.binary(max_size=20),
    st.lists(json_scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), json_scalars, max_size=3),
)
# Text from the whole of Unicode, surrogates, controls and unassigned code points included.
any_text = st.text(max_size=60) | st.text(
    st.characters() | st.characters(categories=["Cs", "Cc", "Cf", "Co", "Cn"]), max_size=60
)


def near(alphabet: str, max_size: int = 30) -> st.SearchStrategy[str]:
    """Text drawn from the characters a kind of value is made of, with noise: reaches the
    validators' inner branches far more often than arbitrary text."""
    noise = " \t\u00a0\u200b-._/\u0301ÄéßİıŉǅＡ１"
    return st.text(st.sampled_from(alphabet + noise), max_size=max_size)


email_ish = near(string.ascii_letters + string.digits + "@@..+-_'üñ例", 40)
digits_ish = near(string.digits + "+()- ", 25)
