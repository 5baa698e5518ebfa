"""Email addresses: practical syntax (RFC 5321/5322 as mail systems accept it), IDN domains to
punycode, disposable domains, and a suggestion (never a rewrite) for common typos of big
providers' domains."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from disposable_email_domains import blocklist as _DISPOSABLE

from consentry.profiles.models import ascii_domain, is_junk, normalize_text
from consentry.quality.problems import Normalised, Outcome, Problem, problem, warning

MAX_LOCAL = 64
MAX_DOMAIN = 253
MAX_ADDRESS = 254  # RFC 5321 path limit less the angle brackets

# RFC 5322 atext; non-ASCII letters are allowed too (RFC 6531, internationalised addresses).
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+$")
_SPACE = re.compile(r"\s")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")

# RFC 2606 / RFC 6761 names that never receive mail.
RESERVED_DOMAINS = frozenset({"example.com", "example.net", "example.org"})
RESERVED_TLDS = frozenset({"test", "example", "invalid", "localhost", "local"})

# Domains of large mail providers. An address whose domain is one edit away from one of these
# (two for long domains) gets a suggestion. Providers that are themselves near another provider
# (mail.com and gmail.com) are listed so they are never "corrected".
POPULAR_DOMAINS = frozenset(
    {
        "aol.com",
        "bluewin.ch",
        "btinternet.com",
        "comcast.net",
        "free.fr",
        "gmail.com",
        "gmx.at",
        "gmx.ch",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "googlemail.com",
        "hotmail.co.uk",
        "hotmail.com",
        "hotmail.de",
        "hotmail.fr",
        "hotmail.it",
        "icloud.com",
        "interia.pl",
        "laposte.net",
        "libero.it",
        "live.com",
        "mail.com",
        "mail.ru",
        "me.com",
        "msn.com",
        "o2.pl",
        "onet.pl",
        "orange.fr",
        "outlook.com",
        "outlook.de",
        "outlook.fr",
        "proton.me",
        "protonmail.com",
        "seznam.cz",
        "sfr.fr",
        "sky.com",
        "t-online.de",
        "telenet.be",
        "virgilio.it",
        "wanadoo.fr",
        "web.de",
        "wp.pl",
        "yahoo.co.uk",
        "yahoo.com",
        "yahoo.de",
        "yahoo.es",
        "yahoo.fr",
        "yahoo.it",
        "yandex.ru",
        "ymail.com",
        "ziggo.nl",
    }
)


def _p(code: str, message: str) -> Problem:
    return problem(f"email.{code}", message)


def _optimal_string_alignment(a: str, b: str, limit: int) -> int:
    """Edit distance counting a swap of neighbours as one edit; stops early past ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return prev[-1]


@lru_cache(maxsize=4096)
def suggest_domain(domain: str) -> str | None:
    """The popular provider a domain is probably a typo of, or None."""
    if domain in POPULAR_DOMAINS:
        return None
    limit = 2 if len(domain) >= 10 else 1
    best: list[tuple[int, str]] = []
    for known in POPULAR_DOMAINS:
        distance = _optimal_string_alignment(domain, known, limit)
        if distance <= limit:
            best.append((distance, known))
    if not best:
        return None
    best.sort()
    if len(best) > 1 and best[0][0] == best[1][0]:
        return None  # two providers equally near: no honest suggestion
    return best[0][1]


def is_disposable_domain(domain: str) -> bool:
    """Whether a (lower-case, ASCII) domain or any parent domain is a known disposable one."""
    labels = domain.split(".")
    return any(".".join(labels[i:]) in _DISPOSABLE for i in range(len(labels) - 1))


@lru_cache(maxsize=8192)
def _domain(raw: str) -> str | Problem:
    """The ASCII (punycode) form of a mail domain, or why it cannot be one."""
    if raw.startswith("["):
        return _p("domain_literal", "Addresses at an IP literal are not accepted.")
    domain = raw[:-1] if raw.endswith(".") else raw
    if not domain:
        return _p("domain_missing", "The address has no domain.")
    if "." not in domain:
        return _p("domain_no_dot", "The domain has no dot.")
    if not domain.isascii() or "xn--" in domain:  # the same encoding as identity resolution's
        encoded = ascii_domain(domain)
        if encoded is None:
            return _p("domain_idna", "The domain is not a valid internationalised domain name.")
        domain = encoded
    if len(domain) > MAX_DOMAIN:
        return _p("domain_too_long", f"The domain is longer than {MAX_DOMAIN} characters.")
    labels = domain.split(".")
    if len(labels) < 2:
        return _p("domain_no_dot", "The domain has no dot.")
    for label in labels:
        if not _LABEL.match(label):
            return _p(
                "domain_label",
                "A part of the domain is empty, too long, starts or ends with a hyphen, or has "
                "characters other than letters, digits and hyphens.",
            )
    tld = labels[-1]
    if tld.isdigit() or len(tld) < 2:
        return _p("domain_tld", "The top-level domain is not valid.")
    if tld in RESERVED_TLDS or ".".join(labels[-2:]) in RESERVED_DOMAINS:
        return _p("reserved_domain", "The domain is reserved for examples and tests.")
    return domain


def _local(local: str) -> Problem | None:
    if not local:
        return _p("local_missing", "The address has nothing before the @.")
    if len(local.encode("utf-8")) > MAX_LOCAL:
        return _p("local_too_long", f"The part before the @ is longer than {MAX_LOCAL} bytes.")
    if local.startswith('"'):
        return _p("local_quoted", "Quoted local parts are not accepted.")
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return _p("local_dots", "The part before the @ starts or ends with a dot or has two dots.")
    for atom in local.split("."):
        if not atom.isascii():
            if not all(ch.isalnum() or _ATEXT.match(ch) for ch in atom):
                return _p("local_characters", "The part before the @ has characters not allowed.")
        elif not _ATEXT.match(atom):
            return _p("local_characters", "The part before the @ has characters not allowed.")
    if is_junk(local):  # the rule that keeps it from linking profiles
        return _p("placeholder", "The address is a placeholder, not a person's address.")
    return None


def validate_email(value: Any) -> Outcome[str]:
    """A mail address as ``local@domain``: trimmed, NFKC, lower case, the domain in punycode.

    Warnings: ``email.disposable`` (a throw-away mailbox service), ``email.domain_typo`` (with
    the likely intended provider as ``suggestion``; the address is not rewritten).
    """
    if not isinstance(value, str):
        return _p("not_text", "The address is not text.")
    text = normalize_text(value).lower()
    if not text:
        return _p("empty", "The address is empty.")
    if not text.isprintable() or _SPACE.search(text):
        return _p("whitespace", "The address contains spaces or control characters.")
    if text.count("@") != 1:
        return _p("at_sign", "An address has exactly one @.")
    local, raw_domain = text.split("@")
    if (bad := _local(local)) is not None:
        return bad
    domain = _domain(raw_domain)
    if isinstance(domain, Problem):
        return domain
    address = f"{local}@{domain}"
    if len(address.encode("utf-8")) > MAX_ADDRESS:
        return _p("too_long", f"The address is longer than {MAX_ADDRESS} characters.")
    warnings: list[Problem] = []
    if is_disposable_domain(domain):
        warnings.append(
            warning("email.disposable", "The domain belongs to a disposable mailbox service.")
        )
    if (suggestion := suggest_domain(domain)) is not None:  # typo-squats are often disposable
        warnings.append(
            warning(
                "email.domain_typo",
                "The domain looks like a typo of a large provider's domain.",
                suggestion=suggestion,
            )
        )
    return Normalised(address, tuple(warnings))
