"""Turn the generated shop into validated envelopes, in chunks, for the demo command.

Pure: parsing only. The caller (``consentry demo``) owns the store and its transactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from consentry.demo.generator import ShopSpec, generate_shop
from consentry.ingest.models import Envelope, parse_message


@dataclass(frozen=True, slots=True)
class Chunk:
    """Envelopes ready to ingest, and the event time the generator has reached."""

    envelopes: list[Envelope]
    reached: datetime


def chunks(spec: ShopSpec, *, received_at: datetime, size: int = 2000) -> Iterator[Chunk]:
    """The generated shop's messages as envelopes, ``size`` at a time.

    A generated message that does not validate is a bug in the generator: it raises.
    """
    batch: list[Envelope] = []
    for index, raw in enumerate(generate_shop(spec)):
        parsed = parse_message(raw, index=index, received_at=received_at)
        if isinstance(parsed, list):
            raise ValueError(f"generated message {index} is invalid: {parsed}")
        batch.append(parsed)
        if len(batch) >= size:
            yield Chunk(batch, batch[-1].timestamp)
            batch = []
    if batch:
        yield Chunk(batch, batch[-1].timestamp)
