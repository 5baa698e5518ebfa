"""Phone numbers: validity for a country through Google's libphonenumber metadata, E.164 output
and the kind of line (mobile, fixed, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType, ValidationResult

from consentry.profiles.models import COUNTRY_CODE_ALIASES, normalize_text
from consentry.quality.problems import Normalised, Outcome, Problem, problem, warning

_TYPES = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
}

_POSSIBLE = {
    ValidationResult.TOO_SHORT: ("too_short", "The number is too short."),
    ValidationResult.TOO_LONG: ("too_long", "The number is too long."),
    ValidationResult.INVALID_LENGTH: ("invalid_length", "The number has an impossible length."),
    ValidationResult.INVALID_COUNTRY_CODE: ("country_code", "The country calling code is unknown."),
}
MAX_INPUT = 64  # libphonenumber itself gives up at 250; nobody types a number this long


@dataclass(frozen=True, slots=True)
class Phone:
    """A valid phone number."""

    e164: str
    region: str  # ISO 3166-1 alpha-2 of the number itself, not of the person
    type: str  # "mobile", "fixed_line", "fixed_line_or_mobile", "toll_free", ..., or "unknown"

    @property
    def is_mobile(self) -> bool | None:
        """True for a mobile, False for a fixed line, None when the plan does not tell."""
        if self.type == "mobile":
            return True
        if self.type == "fixed_line":
            return False
        return None


def _p(code: str, message: str) -> Problem:
    return problem(f"phone.{code}", message)


@lru_cache(maxsize=8192)
def _validate(text: str, region: str) -> Normalised[Phone] | Problem:
    if text.startswith("00"):  # the international prefix most of the world dials
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, region or None)
    except NumberParseException as exc:
        if exc.error_type == NumberParseException.INVALID_COUNTRY_CODE:
            if not region and not text.startswith("+"):
                return _p("region_needed", "A number without +country code needs a country.")
            return _p("country_code", "The country calling code is unknown.")
        if exc.error_type in (
            NumberParseException.TOO_SHORT_NSN,
            NumberParseException.TOO_SHORT_AFTER_IDD,
        ):
            return _p("too_short", "The number is too short.")
        if exc.error_type == NumberParseException.TOO_LONG:
            return _p("too_long", "The number is too long.")
        return _p("not_a_number", "The value is not a phone number.")
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason in _POSSIBLE:
        return _p(*_POSSIBLE[reason])
    if not phonenumbers.is_valid_number(number):
        return _p("invalid", "The number is not a valid number in its country's numbering plan.")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    found_region = phonenumbers.region_code_for_number(number) or "001"
    kind = _TYPES.get(phonenumbers.number_type(number), "unknown")
    warnings: tuple[Problem, ...] = ()
    if kind in ("premium_rate", "pager", "voicemail", "shared_cost", "uan"):
        warnings = (warning("phone.unusual_type", "The number is not a personal line."),)
    return Normalised(Phone(str(e164), found_region, kind), warnings)


def validate_phone(value: Any, country: str | None = None) -> Outcome[Phone]:
    """A phone number in E.164 with its region and line type.

    ``country`` (ISO 3166-1 alpha-2, any case; UK and EL read as GB and GR) is where a number
    written without ``+`` or ``00`` is dialled; numbers written with one are judged by their own
    country code. Without a country, a national number is ``phone.region_needed``.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        return _p("not_text", "The number is not text.")
    text = normalize_text(str(value))
    if not text:
        return _p("empty", "The number is empty.")
    if len(text) > MAX_INPUT:
        return _p("too_long", "The number is too long.")
    region = dialling_region(country)
    if isinstance(region, Problem):
        return region
    return _validate(text, region)


def dialling_region(country: str | None) -> str | Problem:
    """The region :func:`validate_phone` reads a national number in: ``country`` as an alpha-2
    code (any case; UK and EL read as GB and GR), "" without one, or ``phone.bad_country``
    when it is no alpha-2 code or has no numbering plan."""
    region = (country or "").strip().upper()
    region = COUNTRY_CODE_ALIASES.get(region, region)  # UK is GB, as identity reads it
    if region and (len(region) != 2 or not region.isascii() or not region.isalpha()):
        return _p("bad_country", "The country given for the number is not an alpha-2 code.")
    if region and phonenumbers.country_code_for_region(region) == 0:
        return _p("bad_country", "The country given for the number has no numbering plan.")
    return region
