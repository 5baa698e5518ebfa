"""IAB Transparency & Consent Framework (TCF) v2 TC strings: a decoder, and the mapping of TCF
purposes to ours. Pure: no SQL, no HTTP, no I/O.

A TC string is one to four segments joined by ``.``, each base64url without padding, read as a
big-endian bit string: the core segment first (it starts with the version, 2), then optionally
``disclosedVendors`` (segment type 1), ``allowedVendors`` (type 2, TCF v2.0/2.1 only) and
``publisherTC`` (type 3). Field layout: "IAB Tech Lab - Consent string and vendor list formats
v2" (TCF v2.2; v2.3 only made ``disclosedVendors`` mandatory). :func:`decode` never raises
anything but :class:`TCStringError`, whose ``reason`` names the segment and field at fault.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from consentry.consent.models import CONSENT, DENIED, GRANTED

MAX_CHARS = 65536  # far above any real TC string; bounds the work on hostile input
VERSION = 2
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

CORE, DISCLOSED_VENDORS, ALLOWED_VENDORS, PUBLISHER_TC = 0, 1, 2, 3
SEGMENT_NAMES = {
    CORE: "core",
    DISCLOSED_VENDORS: "disclosedVendors",
    ALLOWED_VENDORS: "allowedVendors",
    PUBLISHER_TC: "publisherTC",
}

# Publisher restriction types.
NOT_ALLOWED, REQUIRE_CONSENT, REQUIRE_LEGITIMATE_INTEREST = 0, 1, 2

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_SEXTETS = {char: f"{value:06b}" for value, char in enumerate(_ALPHABET)}
_RUNS = re.compile("1+")
_NO_END = 1 << 62  # sorts after every range starting at the same id


class TCStringError(ValueError):
    """A TC string that cannot be decoded; ``reason`` says what is wrong, and where."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- what a TC string says ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VendorIds:
    """A set of vendor ids, kept as sorted, disjoint, non-adjacent inclusive ranges, so a range
    entry of 1-65535 costs one pair, not 65,535 ints."""

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]]) -> VendorIds:
        """The union of inclusive ranges, in any order, overlapping or not."""
        merged: list[tuple[int, int]] = []
        for start, end in sorted(ranges):
            if merged and start <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return cls(tuple(merged))

    @classmethod
    def of(cls, ids: Iterable[int]) -> VendorIds:
        """The set of these ids."""
        return cls.from_ranges((i, i) for i in ids)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, int):
            return False
        at = bisect.bisect_right(self.ranges, (item, _NO_END))
        return at > 0 and self.ranges[at - 1][0] <= item <= self.ranges[at - 1][1]

    def __iter__(self) -> Iterator[int]:
        for start, end in self.ranges:
            yield from range(start, end + 1)

    def __len__(self) -> int:
        return sum(end - start + 1 for start, end in self.ranges)

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def union(self, other: VendorIds) -> VendorIds:
        """The ids in either set."""
        return VendorIds.from_ranges(self.ranges + other.ranges)

    @property
    def max_id(self) -> int:
        """The largest id, 0 when empty."""
        return self.ranges[-1][1] if self.ranges else 0


@dataclass(frozen=True, slots=True)
class PublisherRestriction:
    """A publisher's restriction of one TCF purpose for some vendors: ``restriction_type`` 0 not
    allowed, 1 require consent, 2 require legitimate interest."""

    purpose_id: int
    restriction_type: int
    vendors: VendorIds


@dataclass(frozen=True, slots=True)
class PublisherTC:
    """The ``publisherTC`` segment: the publisher's own purposes, and its custom purposes."""

    purposes_consent: frozenset[int]
    purposes_li_transparency: frozenset[int]
    num_custom_purposes: int
    custom_purposes_consent: frozenset[int]
    custom_purposes_li_transparency: frozenset[int]


