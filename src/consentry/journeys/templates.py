"""Message templates of journey steps: Jinja2 in a sandbox, checked when a journey is saved and
rendered for each send, and the context a message is rendered with.

A template sees plain data only (dicts, lists, strings, numbers, booleans, None); the
variables are documented in ``VARIABLES`` and in docs/journeys.md:

- ``profile``: the unified profile's id and its usual personal fields (``first_name``,
  ``last_name``, ``name``, ``email``, ``phone``, ``city``, ``country``, ``language``,
  ``timezone``, ``birthday``), opened; None when unknown. Any other name is an error.
- ``traits``: every current trait of the profile (``traits.plan``); a trait the profile lacks
  is None, since traits differ from shop to shop.
- ``cart``: the trigger's cart (else the newest open one): ``id``, ``items`` (``product_id``,
  ``name``, ``category``, ``price``, ``quantity``, ``url``, ``image_url``), ``count``,
  ``value``, ``currency``; empty (``items == []``) when there is none.
- ``order``: the trigger's order (else the newest): ``id``, ``total``, ``currency``,
  ``placed_at``, ``items``; empty when there is none.
- ``recommendations``: up to ``RECOMMENDATIONS`` products from the recommendation model
  (``recommend.serving.for_profile``, which applies the ``personalize`` consent); empty when
  the workspace has no model.
- ``event``: the trigger event's ``name`` and ``properties`` (a missing property is None).
- ``product``: the product the trigger event was about (``product_id``, ``name``,
  ``category``, ``price``, ``url``, ``image_url``); empty when none.
- ``brand``: ``name``, ``support_email``, ``privacy_policy_url`` of the customer pages.
- ``unsubscribe_url`` (one-click, for the step's purpose), ``preferences_url``, ``today``.

The sandbox (:class:`jinja2.sandbox.ImmutableSandboxedEnvironment`) is narrowed further:
``a.b`` and ``a["b"]`` read keys of mappings and indexes of lists only (no attribute or method
of any object but the loop's counters), a short list of filters, ``range`` up to
``MAX_RANGE``, loops nested at most ``MAX_LOOP_DEPTH`` deep, no ``set``, ``with``, macros,
imports or ``autoescape`` blocks, ``*``/``%``/``**`` checked for size, and every rendered part
capped in length (``LIMITS``). An undefined name is an error (``StrictUndefined``). HTML is
autoescaped; text, subject and SMS are not; a webhook body escapes each value for a JSON
string (``"{{ profile.first_name }}"`` stays valid JSON; ``{{ cart|tojson }}`` inserts a
value).
"""

from __future__ import annotations

import html as html_lib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

from jinja2 import StrictUndefined, nodes
from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup
from sqlalchemy.orm import Session

from consentry.commerce import feed as commerce_feed
from consentry.commerce import service as commerce
from consentry.config import RecommendSettings
from consentry.consent import links as consent_links
from consentry.consent import preferences as pc
from consentry.consent import service as consent
from consentry.consent.i18n import LANGUAGES
from consentry.errors import Conflict, FieldError
from consentry.journeys.models import Template
from consentry.profiles import service as profiles
from consentry.profiles.models import trait_slug
from consentry.recommend import serving

