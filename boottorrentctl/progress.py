"""A one-line progress bar for long daemon work (copying, hashing)."""

from typing import TextIO


class ProgressBar:
    WIDTH = 30

    def __init__(self, out: TextIO) -> None:
        self.out = out
        # Redrawing with \r only makes sense on a terminal; logs get nothing.
        self.enabled = out.isatty()
        self.drawn = False

    def update(self, name: str, phase: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        frac = done / total if total else 1.0
        filled = int(frac * self.WIDTH)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.out.write(f"\r{phase:>8} {name} [{bar}] {frac:4.0%}")
        self.out.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            self.out.write("\n")
            self.out.flush()
