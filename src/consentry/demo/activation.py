"""The demo shop's marketing set-up, made through the public services as a shop would through
the API: the mail relay registered as a processor, an email destination bound to it, a few
segments a marketer starts with, and three ready-made journeys switched on.

Nothing here decides anything: segments are evaluated by ``audiences``, journeys guard their
sends with ``consent.policy``, and the outbox delivers to the configured SMTP server (in the
demo, usually none: messages then wait in the outbox, retried, as they would in a shop whose
mail server is down).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from consentry.audiences import service as audiences
from consentry.config import Settings
from consentry.delivery import destinations
from consentry.journeys import presets
from consentry.journeys import service as journeys
from consentry.platform.db import Database
from consentry.privacy import processor_service
from consentry.privacy.processors import ProcessorSpec

ACTOR = "cli:demo"
EMAIL_PURPOSE = "marketing.communications.email"

SEGMENTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "Browsing, not buying",
        "Viewed products at least twice in the last 60 days and ordered nothing in that time "
        "(the demo's history ends on a fixed date, so its window is wide).",
        {
            "all": [
                {"event": "Product Viewed", "count": {"op": "gte", "value": 2}, "within_days": 60},
                {"event": "Order Completed", "count": {"op": "eq", "value": 0}, "within_days": 60},
            ]
        },
    ),
    (
        "Best customers",
        "Champions and loyal customers by RFM.",
        {"computed": "rfm_segment", "op": "in", "value": ["Champions", "Loyal"]},
    ),
    (
        "At risk, worth keeping",
        "Churn risk of 70 % or more, and at least two orders so far.",
        {
            "all": [
                {"computed": "churn_risk", "op": "gte", "value": 0.7},
                {"computed": "order_count", "op": "gte", "value": 2},
            ]
        },
    ),
    (
        "Newsletter audience",
        "Everyone the shop may email for marketing now.",
        {"consent": {"purpose": EMAIL_PURPOSE, "channel": "email"}, "allowed": True},
    ),
)

JOURNEYS = ("welcome_series", "abandoned_cart", "win_back")


@dataclass(frozen=True, slots=True)
class Activation:
    """What the set-up made: counts for the demo's summary line."""

    segments: int
    members: int
    journeys: int
    enrolled: int


def set_up(db: Database, workspace_id: str, settings: Settings) -> Activation:
    """Register the mail relay and its destination, create the segments and switch the
    journeys on; then one journey round. Journeys react to what happens after they are
    switched on, so enrollments appear as the served shop receives events."""
    with db.write() as session:
        relay = processor_service.register_processor(
            session=session,
            workspace_id=workspace_id,
            spec=ProcessorSpec(
                name="Shop mail relay",
                kind="processor",
                transfer_country="DE",
                purposes=(EMAIL_PURPOSE,),
                categories=("user.contact.email", "user.name", "user.unique_id"),
                contact="privacy@mailrelay.example",
                dpa_signed_on=date(2025, 3, 1),
                retention="messages deleted 30 days after delivery",
            ),
            actor=ACTOR,
        )
        newsletter = destinations.register_destination(
            session=session,
            workspace_id=workspace_id,
            spec=destinations.DestinationSpec(
                name="Newsletter email",
                kind="email",
                processor_id=relay.id,
                purpose=EMAIL_PURPOSE,
                channel="email",
            ),
            actor=ACTOR,
        )
    members = 0
    for name, description, rule in SEGMENTS:
        with db.write() as session:
            segment, _ = audiences.create_segment(
                session=session,
                workspace_id=workspace_id,
                name=name,
                description=description,
                rule=rule,
                actor=ACTOR,
            )
            members += len(
                audiences.member_ids(
                    session=session, workspace_id=workspace_id, segment_id=segment.id
                )
            )
    for preset in JOURNEYS:
        document = presets.instantiate(preset, destinations={"email": newsletter.destination.id})
        with db.write() as session:
            journey = journeys.create_journey(
                session=session, workspace_id=workspace_id, document=document, actor=ACTOR
            )
            journeys.change_status(
                session=session,
                workspace_id=workspace_id,
                journey_id=journey.id,
                action="activate",
                actor=ACTOR,
            )
    report = journeys.run_configured(db, workspace_id, settings)
    return Activation(
        segments=len(SEGMENTS),
        members=members,
        journeys=len(JOURNEYS),
        enrolled=report.triggers.enrolled,
    )