Kind = Literal["email", "sms", "webhook"]
KINDS: tuple[Kind, ...] = ("email", "sms", "webhook")
PARTS: dict[str, tuple[str, ...]] = {
    "email": ("subject", "text", "html"),
    "sms": ("text",),
    "webhook": ("text",),
}
# (source characters, rendered characters) per part; SMS: ten concatenated segments.
LIMITS: dict[tuple[str, str], tuple[int, int]] = {
    ("email", "subject"): (1_000, 255),
    ("email", "text"): (50_000, 100_000),
    ("email", "html"): (200_000, 500_000),
    ("sms", "text"): (2_000, 1_600),
    ("webhook", "text"): (50_000, 65_536),
}
MAX_RANGE = 1_000
MAX_LOOP_DEPTH = 2
MAX_POWER_BITS = 256
RECOMMENDATIONS = 4
PRODUCT_FIELDS = ("product_id", "name", "category", "price", "url", "image_url")
PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "name",
    "email",
    "phone",
    "city",
    "country",
    "language",
    "timezone",
    "birthday",
)
VARIABLES = (
    "profile",
    "traits",
    "cart",
    "order",
    "recommendations",
    "event",
    "product",
    "brand",
    "unsubscribe_url",
    "preferences_url",
    "today",
)
_REFERENCES = ("cart_id", "checkout_id", "order_id", "product_id")
_LOOP_FIELDS = frozenset(
    {"index", "index0", "revindex", "revindex0", "first", "last", "length", "depth", "depth0"}
)
_SAFE_FILTERS = (
    "abs",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "filesizeformat",
    "first",
    "float",
    "forceescape",
    "groupby",
    "int",
    "items",
    "join",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "reverse",
    "round",
    "select",
    "selectattr",
    "sort",
    "string",
    "striptags",
    "sum",
    "title",
    "tojson",
    "trim",
    "truncate",
    "unique",
    "upper",
    "urlencode",
    "wordcount",
)
_FORBIDDEN_NODES: tuple[tuple[type[nodes.Node], str], ...] = (
    (nodes.Extends, "extends"),
    (nodes.Include, "include"),
    (nodes.Import, "import"),
    (nodes.FromImport, "import"),
    (nodes.Macro, "macro"),
    (nodes.CallBlock, "call"),
    (nodes.Assign, "set"),
    (nodes.AssignBlock, "set"),
    (nodes.With, "with"),
    (nodes.Block, "block"),
    (nodes.ScopedEvalContextModifier, "autoescape"),
    (nodes.EvalContextModifier, "autoescape"),
    (nodes.Scope, "scope"),
)


class TemplateFailure(Exception):
    """A template that does not render: its syntax, a name it uses, the sandbox, a size
    limit, or a webhook body that is not JSON. ``part`` names the template's part."""

    def __init__(self, part: str, reason: str) -> None:
        super().__init__(f"{part}: {reason}")
        self.part = part
        self.reason = reason


MessageTemplate = Template
"""What a step says (the parsed step's ``template``): ``subject`` and ``html`` for email only;
``text`` is the plain-text part of an email, the SMS, or the JSON body of a webhook."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered message. An email always has ``html`` (made from the text when the
    template has none); an SMS and a webhook have ``text`` only."""

    subject: str | None
    text: str
    html: str | None


# --- the sandbox --------------------------------------------------------------------------------


class _Traits(dict[str, Any]):
    """A mapping whose missing keys read as None: traits and event properties vary."""

    def __missing__(self, key: str) -> None:
        return None


def _checked_range(*args: int) -> range:
    found = range(*args)
    if len(found) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items")
    return found


def _money(value: Any, currency: str | None = None) -> str:
    """``12.5|money("EUR")`` -> ``12.50 EUR``; an empty string for a value that is no amount."""
    if isinstance(value, bool) or value is None:
        return ""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(amount):
        return ""
    text = f"{amount:,.2f}"
    return f"{text} {currency}" if currency else text


def _replace(value: Any, old: str, new: str, count: int | None = None) -> Any:
    """``replace`` with the size of its result checked before it is built."""
    text, old, new = str(value), str(old), str(new)
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    if len(text) + hits * max(len(new) - len(old), 0) > LIMITS["email", "html"][1]:
        raise SecurityError("replace() would build too long a text")
    replaced = text.replace(old, new, -1 if count is None else count)
    return Markup(replaced) if isinstance(value, Markup) else replaced


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


