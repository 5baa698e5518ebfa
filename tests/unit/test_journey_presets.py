"""Ready-made journeys: each parses as a journey, its templates pass the save-time checks and
render for a full and a sparse profile, and bad set-up input names its field."""

from __future__ import annotations

from typing import Any

import pytest

from consentry.errors import Invalid
from consentry.journeys import presets
from consentry.journeys.models import HOLDOUT, parse_journey
from consentry.journeys.templates import (
    MessageTemplate,
    render,
    sample_context,
    sparse_context,
    template_problems,
)

NPS = {"survey_url": "https://survey.example/nps?src=mail"}


def build(preset: str, **options: Any) -> dict[str, Any]:
    destinations = {"email": "dest-mail"}
    if preset == "nps_survey":
        options = NPS | options
    return presets.instantiate(preset, destinations=destinations, options=options)


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_every_preset_is_a_valid_journey_with_valid_templates(name: str) -> None:
    definition = parse_journey(build(name))
    assert definition.goal is not None and definition.goal.event == presets.GOAL_EVENT
    first = definition.steps[0]
    assert first.type == "split" and first.holdout_percent == 10
    assert [v.name for v in first.variants] == ["messaged"]
    assert definition.sending_steps()
    for i, step in enumerate(definition.steps):
        if not step.sends:
            continue
        assert step.template is not None and step.destination_id == "dest-mail"
        template = MessageTemplate(step.template.subject, step.template.text, step.template.html)
        assert template_problems(template, kind=step.type, field=f"steps[{i}].template") == []  # type: ignore[arg-type]
        for context in (sample_context(), sparse_context()):
            out = render(template, kind=step.type, context=context)  # type: ignore[arg-type]
            assert "None" not in out.text and "{{" not in out.text
            assert context["unsubscribe_url"] in out.text
            assert out.html is not None and context["unsubscribe_url"] in out.html


def test_the_listing_documents_every_option() -> None:
    listed = {p["name"]: p for p in presets.list_presets()}
    assert set(listed) == {
        "welcome_series",
        "abandoned_cart",
        "browse_abandonment",
        "post_purchase_review",
        "nps_survey",
        "win_back",
    }
    options = {o["name"]: o for o in listed["abandoned_cart"]["options"]}
    assert options["holdout_percent"] | {} == {
        "name": "holdout_percent",
        "type": "integer",
        "default": 10,
        "required": False,
        "description": options["holdout_percent"]["description"],
        "minimum": 0,
        "maximum": 50,
    }
    assert listed["abandoned_cart"]["optional_channels"] == ["sms"]
    assert {o["name"]: o["required"] for o in listed["nps_survey"]["options"]}["survey_url"]


def test_options_change_the_journey() -> None:
    doc = build("win_back", days=120, holdout_percent=0, name="Come back")
    assert doc["name"] == "Come back"
    assert doc["trigger"] == {"type": "inactivity", "days": 120}
    assert doc["steps"][0]["holdout_percent"] == 0
    cart = presets.instantiate(
        "abandoned_cart",
        destinations={"email": "m", "sms": "s"},
        options={"event": "Cart Viewed", "first_wait_hours": 2},
    )
    definition = parse_journey(cart)
    assert (
        definition.trigger.event == "Cart Viewed" and definition.exit_on_event == "Order Completed"
    )
    assert definition.step("pause").hours == 2
    nudge = definition.step("nudge")
    assert (nudge.type, nudge.destination_id, nudge.purpose) == ("sms", "s", presets.SMS_PURPOSE)
    assert build("abandoned_cart")["steps"][-1]["type"] == "email"  # no SMS destination


def test_the_nps_links_carry_the_score_and_the_order() -> None:
    step = parse_journey(build("nps_survey")).step("ask")
    assert step.template is not None
    template = MessageTemplate(step.template.subject, step.template.text, step.template.html)
    out = render(template, kind="email", context=sample_context())
    assert "10: https://survey.example/nps?src=mail&score=10&order=order-1" in out.text
    assert out.html is not None
    assert 'href="https://survey.example/nps?src=mail&amp;score=0&amp;order=order-1"' in out.html


def test_a_holdout_of_the_split_is_the_documented_arm() -> None:
    assert presets.instantiate(
        "welcome_series", destinations={"email": "m"}, options={"holdout_percent": 25}
    )["steps"][0] == {
        "id": "holdout",
        "type": "split",
        "holdout_percent": 25,
        "variants": [{"name": "messaged", "weight": 100, "next": "welcome"}],
    }
    assert HOLDOUT == "holdout"


@pytest.mark.parametrize(
    ("name", "destinations", "options", "fields"),
    [
        ("nope", {"email": "m"}, {}, {"preset"}),
        ("welcome_series", {}, {}, {"destinations.email"}),
        ("welcome_series", {"email": "m", "sms": "s"}, {}, {"destinations.sms"}),
        ("welcome_series", {"email": "m"}, {"colour": "red"}, {"options.colour"}),
        ("win_back", {"email": "m"}, {"days": 3}, {"options.days"}),
        ("win_back", {"email": "m"}, {"days": 30.5}, {"options.days"}),
        ("win_back", {"email": "m"}, {"days": 10**400}, {"options.days"}),
        ("win_back", {"email": "m"}, {"days": float("nan")}, {"options.days"}),
        ("win_back", {"email": "m"}, {"holdout_percent": True}, {"options.holdout_percent"}),
        ("nps_survey", {"email": "m"}, {}, {"options.survey_url"}),
        (
            "nps_survey",
            {"email": "m"},
            {"survey_url": "https://x/{{ 7*7 }}"},
            {"options.survey_url"},
        ),
        (
            "nps_survey",
            {"email": "m"},
            {"survey_url": "javascript:alert(1)"},
            {"options.survey_url"},
        ),
        ("welcome_series", {"email": "m"}, {"event": "{% set %}"}, {"options.event"}),
        ("welcome_series", {"email": "m"}, {"name": "x" * 201}, {"options.name"}),
    ],
)
def test_bad_set_up_input_names_its_field(
    name: str, destinations: dict[str, str], options: dict[str, Any], fields: set[str]
) -> None:
    with pytest.raises(Invalid) as caught:
        presets.instantiate(name, destinations=destinations, options=options)
    assert {e.field for e in caught.value.errors} == fields
