"""Data quality: validation and normalisation of profile traits, and the audit over profiles.

Pure domain code: no HTTP, no SQL, no clock (reference dates are passed in). Each ``validate_*``
returns :class:`Normalised` (the canonical value and any warnings) or a :class:`Problem` (a stable
code and a fixed message that never repeats the value).
"""

from consentry.quality.audit import (
    Auditor,
    AuditRecord,
    AuditReport,
    CodeCount,
    DuplicateReport,
    FieldCheck,
    FieldReport,
    RecordView,
    StaleReport,
    audit,
    default_fields,
)
from consentry.quality.countries import validate_country
from consentry.quality.dates import age_on, parse_date, validate_birth_date
from consentry.quality.emails import is_disposable_domain, suggest_domain, validate_email
from consentry.quality.phones import Phone, dialling_region, validate_phone
from consentry.quality.postcodes import RULES as POSTCODE_RULES
from consentry.quality.postcodes import validate_postcode
from consentry.quality.problems import Normalised, Outcome, Problem, Severity
from consentry.quality.text import clean_text, fold, smart_case, validate_name, validate_text

__all__ = [
    "POSTCODE_RULES",
    "AuditRecord",
    "AuditReport",
    "Auditor",
    "CodeCount",
    "DuplicateReport",
    "FieldCheck",
    "FieldReport",
    "Normalised",
    "Outcome",
    "Phone",
    "Problem",
    "RecordView",
    "Severity",
    "StaleReport",
    "age_on",
    "audit",
    "clean_text",
    "default_fields",
    "dialling_region",
    "fold",
    "is_disposable_domain",
    "parse_date",
    "smart_case",
    "suggest_domain",
    "validate_birth_date",
    "validate_country",
    "validate_email",
    "validate_name",
    "validate_phone",
    "validate_postcode",
    "validate_text",
]
