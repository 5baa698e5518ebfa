"""Ready-made journeys a shop switches on: welcome series, abandoned cart, browse abandonment,
post-purchase review request, NPS survey and win-back.

Each preset builds a definition document in the format of :mod:`consentry.journeys.models`
(trigger, exit, re-entry, goal, a holdout split, waits, branches and messages with default
copy) from the ids of the workspace's destinations and a few options (:func:`instantiate`,
pure). :func:`create_from_preset` saves it through ``journeys.service`` like any journey
(checked against the store: destinations, purposes, rules, templates), as a draft unless it
is activated at once.

Every preset starts with a split that holds ``holdout_percent`` of the entrants back (they get
nothing), so :mod:`consentry.journeys.attribution` can measure the uplift of the messages.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from consentry.errors import FieldError, Invalid
from consentry.journeys import service

EMAIL_PURPOSE = "marketing.communications.email"
SMS_PURPOSE = "marketing.communications.sms"
GOAL_EVENT = "Order Completed"
CHANNELS = ("email", "sms")
_URL = re.compile(r"^https?://[^\s\"'<>{}\\^`|%]+$")  # no Jinja delimiters, no quotes
_EVENT = re.compile(r"^[^\x00-\x1f{}%#]{1,200}$")


@dataclass(frozen=True, slots=True)
class Option:
    """A setting of a preset: its kind (``int``, ``event``, ``url``, ``text``), default (None:
    required when ``required``), bounds for numbers and what it does."""

    name: str
    kind: str
    default: Any
    description: str
    low: int = 0
    high: int = 0
    required: bool = False

    def document(self) -> dict[str, Any]:
        """The option as the API lists it."""
        found: dict[str, Any] = {
            "name": self.name,
            "type": "integer" if self.kind == "int" else "string",
            "default": self.default,
            "required": self.required,
            "description": self.description,
        }
        if self.kind == "int":
            found.update(minimum=self.low, maximum=self.high)
        return found


@dataclass(frozen=True, slots=True)
class Preset:
    """A ready-made journey: ``build(destinations, options)`` makes its definition document."""

    name: str
    title: str
    summary: str
    channels: tuple[str, ...]  # destinations it needs
    optional_channels: tuple[str, ...]  # destinations it uses when given
    options: tuple[Option, ...]
    build: Callable[[Mapping[str, str], Mapping[str, Any]], dict[str, Any]]

    def document(self) -> dict[str, Any]:
        """The preset as ``GET /v1/journeys/presets`` lists it."""
        return {
            "name": self.name,
            "title": self.title,
            "description": self.summary,
            "channels": list(self.channels),
            "optional_channels": list(self.optional_channels),
            "options": [o.document() for o in (*_COMMON, *self.options)],
        }


_COMMON = (
    Option("name", "text", None, "The journey's name (default: the preset's title)."),
    Option(
        "holdout_percent",
        "int",
        10,
        "Share of entrants held back (sent nothing) to measure uplift against.",
        low=0,
        high=50,
    ),
)


# --- copy ---------------------------------------------------------------------------------------

_FOOTER_TEXT = """
--
{{ brand.name }}
You receive this because you agreed to hear from us.
Unsubscribe with one click: {{ unsubscribe_url }}
Choose what we send you: {{ preferences_url }}"""

_PRODUCTS_TEXT = """{% for item in ITEMS %}
- {{ item.name or "A product" }}{% if item.price %} ({{ item.price|money(CURRENCY) }}){% endif %}\
{% if item.url %}: {{ item.url }}{% endif %}{% endfor %}"""

_PRODUCTS_HTML = """<table role="presentation" width="100%" cellpadding="0" cellspacing="0">\
{% for item in ITEMS %}
<tr>{% if item.image_url %}<td width="96" style="padding:8px 0"><img src="{{ item.image_url }}" \
alt="" width="80" style="display:block;border-radius:6px"></td>{% endif %}
<td style="padding:8px;font-size:15px">{% if item.url %}<a href="{{ item.url }}" \
style="color:#1f3fa6">{{ item.name or "A product" }}</a>{% else %}{{ item.name or "A product" }}\
{% endif %}{% if item.price %}<br><span style="color:#555">{{ item.price|money(CURRENCY) }}\
</span>{% endif %}</td></tr>{% endfor %}
</table>"""


def _products(kind: str, items: str, currency: str) -> str:
    source = _PRODUCTS_HTML if kind == "html" else _PRODUCTS_TEXT
    return source.replace("ITEMS", items).replace("CURRENCY", currency)


def _html(body: str, button: tuple[str, str] | None = None) -> str:
    """A plain, mobile-friendly email around ``body`` with the brand on top and the opt-out
    links in the footer."""
    action = ""
    if button is not None:
        url, label = button
        action = (
            f'<p style="margin:24px 0"><a href="{url}" style="background:#1f3fa6;color:#ffffff;'
            f'padding:12px 20px;border-radius:6px;text-decoration:none;display:inline-block">'
            f"{label}</a></p>"
        )
    return (
        '<!doctype html>\n<html><body style="margin:0;background:#f4f5f7">\n'
        '<div style="max-width:600px;margin:0 auto;padding:24px;background:#ffffff;'
        'font-family:Helvetica,Arial,sans-serif;color:#1b1b1b;line-height:1.5">\n'
        '<p style="font-size:18px;font-weight:bold;margin:0 0 16px">{{ brand.name }}</p>\n'
        f"{body}\n{action}\n"
        '<hr style="border:none;border-top:1px solid #ddd;margin:24px 0">\n'
        '<p style="font-size:12px;color:#666">You receive this because you agreed to hear '
        'from {{ brand.name }}. <a href="{{ unsubscribe_url }}" style="color:#666">Unsubscribe'
        '</a> · <a href="{{ preferences_url }}" style="color:#666">Your preferences</a></p>\n'
        "</div>\n</body></html>"
    )


_HELLO = '{{ profile.first_name or "there" }}'


def _email(
    step_id: str, destination: str, subject: str, text: str, html: str, nxt: str | None = None
) -> dict[str, Any]:
    step: dict[str, Any] = {
        "id": step_id,
        "type": "email",
        "destination_id": destination,
        "purpose": EMAIL_PURPOSE,
        "template": {"subject": subject, "text": text + "\n" + _FOOTER_TEXT, "html": html},
    }
    if nxt is not None:
        step["next"] = nxt
    return step


def _holdout(percent: int, first: str) -> dict[str, Any]:
    return {
        "id": "holdout",
        "type": "split",
        "holdout_percent": percent,
        "variants": [{"name": "messaged", "weight": 100, "next": first}],
    }


def _no_order_within(days: int) -> dict[str, Any]:
    return {"event": GOAL_EVENT, "count": {"op": "eq", "value": 0}, "within_days": days}


def _base(
    options: Mapping[str, Any], title: str, description: str, trigger: dict[str, Any]
) -> dict[str, Any]:
    return {
        "name": options.get("name") or title,
        "description": description,
        "trigger": trigger,
    }


# --- the presets --------------------------------------------------------------------------------


def _welcome(destinations: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
    email = destinations["email"]
    recs_text = _products("text", "recommendations", "None")
    recs_html = _products("html", "recommendations", "None")
    return _base(
        options,
        "Welcome series",
        "Welcomes a new customer at once; three days later, if they have not ordered yet, "
        "shows them products they may like.",
        {"type": "event", "event": options["event"]},
    ) | {
        "goal": {"event": GOAL_EVENT, "within_days": 14},
        "steps": [
            _holdout(options["holdout_percent"], "welcome"),
            _email(
                "welcome",
                email,
                "Welcome to {{ brand.name }}, " + _HELLO + "!",
                f"Hi {_HELLO},\n\nThanks for joining {{{{ brand.name }}}}. We are glad you are "
                "here.\nYou will hear about new arrivals and offers from us now and then, never "
                "more than you asked for.",
                _html(
                    f"<p>Hi {_HELLO},</p><p>Thanks for joining {{{{ brand.name }}}}. We are glad "
                    "you are here. You will hear about new arrivals and offers from us now and "
                    "then, never more than you asked for.</p>"
                ),
            ),
            {"id": "settle", "type": "wait", "days": 3},
            {
                "id": "ordered",
                "type": "branch",
                "rule": _no_order_within(3),
                "then": "first-order",
                "else": "end",
            },
            _email(
                "first-order",
                email,
                "Picked for you, " + _HELLO,
                f"Hi {_HELLO},\n\nStill looking around? A few things other customers love:"
                f"{{% if recommendations %}}{recs_text}{{% else %}}\nHave a look at what is "
                "new in the shop.{% endif %}",
                _html(
                    f"<p>Hi {_HELLO},</p><p>Still looking around? A few things other customers "
                    f"love:</p>{{% if recommendations %}}{recs_html}{{% else %}}<p>Have a look "
                    "at what is new in the shop.</p>{% endif %}"
                ),
            ),
        ],
    }


def _abandoned_cart(destinations: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
    email, sms = destinations["email"], destinations.get("sms")
    cart_text = _products("text", "cart.items", "cart.currency")
    cart_html = _products("html", "cart.items", "cart.currency")
    steps: list[dict[str, Any]] = [
        _holdout(options["holdout_percent"], "pause"),
        {"id": "pause", "type": "wait", "hours": options["first_wait_hours"]},
        _email(
            "reminder",
            email,
            "{% if cart.count %}You left {{ cart.count }} item{{ 's' if cart.count != 1 }} "
            "in your cart{% else %}Your cart is waiting{% endif %}",
            f"Hi {_HELLO},\n\nYou were almost done. Your cart is saved for you:"
            f"{{% if cart.items %}}{cart_text}\n\nTotal: {{{{ cart.value|money(cart.currency) }}}}"
            "{% endif %}\n\nCome back whenever you are ready.",
            _html(
                f"<p>Hi {_HELLO},</p><p>You were almost done. Your cart is saved for you:</p>"
                f"{{% if cart.items %}}{cart_html}<p><strong>Total: "
                "{{ cart.value|money(cart.currency) }}</strong></p>{% endif %}"
                "<p>Come back whenever you are ready.</p>"
            ),
        ),
        {"id": "second-pause", "type": "wait", "hours": 20},
        {
            "id": "still-open",
            "type": "branch",
            "rule": _no_order_within(2),
            "then": "nudge",
            "else": "end",
        },
    ]
    if sms:
        steps.append(
            {
                "id": "nudge",
                "type": "sms",
                "destination_id": sms,
                "purpose": SMS_PURPOSE,
                "template": {
                    "text": "{{ brand.name }}: your cart is still waiting"
                    "{% if cart.count %} ({{ cart.count }} item{{ 's' if cart.count != 1 }})"
                    "{% endif %}. Opt out: {{ unsubscribe_url }}"
                },
            }
        )
    else:
        steps.append(
            _email(
                "nudge",
                email,
                "Still thinking it over, " + _HELLO + "?",
                f"Hi {_HELLO},\n\nYour cart is still there"
                f"{{% if cart.items %}}:{cart_text}{{% else %}}.{{% endif %}}\n\n"
                "Questions about sizes, delivery or returns? Just reply to this email"
                "{% if brand.support_email %} or write to {{ brand.support_email }}"
                "{% endif %}.",
                _html(
                    f"<p>Hi {_HELLO},</p><p>Your cart is still there.</p>"
                    f"{{% if cart.items %}}{cart_html}{{% endif %}}<p>Questions about sizes, "
                    "delivery or returns? Just reply to this email{% if brand.support_email %}"
                    " or write to {{ brand.support_email }}{% endif %}.</p>"
                ),
            )
        )
    return _base(
        options,
        "Abandoned cart",
        "Reminds a customer of the cart they left at checkout after a few hours, then once "
        "more the next day" + (" by SMS" if sms else "") + "; stops as soon as they order.",
        {"type": "event", "event": options["event"]},
    ) | {
        "exit_on": {"event": GOAL_EVENT},
        "reentry": {"after_days": 7},
        "goal": {"event": GOAL_EVENT, "within_days": 7},
        "steps": steps,
    }


def _browse_abandonment(
    destinations: Mapping[str, str], options: Mapping[str, Any]
) -> dict[str, Any]:
    recs_text = _products("text", "recommendations", "None")
    recs_html = _products("html", "recommendations", "None")
    return _base(
        options,
        "Browse abandonment",
        "A customer looked at products but added none to the cart: a day later, one email "
        "with products picked for them. At most every two weeks; stops when they order.",
        {"type": "event", "event": options["event"]},
    ) | {
        "exit_on": {"event": GOAL_EVENT},
        "reentry": {"after_days": 14},
        "goal": {"event": GOAL_EVENT, "within_days": 7},
        "steps": [
            _holdout(options["holdout_percent"], "pause"),
            {"id": "pause", "type": "wait", "hours": 24},
            {
                "id": "no-cart",
                "type": "branch",
                "rule": {
                    "event": "Product Added",
                    "count": {"op": "eq", "value": 0},
                    "within_days": 1,
                },
                "then": "picks",
                "else": "end",
            },
            _email(
                "picks",
                destinations["email"],
                "Saw something you liked, " + _HELLO + "?",
                f"Hi {_HELLO},\n\nThanks for stopping by."
                "{% if product.name %} Still thinking about {{ product.name }}?"
                "{% if product.url %} {{ product.url }}{% endif %}{% endif %}"
                f"{{% if recommendations %}}\nYou may also like:{recs_text}"
                "{% else %} New arrivals are in the shop every week.{% endif %}",
                _html(
                    f"<p>Hi {_HELLO},</p><p>Thanks for stopping by.{{% if product.name %}} "
                    'Still thinking about {% if product.url %}<a href="{{ product.url }}">'
                    "{{ product.name }}</a>{% else %}{{ product.name }}{% endif %}?{% endif %}"
                    f"{{% if recommendations %}} You may also like:</p>{recs_html}{{% else %}} "
                    "New arrivals are in the shop every week.</p>{% endif %}"
                ),
            ),
        ],
    }


def _review(destinations: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
    review_url = options.get("review_url")
    link_text = (
        f"\n\nWrite your review: {review_url}"
        if review_url
        else "{% for item in order.items %}{% if item.url %}\n- {{ item.name or 'Your product' }}"
        ": {{ item.url }}{% endif %}{% endfor %}"
    )
    items_html = _products("html", "order.items", "order.currency")
    button = (review_url, "Write a review") if review_url else None
    return _base(
        options,
        "Post-purchase review request",
        f"{options['days_after']} days after an order, asks the customer how they like what "
        "they bought and for a review.",
        {"type": "event", "event": GOAL_EVENT},
    ) | {
        "reentry": {"after_days": 30},
        "goal": {"event": GOAL_EVENT, "within_days": 30},
        "steps": [
            _holdout(options["holdout_percent"], "settle"),
            {"id": "settle", "type": "wait", "days": options["days_after"]},
            _email(
                "ask",
                destinations["email"],
                "How do you like your order, " + _HELLO + "?",
                f"Hi {_HELLO},\n\nWe hope you are enjoying your order"
                "{% if order.id %} {{ order.id }}{% endif %}. Would you tell other customers "
                "what you think? It takes a minute and helps them choose." + link_text,
                _html(
                    f"<p>Hi {_HELLO},</p><p>We hope you are enjoying your order"
                    "{% if order.id %} {{ order.id }}{% endif %}. Would you tell other customers "
                    "what you think? It takes a minute and helps them choose.</p>"
                    f"{{% if order.items %}}{items_html}{{% endif %}}",
                    button,
                ),
            ),
        ],
    }


def _nps(destinations: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
    survey = options["survey_url"]
    join = "&" if "?" in survey else "?"
    survey_html, join_html = html.escape(survey), html.escape(join)
    scores_text = (
        "{% for n in range(11) %}\n" + f"{{{{ n }}}}: {survey}{join}score={{{{ n }}}}"
        "{% if order.id %}&order={{ order.id|urlencode }}{% endif %}{% endfor %}"
    )
    scores_html = (
        '<table role="presentation" cellpadding="0" cellspacing="4"><tr>'
        "{% for n in range(11) %}"
        f'<td><a href="{survey_html}{join_html}score={{{{ n }}}}'
        '{% if order.id %}&amp;order={{ order.id|urlencode }}{% endif %}" '
        'style="display:inline-block;width:28px;padding:6px 0;text-align:center;'
        'border:1px solid #1f3fa6;border-radius:4px;color:#1f3fa6;text-decoration:none">'
        "{{ n }}</a></td>{% endfor %}</tr></table>"
        '<p style="font-size:12px;color:#666">0 = not at all likely, 10 = extremely likely</p>'
    )
    return _base(
        options,
        "NPS survey",
        f"{options['days_after']} days after an order, asks one question: how likely the "
        "customer is to recommend the shop (0 to 10, one click).",
        {"type": "event", "event": GOAL_EVENT},
    ) | {
        "reentry": {"after_days": 90},
        "goal": {"event": GOAL_EVENT, "within_days": 30},
        "steps": [
            _holdout(options["holdout_percent"], "settle"),
            {"id": "settle", "type": "wait", "days": options["days_after"]},
            _email(
                "ask",
                destinations["email"],
                "One question, " + _HELLO,
                f"Hi {_HELLO},\n\nHow likely are you to recommend {{{{ brand.name }}}} to a "
                "friend? Choose a number from 0 (not at all) to 10 (extremely likely):"
                + scores_text,
                _html(
                    f"<p>Hi {_HELLO},</p><p>How likely are you to recommend {{{{ brand.name }}}}"
                    " to a friend?</p>" + scores_html
                ),
            ),
        ],
    }


def _win_back(destinations: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
    email = destinations["email"]
    recs_text = _products("text", "recommendations", "None")
    recs_html = _products("html", "recommendations", "None")
    days = options["days"]
    return _base(
        options,
        "Win-back",
        f"A customer who ordered before has been inactive for {days} days: a 'we miss you' "
        "email with picks, a reminder a week later if they have not ordered, and the trait "
        "winback_sent set so other campaigns can leave them be.",
        {"type": "inactivity", "days": days},
    ) | {
        "eligibility": {"computed": "order_count", "op": "gte", "value": 1},
        "exit_on": {"event": GOAL_EVENT},
        "reentry": {"after_days": 180},
        "goal": {"event": GOAL_EVENT, "within_days": 14},
        "steps": [
            _holdout(options["holdout_percent"], "miss-you"),
            _email(
                "miss-you",
                email,
                "We miss you, " + _HELLO,
                f"Hi {_HELLO},\n\nIt has been a while. Here is what is new since your last "
                f"visit:{{% if recommendations %}}{recs_text}{{% else %}}\nNew arrivals, "
                "restocked favourites and more.{% endif %}",
                _html(
                    f"<p>Hi {_HELLO},</p><p>It has been a while. Here is what is new since your "
                    f"last visit:</p>{{% if recommendations %}}{recs_html}{{% else %}}<p>New "
                    "arrivals, restocked favourites and more.</p>{% endif %}"
                ),
            ),
            {"id": "tag", "type": "update_trait", "trait": "winback_sent", "value": True},
            {"id": "wait-week", "type": "wait", "days": 7},
            {
                "id": "came-back",
                "type": "branch",
                "rule": _no_order_within(7),
                "then": "last-call",
                "else": "end",
            },
            _email(
                "last-call",
                email,
                "Still there, " + _HELLO + "?",
                f"Hi {_HELLO},\n\nWe would love to see you again. If you would rather hear "
                "from us less often, choose what we send you with the link below; we will "
                "respect it.",
                _html(
                    f"<p>Hi {_HELLO},</p><p>We would love to see you again. If you would rather "
                    'hear from us less often, <a href="{{ preferences_url }}">choose what we '
                    "send you</a>; we will respect it.</p>"
                ),
            ),
        ],
    }


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "welcome_series",
            "Welcome series",
            "A welcome email when someone signs up; three days later, products picked for "
            "them if they have not ordered yet.",
            ("email",),
            (),
            (Option("event", "event", "Signed Up", "The event that starts it."),),
            _welcome,
        ),
        Preset(
            "abandoned_cart",
            "Abandoned cart",
            "A reminder a few hours after a checkout was started and not finished, and a "
            "second one (SMS when an SMS destination is given) the next day; stops on order.",
            ("email",),
            ("sms",),
            (
                Option("event", "event", "Checkout Started", "The event that starts it."),
                Option(
                    "first_wait_hours",
                    "int",
                    4,
                    "Hours before the first reminder.",
                    low=1,
                    high=72,
                ),
            ),
            _abandoned_cart,
        ),
        Preset(
            "browse_abandonment",
            "Browse abandonment",
            "Products picked for a visitor who viewed products and added none to the cart "
            "within a day.",
            ("email",),
            (),
            (Option("event", "event", "Product Viewed", "The event that starts it."),),
            _browse_abandonment,
        ),
        Preset(
            "post_purchase_review",
            "Post-purchase review request",
            "Asks for a review some days after an order, with the products bought.",
            ("email",),
            (),
            (
                Option("days_after", "int", 7, "Days after the order.", low=1, high=90),
                Option(
                    "review_url",
                    "url",
                    None,
                    "Where reviews are written (default: each product's page).",
                ),
            ),
            _review,
        ),
        Preset(
            "nps_survey",
            "NPS survey",
            "Asks how likely the customer is to recommend the shop, 0 to 10 in one click, "
            "some days after an order.",
            ("email",),
            (),
            (
                Option("days_after", "int", 14, "Days after the order.", low=1, high=90),
                Option(
                    "survey_url",
                    "url",
                    None,
                    "The survey page; each answer links to it with ?score=N&order=ID.",
                    required=True,
                ),
            ),
            _nps,
        ),
        Preset(
            "win_back",
            "Win-back",
            "A 'we miss you' email with picks for past customers inactive for a while, and a "
            "last call a week later.",
            ("email",),
            (),
            (Option("days", "int", 90, "Days without activity.", low=14, high=730),),
            _win_back,
        ),
    )
}


def list_presets() -> list[dict[str, Any]]:
    """Every preset as ``GET /v1/journeys/presets`` lists it."""
    return [p.document() for p in PRESETS.values()]


def get_preset(name: str) -> Preset:
    """The preset called ``name``; Invalid naming ``preset`` otherwise (a typo in a name is
    bad input, not a missing object of the workspace)."""
    preset = PRESETS.get(name)
    if preset is None:
        raise Invalid(
            "no such preset",
            [FieldError("preset", f"one of {', '.join(PRESETS)}")],
        )
    return preset


def _option_value(option: Option, value: Any) -> tuple[Any, str | None]:
    """The checked value of an option, or a reason it is refused."""
    if option.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, "must be a whole number"
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            return None, "must be a whole number"
        if not option.low <= value <= option.high:  # a huge int compares without a float
            return None, f"between {option.low} and {option.high}"
        return int(value), None
    if not isinstance(value, str) or not value.strip():
        return None, "must be a non-empty string"
    if option.kind == "url" and not _URL.match(value):
        return None, "an http(s) URL without spaces, quotes, braces or %"
    if option.kind == "event" and not _EVENT.match(value):
        return None, "an event name of at most 200 characters without braces, % or #"
    if option.kind == "text" and len(value) > 200:
        return None, "at most 200 characters"
    return value.strip() if option.kind != "url" else value, None


def instantiate(
    name: str,
    *,
    destinations: Mapping[str, str],
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The definition document of preset ``name`` for a workspace whose destinations are
    ``destinations`` (``{"email": id, "sms": id}``); ``options`` override the preset's
    defaults. Invalid naming ``preset``, ``destinations.<channel>`` or ``options.<name>``."""
    preset = get_preset(name)
    errors: list[FieldError] = []
    given = dict(options or {})
    known = {o.name: o for o in (*_COMMON, *preset.options)}
    for key in given:
        if key not in known:
            errors.append(FieldError(f"options.{key}", f"unknown option of {name}"))
    chosen: dict[str, Any] = {}
    for option in known.values():
        value = given.get(option.name)
        if value is None:
            if option.required:
                errors.append(FieldError(f"options.{option.name}", "is required"))
            chosen[option.name] = option.default
            continue
        checked, reason = _option_value(option, value)
        if reason is not None:
            errors.append(FieldError(f"options.{option.name}", reason))
        chosen[option.name] = checked
    for channel in destinations:
        if channel not in (*preset.channels, *preset.optional_channels):
            errors.append(FieldError(f"destinations.{channel}", f"{name} sends no {channel}"))
    for channel in preset.channels:
        if not isinstance(destinations.get(channel), str) or not destinations[channel]:
            errors.append(FieldError(f"destinations.{channel}", "is required: a destination id"))
    for channel in preset.optional_channels:
        value = destinations.get(channel)
        if value is not None and (not isinstance(value, str) or not value):
            errors.append(FieldError(f"destinations.{channel}", "must be a destination id"))
    if errors:
        raise Invalid(f"the {name} preset cannot be set up so", errors)
    return preset.build(destinations, chosen)


def create_from_preset(
    *,
    session: Session,
    workspace_id: str,
    name: str,
    destinations: Mapping[str, str],
    options: Mapping[str, Any] | None,
    actor: str,
    activate: bool = False,
) -> service.JourneyView:
    """Save preset ``name`` as a journey of the workspace (a draft; switched on at once with
    ``activate``). Invalid naming the field (``destinations.email``, ``options.days``, or a
    step's field when the destination does not fit); Conflict when the name is taken."""
    document = instantiate(name, destinations=destinations, options=options)
    view = service.create_journey(
        session=session, workspace_id=workspace_id, document=document, actor=actor
    )
    if not activate:
        return view
    return service.change_status(
        session=session,
        workspace_id=workspace_id,
        journey_id=view.id,
        action="activate",
        actor=actor,
    )