@dataclass(frozen=True, slots=True)
class TCString:
    """Every field of a decoded TC string. Purpose, special feature and vendor ids start at 1."""

    version: int
    created: datetime
    last_updated: datetime
    cmp_id: int
    cmp_version: int
    consent_screen: int
    consent_language: str
    vendor_list_version: int
    tcf_policy_version: int
    is_service_specific: bool
    use_non_standard_texts: bool
    special_feature_opt_ins: frozenset[int]
    purposes_consent: frozenset[int]
    purposes_li_transparency: frozenset[int]
    purpose_one_treatment: bool
    publisher_cc: str
    vendor_consents: VendorIds
    vendor_legitimate_interests: VendorIds
    publisher_restrictions: tuple[PublisherRestriction, ...] = ()
    disclosed_vendors: VendorIds | None = None
    allowed_vendors: VendorIds | None = None
    publisher_tc: PublisherTC | None = None

    def restricted_vendors(self, purpose_id: int, restriction_type: int) -> VendorIds:
        """The vendors a publisher restriction of this purpose and type names (entries that
        repeat a purpose and type are merged)."""
        found = VendorIds()
        for entry in self.publisher_restrictions:
            if (entry.purpose_id, entry.restriction_type) == (purpose_id, restriction_type):
                found = found.union(entry.vendors)
        return found

    def summary(self) -> dict[str, object]:
        """The fields a person reads, as JSON-ready values (vendor sets as counts)."""
        return {
            "version": self.version,
            "created": self.created.isoformat(),
            "last_updated": self.last_updated.isoformat(),
            "cmp_id": self.cmp_id,
            "cmp_version": self.cmp_version,
            "consent_language": self.consent_language,
            "vendor_list_version": self.vendor_list_version,
            "tcf_policy_version": self.tcf_policy_version,
            "is_service_specific": self.is_service_specific,
            "publisher_cc": self.publisher_cc,
            "purposes_consent": sorted(self.purposes_consent),
            "purposes_li_transparency": sorted(self.purposes_li_transparency),
            "special_feature_opt_ins": sorted(self.special_feature_opt_ins),
            "vendor_consents": len(self.vendor_consents),
            "vendor_legitimate_interests": len(self.vendor_legitimate_interests),
            "publisher_restrictions": len(self.publisher_restrictions),
            "has_publisher_tc": self.publisher_tc is not None,
        }


# --- decoding -----------------------------------------------------------------------------------


class _Bits:
    """A cursor over one segment's bits; every read names the field it is for."""

    def __init__(self, bits: str, segment: str) -> None:
        self.bits = bits
        self.pos = 0
        self.segment = segment

    def fail(self, reason: str) -> TCStringError:
        return TCStringError(f"{self.segment} segment: {reason}")

    def take(self, n: int, field: str) -> str:
        end = self.pos + n
        if end > len(self.bits):
            raise self.fail(
                f"ends at bit {len(self.bits)}, inside {field} "
                f"({n} bits from bit {self.pos}); the string is truncated or malformed"
            )
        chunk = self.bits[self.pos : end]
        self.pos = end
        return chunk

    def number(self, n: int, field: str) -> int:
        chunk = self.take(n, field)
        return int(chunk, 2) if chunk else 0

    def flag(self, field: str) -> bool:
        return self.take(1, field) == "1"

    def ids(self, n: int, field: str) -> frozenset[int]:
        """A bit field of ``n`` ids: bit 0 is id 1."""
        chunk = self.take(n, field)
        return frozenset(i + 1 for i, bit in enumerate(chunk) if bit == "1")

    def moment(self, field: str) -> datetime:
        return EPOCH + timedelta(milliseconds=100 * self.number(36, field))  # deciseconds

    def letters(self, field: str) -> str:
        out = ""
        for _ in range(2):
            value = self.number(6, field)
            if value > 25:
                raise self.fail(f"{field} holds {value}, not a letter (0-25 for A-Z)")
            out += chr(ord("A") + value)
        return out

    def vendors(self, field: str) -> VendorIds:
        """A vendor section: MaxVendorId, then a bit field or range entries."""
        max_id = self.number(16, f"{field}.maxVendorId")
        if self.flag(f"{field}.isRangeEncoding"):
            return self.ranges(field, self.number(12, f"{field}.numEntries"))
        chunk = self.take(max_id, f"{field} bit field of {max_id} vendors")
        return VendorIds(tuple((m.start() + 1, m.end()) for m in _RUNS.finditer(chunk)))

    def ranges(self, field: str, count: int) -> VendorIds:
        found: list[tuple[int, int]] = []
        for n in range(1, count + 1):
            entry = f"{field} range entry {n} of {count}"
            is_range = self.flag(f"{entry}.isARange")
            start = self.number(16, f"{entry}.startOrOnlyVendorId")
            end = self.number(16, f"{entry}.endVendorId") if is_range else start
            if start == 0:
                raise self.fail(f"{entry} names vendor id 0; vendor ids start at 1")
            if end < start:
                raise self.fail(f"{entry} runs backwards ({start} to {end})")
            found.append((start, end))
        return VendorIds.from_ranges(found)