class _Sandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, narrowed to reading plain data."""

    intercepted_binops = frozenset({"*", "%", "**"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        del value  # what the attribute holds does not matter: only the loop's counters are read
        return isinstance(obj, LoopContext) and attr in _LOOP_FIELDS

    def is_safe_callable(self, obj: Any) -> bool:
        return obj is _checked_range

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            return self._key(obj, attribute)
        if isinstance(obj, LoopContext) and attribute in _LOOP_FIELDS:
            return getattr(obj, attribute)
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping):
            return self._key(obj, argument)
        if isinstance(obj, list | tuple | str) and (
            isinstance(argument, slice)
            or (isinstance(argument, int) and not isinstance(argument, bool))
        ):
            try:
                return obj[argument]
            except IndexError:
                pass
        return self.undefined(obj=obj, name=str(argument))

    def _key(self, obj: Mapping[Any, Any], key: Any) -> Any:
        try:
            return obj[key]
        except (KeyError, TypeError):
            return self.undefined(obj=obj, name=str(key))

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        del context  # the operands alone decide
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                size = _size(seq)
                if size is not None and isinstance(times, int) and size * times > MAX_RANGE * 10:
                    raise SecurityError("repeating a text or list is limited")
            return left * right
        if operator == "%":
            if isinstance(left, str):
                raise SecurityError("% formatting is not available; use filters")
            return left % right
        if isinstance(left, int) and isinstance(right, int) and not isinstance(right, bool):
            bits = max(abs(left), 2).bit_length() * abs(right)
            if right > 0 and bits > MAX_POWER_BITS:
                raise SecurityError("the power is too large")
        return left**right


def _text_finalize(value: Any) -> Any:
    return "" if value is None else value


def _json_finalize(value: Any) -> Any:
    """Each ``{{ value }}`` of a webhook body, escaped for a JSON string (Markup, such as the
    output of ``tojson``, is inserted as it is; None, booleans and numbers as JSON)."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)[1:-1]
    if isinstance(value, float) and not math.isfinite(value):
        return "null"
    return json.dumps(value, ensure_ascii=False, default=str)


def _environment(mode: str) -> _Sandbox:
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=mode == "html",
        finalize=_json_finalize if mode == "json" else _text_finalize,
        auto_reload=False,
        cache_size=0,
    )
    env.filters = {name: FILTERS[name] for name in _SAFE_FILTERS}
    env.filters["replace"] = _replace
    env.filters["money"] = _money
    env.globals = {"range": _checked_range}
    env.policies["json.dumps_kwargs"] = {"sort_keys": False, "ensure_ascii": False}
    return env


_ENVIRONMENTS = {mode: _environment(mode) for mode in ("text", "html", "json")}


def _mode(kind: str, part: str) -> str:
    if kind == "webhook":
        return "json"
    return "html" if part == "html" else "text"


def _check_tree(tree: nodes.Template) -> None:
    for node_type, name in _FORBIDDEN_NODES:
        if next(tree.find_all(node_type), None) is not None:
            raise SecurityError(f"{{% {name} %}} is not available in message templates")
    for call in tree.find_all(nodes.Call):
        if not (isinstance(call.node, nodes.Name) and call.node.name == "range"):
            raise SecurityError("only range() can be called; use filters")
    if _loop_depth(tree) > MAX_LOOP_DEPTH:
        raise SecurityError(f"loops may be nested at most {MAX_LOOP_DEPTH} deep")


def _loop_depth(node: nodes.Node) -> int:
    deepest = max((_loop_depth(child) for child in node.iter_child_nodes()), default=0)
    return deepest + 1 if isinstance(node, nodes.For) else deepest


@lru_cache(maxsize=512)
def _compiled(mode: str, source: str) -> JinjaTemplate:
    """The checked, compiled template (cached: a journey renders the same source per send)."""
    env = _ENVIRONMENTS[mode]
    _check_tree(env.parse(source))
    return env.from_string(source)


def _reason(exc: BaseException) -> str:
    message = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    line = getattr(exc, "lineno", None)
    message = " ".join(message.split())[:300]
    return f"line {line}: {message}" if line else message


def _render_part(kind: str, part: str, source: str, context: Mapping[str, Any]) -> str:
    source_limit, output_limit = LIMITS[kind, part]
    if len(source) > source_limit:
        raise TemplateFailure(part, f"at most {source_limit} characters")
    try:
        template = _compiled(_mode(kind, part), source)
        chunks: list[str] = []
        size = 0
        for chunk in template.generate(dict(context)):
            size += len(chunk)
            if size > output_limit:
                raise TemplateFailure(part, f"renders to more than {output_limit} characters")
            chunks.append(chunk)
    except TemplateFailure:
        raise
    except Exception as exc:  # user code in a sandbox: whatever it raises is its failure
        raise TemplateFailure(part, _reason(exc)) from None
    return "".join(chunks)


