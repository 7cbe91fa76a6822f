"""A build's progress: its steps on one 0..1 scale, told sparingly (each may become a signal)."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float], None]

# Steps and where each ends on the overall 0..1 scale; compressing takes most of the time.
STEPS = {"kernel": 0.02, "modules": 0.08, "programs": 0.14, "agent": 0.15, "compress": 0.97,
         "install": 1.0}


class Reporter:
    """Turns (step, share of that step done) into the whole build's share for `callback`."""

    def __init__(self, callback: Progress | None) -> None:
        self.callback = callback
        self.last: tuple[str, float] = ("", -1.0)

    def step(self, name: str, fraction: float = 0.0) -> None:
        if self.callback is None:
            return
        end = STEPS[name]
        begin = max((v for v in STEPS.values() if v < end), default=0.0)
        overall = begin + (end - begin) * min(max(fraction, 0.0), 1.0)
        # Every call may become a D-Bus signal: new steps and whole percents only.
        if name == self.last[0] and overall - self.last[1] < 0.01 and overall < 1.0:
            return
        self.last = (name, overall)
        self.callback(name, overall)

    def within(self, name: str) -> Callable[[float], None]:
        """A callback for the share done of step `name`."""
        return lambda fraction: self.step(name, fraction)
