"""Timing the steps of a long run (an analytics run, a recommendation training)."""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping

StepProgress = Callable[[str], None]  # called with each step's name as it ends


class StepClock:
    """Records each step's wall time in ``seconds`` (name -> seconds, rounded to the
    millisecond) and tells ``progress``, if any, that the step ended."""

    def __init__(
        self, seconds: MutableMapping[str, float], progress: StepProgress | None = None
    ) -> None:
        self.seconds, self.progress, self.started = seconds, progress, time.perf_counter()

    def step(self, name: str) -> None:
        """End the step called ``name``; the next one starts now."""
        now = time.perf_counter()
        self.seconds[name] = round(now - self.started, 3)
        self.started = now
        if self.progress:
            self.progress(name)