def _bits_of(text: str, number: int) -> str:
    chunks = []
    for position, char in enumerate(text):
        sextet = _SEXTETS.get(char)
        if sextet is None:
            raise TCStringError(
                f"segment {number}: character {char!r} at position {position + 1} is not "
                "base64url (A-Z, a-z, 0-9, '-', '_')"
            )
        chunks.append(sextet)
    return "".join(chunks)


def decode(tc_string: str) -> TCString:
    """Decode a TCF v2 TC string; TCStringError names what is wrong and where."""
    if not isinstance(tc_string, str):
        raise TCStringError("a TC string is text")
    text = tc_string.strip()
    if not text:
        raise TCStringError("the TC string is empty")
    if len(text) > MAX_CHARS:
        raise TCStringError(f"the TC string is {len(text)} characters, over {MAX_CHARS}")
    parts = text.split(".")
    bits: list[str] = []
    for number, part in enumerate(parts, start=1):
        body = part.rstrip("=")  # base64 padding is not part of the format, but harmless
        if not body:
            raise TCStringError(f"segment {number} is empty")
        bits.append(_bits_of(body, number))
    tc = _core(_Bits(bits[0], "core"))
    seen = {CORE}
    for number, segment in enumerate(bits[1:], start=2):
        kind = int(segment[:3], 2)
        name = SEGMENT_NAMES.get(kind)
        if name is None:
            raise TCStringError(f"segment {number} has the unknown segment type {kind}")
        if kind in seen:
            raise TCStringError(f"segment {number} repeats the {name} segment")
        seen.add(kind)
        reader = _Bits(segment, name)
        reader.pos = 3
        if kind == PUBLISHER_TC:
            tc = replace(tc, publisher_tc=_publisher_tc(reader))
        elif kind == DISCLOSED_VENDORS:
            tc = replace(tc, disclosed_vendors=reader.vendors(name))
        else:
            tc = replace(tc, allowed_vendors=reader.vendors(name))
    return tc


def _core(bits: _Bits) -> TCString:
    version = bits.number(6, "version")
    if version == 1:
        raise bits.fail("version 1 is a TCF v1.1 consent string; only TCF v2 is supported")
    if version != VERSION:
        kind = int(bits.bits[:3], 2)
        if kind in SEGMENT_NAMES and kind != CORE:
            raise bits.fail(f"the first segment must be the core; found {SEGMENT_NAMES[kind]}")
        raise bits.fail(f"version {version} is not a TCF v2 TC string (version 2)")
    created, last_updated = bits.moment("created"), bits.moment("lastUpdated")
    cmp_id = bits.number(12, "cmpId")
    if cmp_id < 2:
        raise bits.fail(f"cmpId {cmp_id} is not a CMP's id (IAB assigns ids from 2)")
    return TCString(
        version=version,
        created=created,
        last_updated=last_updated,
        cmp_id=cmp_id,
        cmp_version=bits.number(12, "cmpVersion"),
        consent_screen=bits.number(6, "consentScreen"),
        consent_language=bits.letters("consentLanguage"),
        vendor_list_version=bits.number(12, "vendorListVersion"),
        tcf_policy_version=bits.number(6, "tcfPolicyVersion"),
        is_service_specific=bits.flag("isServiceSpecific"),
        use_non_standard_texts=bits.flag("useNonStandardTexts"),
        special_feature_opt_ins=bits.ids(12, "specialFeatureOptIns"),
        purposes_consent=bits.ids(24, "purposesConsent"),
        purposes_li_transparency=bits.ids(24, "purposesLITransparency"),
        purpose_one_treatment=bits.flag("purposeOneTreatment"),
        publisher_cc=bits.letters("publisherCC"),
        vendor_consents=bits.vendors("vendorConsents"),
        vendor_legitimate_interests=bits.vendors("vendorLegitimateInterests"),
        publisher_restrictions=_restrictions(bits),
    )


