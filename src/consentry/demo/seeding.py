"""Turn the generated shop into validated envelopes and consent API items, in chunks, for the
demo command.

Pure: parsing only. The caller (``consentry demo``) owns the store and its transactions: it
ingests a chunk's envelopes, then records the chunk's consents with
``consent.service.record_requests`` (what ``POST /v1/consent/bulk`` does), in that order, as
the shop's backend calls the consent API after its site's events arrived.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from consentry.consent.models import ConsentIn
from consentry.demo.generator import ShopSpec, shop_stream
from consentry.ingest.models import Envelope, parse_message


@dataclass(frozen=True, slots=True)
class Chunk:
    """Envelopes ready to ingest, the consent API items that follow them (each names a
    customer by a ``user_id`` that an envelope of this chunk or an earlier one carries), and
    the event time the generator has reached."""

    envelopes: list[Envelope]
    reached: datetime
    consents: list[ConsentIn] = field(default_factory=list)


def chunks(spec: ShopSpec, *, received_at: datetime, size: int = 2000) -> Iterator[Chunk]:
    """The generated shop's messages as envelopes, ``size`` at a time, with the consent API
    items made meanwhile.

    A generated message or consent item that does not validate is a bug in the generator: it
    raises.
    """
    batch: list[Envelope] = []
    consents: list[ConsentIn] = []
    index = 0
    for item in shop_stream(spec):
        if not isinstance(item, dict):
            try:
                consents.append(ConsentIn.model_validate(item.body))
            except ValidationError as exc:
                raise ValueError(f"generated consent item is invalid: {exc}") from exc
            continue
        if len(batch) >= size:  # full: goes once the next message shows it is not the last
            yield Chunk(batch, batch[-1].timestamp, consents)
            batch, consents = [], []
        parsed = parse_message(item, index=index, received_at=received_at)
        if isinstance(parsed, list):
            raise ValueError(f"generated message {index} is invalid: {parsed}")
        index += 1
        batch.append(parsed)
    if batch:  # with the consent items made after the last message
        yield Chunk(batch, batch[-1].timestamp, consents)