def _html_of_text(text: str) -> str:
    """An HTML part for an email whose template has none: the text's paragraphs, escaped."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    body = "\n".join(
        "<p>" + html_lib.escape(p.strip()).replace("\n", "<br>\n") + "</p>" for p in paragraphs
    )
    return f'<!doctype html>\n<html><body style="font-family:sans-serif">\n{body}\n</body></html>'


_LINK = re.compile(  # a label is bounded: an unclosed <a> never scans the rest of the text
    r"<a\s[^>]{0,2000}?href=(\"[^\"]{0,4000}\"|'[^']{0,4000}')[^>]{0,2000}>(.{0,1000}?)</a>",
    re.I | re.S,
)
_BREAK = re.compile(r"<(br|/p|/div|/h[1-6]|/li|/tr)\b[^>]*>", re.I)


def _text_of_html(html: str) -> str:
    """A plain-text part for an email whose template has HTML only: links as ``label (url)``,
    block ends as line breaks, tags dropped, entities decoded."""

    def link(match: re.Match[str]) -> str:
        url = html_lib.unescape(match.group(1)[1:-1])
        label = Markup(match.group(2)).striptags()
        return f"{label} ({url})" if label and label != url else url

    text = _BREAK.sub("\n", _LINK.sub(link, html))
    lines = (Markup(line).striptags() for line in text.split("\n"))
    return "\n".join(line for line in lines if line).strip()


def render(template: MessageTemplate, *, kind: Kind, context: Mapping[str, Any]) -> Rendered:
    """Render ``template`` for one message; :class:`TemplateFailure` naming the part when it
    does not render (never another exception)."""
    if kind == "email":
        subject = " ".join(_render_part(kind, "subject", template.subject or "", context).split())
        if not subject:
            raise TemplateFailure("subject", "renders to an empty subject")
        html = (
            _render_part(kind, "html", template.html, context)
            if template.html is not None
            else None
        )
        if template.text.strip() or html is None:
            text = _render_part(kind, "text", template.text, context)
        else:
            text = _text_of_html(html)
        if not text.strip():
            raise TemplateFailure("text", "renders to an empty message")
        return Rendered(subject, text, html if html is not None else _html_of_text(text))
    text = _render_part(kind, "text", template.text, context)
    if not text.strip():
        raise TemplateFailure("text", "renders to an empty message")
    if kind == "webhook":
        try:
            body = json.loads(text)
        except json.JSONDecodeError as exc:
            near = text[max(exc.pos - 20, 0) : exc.pos + 20]
            reason = f"does not render to JSON ({exc.msg} near {near!r}); put text values in "
            raise TemplateFailure(
                "text", reason + 'quotes ("{{ x }}") or use {{ x|tojson }}'
            ) from None
        if not isinstance(body, dict):
            raise TemplateFailure("text", "must render to a JSON object")
    return Rendered(None, text, None)


# --- checking a template when a journey is saved ------------------------------------------------


SAMPLE_URL = "https://shop.example/"


def sample_context() -> dict[str, Any]:
    """A realistic context with every documented variable filled: what a template is checked
    against when a journey is saved (docs/journeys.md lists the same variables)."""
    items = [
        {
            "product_id": "p-100",
            "name": "Linen shirt",
            "category": "Shirts",
            "price": 49.0,
            "quantity": 1,
            "url": SAMPLE_URL + "p/100",
            "image_url": SAMPLE_URL + "img/100.jpg",
        },
        {
            "product_id": "p-200",
            "name": "Canvas sneakers",
            "category": "Shoes",
            "price": 79.5,
            "quantity": 2,
            "url": SAMPLE_URL + "p/200",
            "image_url": SAMPLE_URL + "img/200.jpg",
        },
    ]
    return {
        "profile": {
            "id": "00000000-0000-4000-8000-000000000000",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "phone": "+447700900123",
            "city": "London",
            "country": "GB",
            "language": "en",
            "timezone": "Europe/London",
            "birthday": "1815-12-10",
        },
        "traits": _Traits({"plan": "gold", "first_name": "Ada", "loyalty_tier": "silver"}),
        "cart": {
            "id": "cart-1",
            "items": items,
            "count": 3,
            "value": 208.0,
            "currency": "EUR",
        },
        "order": {
            "id": "order-1",
            "total": 128.5,
            "currency": "EUR",
            "placed_at": "2024-05-01T12:30:00+00:00",
            "items": items,
        },
        "recommendations": [
            {k: v for k, v in item.items() if k != "quantity"}
            | {"product_id": f"p-{300 + i}", "name": f"Recommended {i + 1}"}
            for i, item in enumerate(items * 2)
        ],
        "event": {"name": "Checkout Started", "properties": _Traits({"cart_id": "cart-1"})},
        "product": {k: v for k, v in items[0].items() if k != "quantity"},
        "brand": {
            "name": "Example Shop",
            "support_email": "help@shop.example",
            "privacy_policy_url": SAMPLE_URL + "privacy",
        },
        "unsubscribe_url": SAMPLE_URL + "u/sample-unsubscribe-token",
        "preferences_url": SAMPLE_URL + "p/sample-preferences-token",
        "today": "2024-05-02",
    }


def sparse_context() -> dict[str, Any]:
    """The sample of a profile that gave nothing but an address: no name, no cart, no order,
    no recommendations. A template must render for it too (guard with ``{% if cart.items %}``
    or ``{{ profile.first_name or "there" }}``), so a send never fails on missing data."""
    full = sample_context()
    return full | {
        "profile": {"id": full["profile"]["id"], "email": "someone@example.com"}
        | {f: None for f in PROFILE_FIELDS if f != "email"},
        "traits": _Traits(),
        "cart": {"id": None, "items": [], "count": 0, "value": 0, "currency": None},
        "order": {"id": None, "total": 0, "currency": None, "placed_at": None, "items": []},
        "recommendations": [],
        "event": {"name": "Checkout Started", "properties": _Traits()},
        "product": dict.fromkeys(PRODUCT_FIELDS),
    }


def template_problems(template: MessageTemplate, *, kind: Kind, field: str) -> list[FieldError]:
    """What is wrong with ``template`` for a step of ``kind``, each naming ``field.<part>``:
    syntax errors, unknown variables and filters, what the sandbox refuses, size limits, an
    email without an unsubscribe or preferences link, a webhook body that is not a JSON
    object. Checked by rendering the full sample and the sparse one (:func:`sample_context`,
    :func:`sparse_context`). Empty when it is fine."""
    if kind not in KINDS:
        return [FieldError(field, f"no templates for step type {kind!r}")]
    problems: list[FieldError] = []
    unused = [p for p in ("subject", "html") if p not in PARTS[kind]]
    for part in unused:
        if getattr(template, part) is not None:
            problems.append(FieldError(f"{field}.{part}", f"a {kind} message has no {part}"))
    if kind == "email" and not (template.subject or "").strip():
        problems.append(FieldError(f"{field}.subject", "required for an email"))
    if not template.text.strip() and (kind != "email" or template.html is None):
        problems.append(FieldError(f"{field}.text", "required"))
    if problems:
        return problems
    seen: set[str] = set()
    for label, context in (("", sample_context()), ("sparse", sparse_context())):
        try:
            rendered = render(template, kind=kind, context=context)
        except TemplateFailure as failure:
            if failure.part not in seen:
                seen.add(failure.part)
                reason = failure.reason
                if label:
                    reason = f"{reason} (for a profile without name, cart, order or products)"
                problems.append(FieldError(f"{field}.{failure.part}", reason))
            continue
        if kind == "email" and not label:
            problems.extend(_link_problems(template, rendered, context, field))
    return problems


def preview(template: MessageTemplate, *, kind: Kind) -> Rendered | None:
    """``template`` rendered for the sample profile (what the journey page shows); None when
    it does not render."""
    try:
        return render(template, kind=kind, context=sample_context())
    except TemplateFailure:
        return None


def _link_problems(
    template: MessageTemplate, rendered: Rendered, context: Mapping[str, Any], field: str
) -> list[FieldError]:
    """A marketing email must let its reader leave: the text part, and the HTML part when
    the template has one, must contain the unsubscribe or the preferences link."""
    wanted = (str(context["unsubscribe_url"]), str(context["preferences_url"]))
    parts = [("text", rendered.text)]
    if template.html is not None and rendered.html is not None:
        parts.append(("html", rendered.html))
    return [
        FieldError(
            f"{field}.{part}",
            "must contain {{ unsubscribe_url }} or {{ preferences_url }}: every marketing "
            "email lets its reader opt out",
        )
        for part, body in parts
        if not any(url in body for url in wanted)
    ]


# --- links and headers --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkMaker:
    """Signs a customer's links (``consent.links``, the preference center's key) and makes
    their public URLs; the same links the preference center and one-click unsubscribe open."""

    secret: str
    public_url: str
    now: datetime | None = None

    def _token(
        self, workspace_id: str, profile_id: str, kind: str, extra: Mapping[str, str]
    ) -> str:
        return consent_links.sign(
            consent_links.link_key(self.secret, workspace_id),
            workspace_id=workspace_id,
            profile_id=profile_id,
            kind=kind,
            now=self.now or datetime.now(UTC),
            ttl=None,
            **extra,
        )

    def unsubscribe(
        self, *, workspace_id: str, profile_id: str, purpose: str, language: str | None = None
    ) -> str:
        """One-click unsubscribe from ``purpose`` (RFC 8058; valid for a year)."""
        token = self._token(
            workspace_id,
            profile_id,
            consent_links.UNSUBSCRIBE,
            {"purpose": purpose, "channel": pc.channel_of(purpose)},
        )
        return pc.link_url(self.public_url, pc.UNSUBSCRIBE_PATH, token, _language(language))

    def preferences(
        self, *, workspace_id: str, profile_id: str, language: str | None = None
    ) -> str:
        """The preference center (valid for 30 days)."""
        token = self._token(workspace_id, profile_id, consent_links.PREFERENCES, {})
        return pc.link_url(self.public_url, pc.PREFERENCES_PATH, token, _language(language))


def _language(language: str | None) -> str | None:
    return language if language in LANGUAGES else None


def mail_headers(*, unsubscribe_url: str, mailto: str | None = None) -> dict[str, str]:
    """The headers of a journey's email: ``List-Unsubscribe`` (the one-click URL, and
    ``mailto:`` when the brand has a support address) and ``List-Unsubscribe-Post``."""
    return pc.unsubscribe_headers(unsubscribe_url, mailto)


# --- the context of one message -----------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A stored value as template data: Decimals as floats, dates as ISO text."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _pick(by_slug: Mapping[str, Any], *slugs: str) -> Any:
    for slug in slugs:
        value = by_slug.get(slug)
        if value not in (None, ""):
            return value
    return None


def _profile_fields(
    profile_id: str, traits: Mapping[str, Any], identifiers: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    by_slug = {trait_slug(k): v for k, v in traits.items()}
    address = by_slug.get("address")
    address = address if isinstance(address, Mapping) else {}
    found = {
        "first_name": _pick(by_slug, "firstname", "givenname"),
        "last_name": _pick(by_slug, "lastname", "familyname", "surname"),
        "name": _pick(by_slug, "name", "fullname"),
        "email": _pick(by_slug, "email"),
        "phone": _pick(by_slug, "phone", "mobile"),
        "city": _pick(by_slug, "city") or address.get("city"),
        "country": _pick(by_slug, "country", "countrycode") or address.get("country"),
        "language": _pick(by_slug, "language", "locale"),
        "timezone": _pick(by_slug, "timezone"),
        "birthday": _pick(by_slug, "birthday", "dateofbirth"),
    }
    if found["name"] is None and (found["first_name"] or found["last_name"]):
        found["name"] = " ".join(str(p) for p in (found["first_name"], found["last_name"]) if p)
    for kind in ("email", "phone"):
        if found[kind] is None:
            found[kind] = next((i["value"] for i in identifiers if i.get("type") == kind), None)
    return {"id": profile_id} | {k: _plain(v) for k, v in found.items()}


def _trigger_value(trigger: Mapping[str, Any], key: str) -> str | None:
    properties = trigger.get("properties")
    value = trigger.get(key)
    if value is None and isinstance(properties, Mapping):
        value = properties.get(key)
    return str(value) if value not in (None, "") else None


def _with_details(
    items: Sequence[Mapping[str, Any]], details: Mapping[str, Any]
) -> list[dict[str, Any]]:
    out = []
    for item in items:
        row = details.get(str(item.get("product_id")))
        out.append(
            {
                "product_id": item.get("product_id"),
                "name": item.get("name") or (row[1] if row else None),
                "category": item.get("category") or (row[2] if row else None),
                "price": _plain(item.get("price")),
                "quantity": int(item.get("quantity") or 1),
                "url": row[4] if row else None,
                "image_url": row[5] if row else None,
            }
        )
    return out


def _cart(cart: Mapping[str, Any] | None, details: Mapping[str, Any]) -> dict[str, Any]:
    if cart is None:
        return {"id": None, "items": [], "count": 0, "value": 0, "currency": None}
    items = _with_details(cart["items"] or [], details)
    return {
        "id": cart["cart_id"],
        "items": items,
        "count": sum(i["quantity"] for i in items),
        "value": _plain(cart["value"]) or 0,
        "currency": cart["currency"],
    }


def _order(order: commerce.OrderView | None, details: Mapping[str, Any]) -> dict[str, Any]:
    if order is None:
        return {"id": None, "total": 0, "currency": None, "placed_at": None, "items": []}
    return {
        "id": order.order_id,
        "total": float(order.total),
        "currency": order.currency,
        "placed_at": order.placed_at.isoformat(),
        "items": _with_details(order.items, details),
    }


def _product(wanted: str | None, details: Mapping[str, Any]) -> dict[str, Any]:
    """The product the trigger event was about (its ``product_id``), from the catalogue."""
    found = dict.fromkeys(PRODUCT_FIELDS)
    if wanted is None:
        return found
    row = details.get(wanted)
    found["product_id"] = wanted
    if row is not None:
        found.update(
            name=row[1], category=row[2], price=_plain(row[3]), url=row[4], image_url=row[5]
        )
    return found


def _commerce(
    session: Session, workspace_id: str, members: Sequence[str], trigger: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The ``cart``, ``order`` and ``product`` of a message: the trigger's cart (else the
    newest open one), its order (else the newest), its product, with the catalogue's details
    of all their products read at once."""
    carts = commerce.open_carts(session=session, workspace_id=workspace_id, profile_ids=members)
    cart_id = _trigger_value(trigger, "cart_id") or _trigger_value(trigger, "checkout_id")
    cart = next((c for c in carts if c["cart_id"] == cart_id), carts[0] if carts else None)
    order_id = _trigger_value(trigger, "order_id")
    orders = commerce.orders_of(
        session=session, workspace_id=workspace_id, profile_ids=members, limit=50
    )
    order = next((o for o in orders if o.order_id == order_id), orders[0] if orders else None)
    product = _trigger_value(trigger, "product_id")
    items = [*((cart["items"] or []) if cart else []), *(order.items if order else [])]
    ids = {str(i.get("product_id")) for i in items if i.get("product_id")}
    if product is not None:
        ids.add(product)
    details = commerce_feed.product_details(
        session=session, workspace_id=workspace_id, product_ids=ids
    )
    return _cart(cart, details), _order(order, details), _product(product, details)