def _restrictions(bits: _Bits) -> tuple[PublisherRestriction, ...]:
    count = bits.number(12, "numPubRestrictions")
    out = []
    for n in range(1, count + 1):
        entry = f"publisher restriction {n} of {count}"
        purpose_id = bits.number(6, f"{entry}.purposeId")
        restriction_type = bits.number(2, f"{entry}.restrictionType")
        if purpose_id == 0:
            raise bits.fail(f"{entry} names purpose 0; purpose ids start at 1")
        if restriction_type > REQUIRE_LEGITIMATE_INTEREST:
            raise bits.fail(f"{entry} has the undefined restriction type {restriction_type}")
        vendors = bits.ranges(entry, bits.number(12, f"{entry}.numEntries"))
        out.append(PublisherRestriction(purpose_id, restriction_type, vendors))
    return tuple(out)


def _publisher_tc(bits: _Bits) -> PublisherTC:
    consent = bits.ids(24, "pubPurposesConsent")
    li = bits.ids(24, "pubPurposesLITransparency")
    custom = bits.number(6, "numCustomPurposes")
    return PublisherTC(
        purposes_consent=consent,
        purposes_li_transparency=li,
        num_custom_purposes=custom,
        custom_purposes_consent=bits.ids(custom, "customPurposesConsent"),
        custom_purposes_li_transparency=bits.ids(custom, "customPurposesLITransparency"),
    )


# --- from TCF purposes to ours ------------------------------------------------------------------

# The purposes and special features of TCF v2.2 (IAB Europe's policies, appendix A).
TCF_PURPOSES = {
    1: "Store and/or access information on a device",
    2: "Use limited data to select advertising",
    3: "Create profiles for personalised advertising",
    4: "Use profiles to select personalised advertising",
    5: "Create profiles to personalise content",
    6: "Use profiles to select personalised content",
    7: "Measure advertising performance",
    8: "Measure content performance",
    9: "Understand audiences through statistics or combinations of data from different sources",
    10: "Develop and improve services",
    11: "Use limited data to select content",
}
TCF_SPECIAL_FEATURES = {
    1: "Use precise geolocation data",
    2: "Actively scan device characteristics for identification",
}
# TCF v2.2 allows no legitimate interest for purposes 1 and 3 to 6.
LEGITIMATE_INTEREST_ALLOWED = frozenset({2, 7, 8, 9, 10, 11})
LEGITIMATE_INTEREST = "legitimate_interest"


@dataclass(frozen=True, slots=True)
class TcfMapping:
    """Our ``purpose`` is agreed to when every one of ``tcf_purposes`` is. ``first_party``:
    the use is the publisher's own, so the ``publisherTC`` segment decides when present."""

    purpose: str
    tcf_purposes: tuple[int, ...]
    first_party: bool


TCF_MAPPING = (
    TcfMapping("marketing.advertising.third_party", (3, 4), first_party=False),
    TcfMapping("personalize", (5, 6), first_party=True),
    TcfMapping("analytics", (8, 9), first_party=True),
)


@dataclass(frozen=True, slots=True)
class TcfChoice:
    """What a TC string says of one of our purposes."""

    purpose: str
    state: str
    legal_basis: str
    tcf_purposes: tuple[int, ...]


def tcf_choices(tc: TCString, purposes: Collection[str]) -> list[TcfChoice]:
    """One choice per mapped purpose the workspace has: granted on consent to every TCF purpose
    of the mapping; granted on legitimate interest when each is consented or has legitimate
    interest established (where TCF allows it); denied otherwise."""
    out = []
    for mapping in TCF_MAPPING:
        if mapping.purpose not in purposes:
            continue
        consent, li = tc.purposes_consent, tc.purposes_li_transparency
        if mapping.first_party and tc.publisher_tc is not None:
            consent = tc.publisher_tc.purposes_consent
            li = tc.publisher_tc.purposes_li_transparency
        wanted = mapping.tcf_purposes
        if all(p in consent for p in wanted):
            state, basis = GRANTED, CONSENT
        elif all(p in consent or (p in li and p in LEGITIMATE_INTEREST_ALLOWED) for p in wanted):
            state, basis = GRANTED, LEGITIMATE_INTEREST
        else:
            state, basis = DENIED, CONSENT
        out.append(TcfChoice(mapping.purpose, state, basis, wanted))
    return out
