"""Journey message templates: rendering, the sandbox, the checks made when a journey is saved,
and (hypothesis) that any source either renders or yields a FieldError."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consentry.errors import FieldError
from consentry.journeys.templates import (
    LIMITS,
    MAX_RANGE,
    MessageTemplate,
    TemplateFailure,
    mail_headers,
    render,
    sample_context,
    sparse_context,
    template_problems,
)

FOOTER = "\nUnsubscribe: {{ unsubscribe_url }}"


def email(
    subject: str = "Hi", text: str = "Hello" + FOOTER, html: str | None = None
) -> MessageTemplate:
    return MessageTemplate(subject=subject, text=text, html=html)


def problems(template: MessageTemplate, kind: str = "email") -> dict[str, str]:
    return {e.field: e.reason for e in template_problems(template, kind=kind, field="t")}  # type: ignore[arg-type]


def test_an_email_renders_with_the_profile_cart_and_links() -> None:
    template = email(
        subject="You left {{ cart.items|length }} items, {{ profile.first_name }}",
        text="Hi {{ profile.first_name }}\n{% for i in cart.items %}- {{ i.name }} "
        "{{ i.price|money(cart.currency) }}\n{% endfor %}" + FOOTER,
        html='<p>Hi {{ profile.first_name }}</p><a href="{{ unsubscribe_url }}">Leave</a>',
    )
    out = render(template, kind="email", context=sample_context())
    assert out.subject == "You left 2 items, Ada"
    assert "- Linen shirt 49.00 EUR\n- Canvas sneakers 79.50 EUR" in out.text
    assert out.text.endswith("Unsubscribe: https://shop.example/u/sample-unsubscribe-token")
    assert out.html == (
        '<p>Hi Ada</p><a href="https://shop.example/u/sample-unsubscribe-token">Leave</a>'
    )
    assert problems(template) == {}


def test_html_is_escaped_and_text_is_not() -> None:
    context = sample_context()
    context["profile"] = context["profile"] | {"first_name": '<script>alert("x")</script> & co'}
    template = email(
        text="Hi {{ profile.first_name }}" + FOOTER, html="<b>{{ profile.first_name }}</b>"
    )
    out = render(template, kind="email", context=context)
    assert out.text.startswith('Hi <script>alert("x")</script> & co')
    assert out.html == "<b>&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co</b>"


def test_an_email_without_html_gets_one_from_its_text_and_the_other_way_round() -> None:
    out = render(
        email(text="Line <1>\nLine 2\n\nNext" + FOOTER), kind="email", context=sample_context()
    )
    assert out.html is not None
    assert "<p>Line &lt;1&gt;<br>\nLine 2</p>" in out.html
    html_only = MessageTemplate(
        subject="S",
        html='<p>Hello &amp; welcome</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>',
    )
    out = render(html_only, kind="email", context=sample_context())
    assert (
        out.text == "Hello & welcome\nUnsubscribe (https://shop.example/u/sample-unsubscribe-token)"
    )
    assert problems(html_only) == {}


def test_the_subject_is_one_line() -> None:
    out = render(
        email(subject="A\r\nBcc: x@example.com {{ '\n' }} B"),
        kind="email",
        context=sample_context(),
    )
    assert out.subject == "A Bcc: x@example.com B"


def test_missing_values_render_empty_and_traits_are_open() -> None:
    template = email(
        text="Hi {{ profile.first_name or 'there' }}{{ profile.last_name }} "
        "{{ traits.plan }}/{{ traits.nothing_like_it }}" + FOOTER
    )
    assert render(template, kind="email", context=sparse_context()).text.startswith("Hi there /")
    assert render(template, kind="email", context=sample_context()).text.startswith(
        "Hi AdaLovelace gold/"
    )


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("{{ profile.frist_name }}", "has no attribute 'frist_name'"),
        ("{{ unknown_variable }}", "'unknown_variable' is undefined"),
        ("{{ cart.items[0].name }}", "for a profile without name, cart, order or products"),
        ("{% if %}", "line 1"),
        ("{{ cart.items|shuffle }}", "No filter named 'shuffle'"),
        ("{{ ''.__class__.__mro__ }}", "has no attribute"),
        ("{{ cart.items.pop() }}", "only range() can be called"),
        ("{{ cart|attr('items') }}", "No filter named 'attr'"),
        ("{{ profile.first_name|safe }}", "No filter named 'safe'"),
        ("{% set x = 1 %}", "{% set %} is not available"),
        ("{% include 'base.html' %}", "{% include %} is not available"),
        ("{% macro m() %}{% endmacro %}", "{% macro %} is not available"),
        ("{% autoescape false %}x{% endautoescape %}", "{% autoescape %} is not available"),
        ("{{ 'a' * 1000000 }}", "repeating a text or list is limited"),
        ("{{ 9 ** 9 ** 9 }}", "the power is too large"),
        ("{{ '%999999999d' % 1 }}", "% formatting is not available"),
        ("{{ range(MAX) }}".replace("MAX", str(MAX_RANGE + 1)), "range() is limited"),
        (
            "{% for a in range(9) %}{% for b in range(9) %}{% for c in range(9) %}"
            "{% endfor %}{% endfor %}{% endfor %}",
            "loops may be nested at most 2 deep",
        ),
        ("{% for i in cart.items %}{{ loop.cycle('a') }}{% endfor %}", "only range() can be"),
        ("{% for i in cart.items %}{{ loop.changed }}{% endfor %}", "has no attribute 'changed'"),
        (
            "{{ 'x'|replace('', 'y' * 9000)|replace('y', 'z' * 10)|replace('z', 'z' * 10) }}",
            "replace() would build",
        ),
        ("{{ 1 / 0 }}", "division by zero"),
    ],
)
def test_problems_name_the_part_and_say_why(source: str, reason: str) -> None:
    found = problems(email(text=source + FOOTER))
    assert list(found) == ["t.text"]
    assert reason in found["t.text"]


def test_rendered_parts_are_capped() -> None:
    _, text_limit = LIMITS["email", "text"]
    big = "{% for a in range(1000) %}{% for b in range(1000) %}xxxxxxxxxx{% endfor %}{% endfor %}"
    found = problems(email(text=big + FOOTER))
    assert found == {"t.text": f"renders to more than {text_limit} characters"}
    source_limit, _ = LIMITS["sms", "text"]
    assert "at most" in problems(MessageTemplate(text="x" * (source_limit + 1)), "sms")["t.text"]


def test_a_marketing_email_must_carry_an_opt_out_link() -> None:
    assert problems(email(text="Hello")) == {
        "t.text": "must contain {{ unsubscribe_url }} or {{ preferences_url }}: every "
        "marketing email lets its reader opt out"
    }
    assert list(problems(email(html="<p>no link</p>"))) == ["t.html"]
    assert problems(email(text="Hello {{ preferences_url }}")) == {}


def test_parts_a_kind_does_not_have_and_required_parts() -> None:
    assert problems(MessageTemplate(subject="x", text="Hi", html="<p>"), "sms") == {
        "t.subject": "a sms message has no subject",
        "t.html": "a sms message has no html",
    }
    assert problems(MessageTemplate(subject=" ", text=""), "email") == {
        "t.subject": "required for an email",
        "t.text": "required",
    }
    assert problems(MessageTemplate(text="   "), "sms") == {"t.text": "required"}


def test_a_webhook_body_must_render_to_a_json_object() -> None:
    body = MessageTemplate(
        text='{"id": "{{ profile.id }}", "name": "{{ profile.first_name }}", '
        '"items": {{ cart.items|tojson }}, "value": {{ cart.value }}, "plan": {{ traits.plan }}}'
    )
    assert "does not render to JSON" in problems(body, "webhook")["t.text"]  # "plan": gold
    body = MessageTemplate(
        text='{"id": "{{ profile.id }}", "name": "{{ profile.first_name }}", '
        '"items": {{ cart.items|tojson }}, "value": {{ cart.value }}, '
        '"plan": {{ traits.plan|tojson }}, "missing": {{ traits.other }}}'
    )
    assert problems(body, "webhook") == {}
    context = sample_context()
    context["profile"] = context["profile"] | {"first_name": 'Ada "the countess"\n\\'}
    parsed = json.loads(render(body, kind="webhook", context=context).text)
    assert parsed["name"] == 'Ada "the countess"\n\\'
    assert parsed["items"][1]["name"] == "Canvas sneakers"
    assert parsed["value"] == 208.0 and parsed["plan"] == "gold" and parsed["missing"] is None
    assert problems(MessageTemplate(text="[1, 2]"), "webhook") == {
        "t.text": "must render to a JSON object"
    }


def test_sms_text_renders_without_escaping() -> None:
    out = render(
        MessageTemplate(text="{{ brand.name }} & you: {{ cart.count }} items"),
        kind="sms",
        context=sample_context(),
    )
    assert out == type(out)(None, "Example Shop & you: 3 items", None)


def test_render_raises_only_template_failure_naming_the_part() -> None:
    with pytest.raises(TemplateFailure) as caught:
        render(email(subject="{{ nope }}"), kind="email", context=sample_context())
    assert caught.value.part == "subject"
    with pytest.raises(TemplateFailure) as caught:
        render(email(subject="{{ '' }}"), kind="email", context=sample_context())
    assert caught.value.reason == "renders to an empty subject"


def test_mail_headers_are_rfc_8058_one_click() -> None:
    assert mail_headers(unsubscribe_url="https://x/u/t", mailto="help@x.example") == {
        "List-Unsubscribe": "<https://x/u/t>, <mailto:help@x.example?subject=unsubscribe>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


_JINJA_BITS = st.sampled_from(
    [
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        " for ",
        " in ",
        " if ",
        "endfor",
        "endif",
        " else ",
        "profile",
        "cart.items",
        "traits.plan",
        "recommendations",
        ".",
        "|",
        "length",
        "upper",
        "money",
        "tojson",
        "range(",
        ")",
        "[",
        "]",
        "0",
        "1",
        "'",
        '"',
        "*",
        "**",
        "%",
        "~",
        "loop.index",
        "set ",
        "x",
        "\n",
        "-",
        "+",
        "/",
        " ",
        "unsubscribe_url",
        "not ",
        "and ",
    ]
)
_SOURCES = st.one_of(
    st.text(max_size=200),
    st.lists(_JINJA_BITS | st.text(string.printable, max_size=3), max_size=40).map("".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    source=_SOURCES,
    kind=st.sampled_from(["email", "sms", "webhook"]),
    part=st.sampled_from(["subject", "text", "html"]),
)
def test_any_source_renders_or_yields_a_field_error(source: str, kind: str, part: str) -> None:
    fields = {"subject": "Hi", "text": "Hello {{ unsubscribe_url }}", "html": None}
    if kind != "email":
        fields = {"subject": None, "text": "Hello", "html": None}
    fields[part] = source
    template = MessageTemplate(**fields)  # type: ignore[arg-type]
    found = template_problems(template, kind=kind, field="steps[0].template")  # type: ignore[arg-type]
    assert all(
        isinstance(e, FieldError) and e.field.startswith("steps[0].template.") for e in found
    )
    if not found:
        for context in (sample_context(), sparse_context()):
            render(template, kind=kind, context=context)  # type: ignore[arg-type]
    else:
        try:
            render(template, kind=kind, context=sample_context())  # type: ignore[arg-type]
        except TemplateFailure:
            pass
