"""A journey message's ``recommendations`` come from the workspace's trained model through
``recommend.serving.for_profile`` (both stores): the same products the API serves for the email
context, personalised only with the ``personalize`` consent, and rendered into a preset's
email."""

from __future__ import annotations

from consentry.journeys import presets
from consentry.journeys.models import parse_journey
from consentry.journeys.templates import LinkMaker, MessageTemplate, message_context, render
from consentry.platform.db import Database
from consentry.recommend import service as recommend
from tests.recommend.test_service import SETTINGS, grant, seed_shop
from tests.support.store import profile_of

LINKS = LinkMaker(secret="s" * 40, public_url="https://shop.example")


def test_recommendations_are_the_models_and_fill_the_win_back_mail(
    db: Database, workspace: str
) -> None:
    seed_shop(db, workspace, customers=40, seed=11)
    recommend.train(db, workspace, SETTINGS)
    consenting = profile_of(db, workspace, user_id="c2").id  # DE: opt-in
    other = profile_of(db, workspace, user_id="c3").id  # GB: opt-in, no grant
    grant(db, workspace, consenting)

    def context(profile_id: str) -> dict[str, object]:
        with db.read() as session:
            return message_context(
                session=session,
                workspace_id=workspace,
                profile_id=profile_id,
                trigger={"type": "inactivity"},
                links=LINKS,
                recommend_settings=SETTINGS,
            )

    for profile_id, kind in ((consenting, "personalized"), (other, "non_personalized")):
        with db.read() as session:
            served = recommend.for_profile(
                session=session,
                workspace_id=workspace,
                profile_id=profile_id,
                settings=SETTINGS,
                count=4,
                context="email",
            )
        assert served["kind"] == kind
        found = context(profile_id)["recommendations"]
        assert isinstance(found, list) and len(found) == 4
        assert [r["product_id"] for r in found] == [i["product_id"] for i in served["items"]]
        assert set(found[0]) == {"product_id", "name", "category", "price", "url", "image_url"}

    step = parse_journey(presets.instantiate("win_back", destinations={"email": "d"})).step(
        "miss-you"
    )
    assert step.template is not None
    mail = render(
        MessageTemplate(step.template.subject, step.template.text, step.template.html),
        kind="email",
        context=context(consenting),
    )
    names = [r["name"] for r in context(consenting)["recommendations"]]  # type: ignore[union-attr]
    assert names and all(f"- {name} (" in mail.text for name in names)
    assert "New arrivals, restocked favourites" not in mail.text