def _recommendations(
    session: Session,
    workspace_id: str,
    profile_id: str,
    count: int,
    settings: RecommendSettings,
    channel: str,
) -> list[dict[str, Any]]:
    if count <= 0:
        return []
    context = channel if channel in serving.CONTEXTS else "email"
    try:
        listing = serving.for_profile(
            session=session,
            workspace_id=workspace_id,
            profile_id=profile_id,
            settings=settings,
            count=count,
            context=context,
        )
    except Conflict:  # no model trained yet: a message without products
        return []
    return [{k: item.get(k) for k in PRODUCT_FIELDS} for item in listing["items"]]


def message_context(
    *,
    session: Session,
    workspace_id: str,
    profile_id: str,
    trigger: Mapping[str, Any],
    links: LinkMaker,
    purpose: str | None = None,
    channel: str = "email",
    recommendations: int = RECOMMENDATIONS,
    recommend_settings: RecommendSettings | None = None,
) -> dict[str, Any]:
    """The variables of one message to ``profile_id`` (any member id of a unified profile).

    ``trigger`` is what started the enrolment: ``event`` (its name), ``properties`` (opened),
    ``cart_id``/``order_id`` when known. ``purpose`` is the step's: ``unsubscribe_url``
    withdraws it; without one, it opens the preference center. Reads personal data (opened
    traits); the caller decides what is sent and records it. NotFound for an unknown profile.
    """
    view = profiles.get_profile(session=session, workspace_id=workspace_id, profile_id=profile_id)
    branding = consent.get_branding(session=session, workspace_id=workspace_id)
    fields = _profile_fields(view.id, view.traits, view.identifiers)
    language = fields["language"] if isinstance(fields["language"], str) else None
    language = language or branding.default_language
    preferences_url = links.preferences(
        workspace_id=workspace_id, profile_id=view.id, language=language
    )
    unsubscribe_url = (
        links.unsubscribe(
            workspace_id=workspace_id, profile_id=view.id, purpose=purpose, language=language
        )
        if purpose
        else preferences_url
    )
    properties = trigger.get("properties")
    if not isinstance(properties, Mapping):  # the references an enrolment keeps of its event
        properties = {k: v for k, v in trigger.items() if k in _REFERENCES}
    event_name = trigger.get("event")
    cart, order, product = _commerce(session, workspace_id, view.member_ids, trigger)
    return {
        "profile": fields,
        "traits": _Traits({str(k): _plain(v) for k, v in view.traits.items()}),
        "cart": cart,
        "order": order,
        "recommendations": _recommendations(
            session,
            workspace_id,
            view.id,
            recommendations,
            recommend_settings or RecommendSettings(),
            channel,
        ),
        "event": {
            "name": event_name if isinstance(event_name, str) else None,
            "properties": _Traits(_plain(properties)),
        },
        "product": product,
        "brand": {
            "name": branding.brand_name,
            "support_email": branding.support_email,
            "privacy_policy_url": branding.privacy_policy_url,
        },
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
        "today": datetime.now(UTC).date().isoformat(),
    }


