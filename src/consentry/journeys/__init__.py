"""Journeys: automated, consent-gated sequences of messages started by a trigger (an event,
entering or leaving a segment, a date trait, inactivity), with guard rails checked at send time
(docs/journeys.md)."""
