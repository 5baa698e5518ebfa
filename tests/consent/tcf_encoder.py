"""A TC string encoder for the tests only: the inverse of ``consent.tcf.decode``, so round trips
can be checked on strings the tests build. Each vendor section may be bit field or ranges."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from consentry.consent.tcf import (
    ALLOWED_VENDORS,
    DISCLOSED_VENDORS,
    EPOCH,
    PUBLISHER_TC,
    PublisherTC,
    TCString,
    VendorIds,
)

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class Encoding:
    """Which vendor sections are range encoded (the others are bit fields)."""

    vendor_consents: bool = False
    vendor_legitimate_interests: bool = False
    disclosed_vendors: bool = False
    allowed_vendors: bool = False


class Writer:
    def __init__(self) -> None:
        self.bits: list[str] = []

    def number(self, value: int, n: int) -> None:
        assert 0 <= value < (1 << n) or (n == 0 and value == 0), (value, n)
        if n:
            self.bits.append(format(value, f"0{n}b"))

    def flag(self, value: bool) -> None:
        self.bits.append("1" if value else "0")

    def ids(self, ids: frozenset[int], n: int) -> None:
        assert all(1 <= i <= n for i in ids)
        self.bits.append("".join("1" if i in ids else "0" for i in range(1, n + 1)))

    def moment(self, value: datetime) -> None:
        self.number((value - EPOCH) // timedelta(milliseconds=100), 36)

    def letters(self, value: str) -> None:
        for char in value:
            self.number(ord(char) - ord("A"), 6)

    def ranges(self, vendors: VendorIds) -> None:
        self.number(len(vendors.ranges), 12)
        for start, end in vendors.ranges:
            self.flag(start != end)
            self.number(start, 16)
            if start != end:
                self.number(end, 16)

    def vendors(self, vendors: VendorIds, use_ranges: bool) -> None:
        self.number(vendors.max_id, 16)
        self.flag(use_ranges)
        if use_ranges:
            self.ranges(vendors)
        else:
            self.ids(frozenset(vendors), vendors.max_id)

    def text(self) -> str:
        bits = "".join(self.bits)
        bits += "0" * (-len(bits) % 6)
        return "".join(ALPHABET[int(bits[i : i + 6], 2)] for i in range(0, len(bits), 6))


def encode(tc: TCString, how: Encoding = Encoding()) -> str:
    """The TC string of ``tc``: core, then disclosed, allowed and publisherTC when present."""
    w = Writer()
    w.number(tc.version, 6)
    w.moment(tc.created)
    w.moment(tc.last_updated)
    w.number(tc.cmp_id, 12)
    w.number(tc.cmp_version, 12)
    w.number(tc.consent_screen, 6)
    w.letters(tc.consent_language)
    w.number(tc.vendor_list_version, 12)
    w.number(tc.tcf_policy_version, 6)
    w.flag(tc.is_service_specific)
    w.flag(tc.use_non_standard_texts)
    w.ids(tc.special_feature_opt_ins, 12)
    w.ids(tc.purposes_consent, 24)
    w.ids(tc.purposes_li_transparency, 24)
    w.flag(tc.purpose_one_treatment)
    w.letters(tc.publisher_cc)
    w.vendors(tc.vendor_consents, how.vendor_consents)
    w.vendors(tc.vendor_legitimate_interests, how.vendor_legitimate_interests)
    w.number(len(tc.publisher_restrictions), 12)
    for entry in tc.publisher_restrictions:
        w.number(entry.purpose_id, 6)
        w.number(entry.restriction_type, 2)
        w.ranges(entry.vendors)
    segments = [w.text()]
    for kind, vendors, use_ranges in (
        (DISCLOSED_VENDORS, tc.disclosed_vendors, how.disclosed_vendors),
        (ALLOWED_VENDORS, tc.allowed_vendors, how.allowed_vendors),
    ):
        if vendors is not None:
            seg = Writer()
            seg.number(kind, 3)
            seg.vendors(vendors, use_ranges)
            segments.append(seg.text())
    if tc.publisher_tc is not None:
        segments.append(_publisher_tc(tc.publisher_tc))
    return ".".join(segments)


def _publisher_tc(pub: PublisherTC) -> str:
    w = Writer()
    w.number(PUBLISHER_TC, 3)
    w.ids(pub.purposes_consent, 24)
    w.ids(pub.purposes_li_transparency, 24)
    w.number(pub.num_custom_purposes, 6)
    w.ids(pub.custom_purposes_consent, pub.num_custom_purposes)
    w.ids(pub.custom_purposes_li_transparency, pub.num_custom_purposes)
    return w.text()