def template_of(document: Mapping[str, Any] | None) -> MessageTemplate:
    """A step's ``template`` document as a :class:`MessageTemplate` (values as given: the
    journey's parser checks their types and names the field)."""
    document = document or {}
    subject, html = document.get("subject"), document.get("html")
    return MessageTemplate(
        subject=subject if isinstance(subject, str) else None,
        text=str(document.get("text") or ""),
        html=html if isinstance(html, str) else None,
    )


def documented_variables() -> Iterator[tuple[str, str]]:
    """(variable, what it holds) for the docs and the journey page's help."""
    yield from _DESCRIPTIONS.items()


_DESCRIPTIONS: dict[str, str] = {
    "profile": "id, " + ", ".join(PROFILE_FIELDS) + " (None when unknown)",
    "traits": "every current trait, e.g. traits.plan (None when the profile lacks it)",
    "cart": "id, items (product_id, name, category, price, quantity, url, image_url), count, "
    "value, currency; items is empty when there is no open cart",
    "order": "id, total, currency, placed_at, items; items is empty when there is no order",
    "recommendations": f"up to {RECOMMENDATIONS} products: product_id, name, category, price, "
    "url, image_url (empty without a trained model)",
    "event": "name and properties of the trigger event",
    "product": "the product the trigger event was about: "
    + ", ".join(PRODUCT_FIELDS)
    + " (empty when none)",
    "brand": "name, support_email, privacy_policy_url",
    "unsubscribe_url": "one-click unsubscribe from the step's purpose",
    "preferences_url": "the customer's preference center",
    "today": "today's date, YYYY-MM-DD (UTC)",
}
