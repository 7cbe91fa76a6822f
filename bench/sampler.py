"""What the links carry and how busy the host is, sampled in the background during a run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from boottorrentlab.devkit.shell import CommandError

SAMPLE_S = 0.25

# (seconds since the start, bytes the server sent, bytes the clients received)
Sample = tuple[float, int, int]
# (bytes the server has sent, bytes the clients have received) so far
Traffic = Callable[[], tuple[int, int]]


def cpu_times() -> tuple[int, int]:
    """(busy, total) clock ticks of all the host's cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


class Sampler(threading.Thread):
    """Samples the server's upload and the clients' total download every SAMPLE_S."""

    def __init__(self, traffic: Traffic, t0: float) -> None:
        super().__init__(daemon=True)
        self.traffic, self.t0 = traffic, t0
        self.base = traffic()
        self.samples: list[Sample] = []
        self.stopped = threading.Event()
        self.cpu_base = cpu_times()
        self.cpu_busy: float | None = None

    def sample(self) -> None:
        up, down = (now - then for now, then in zip(self.traffic(), self.base, strict=True))
        self.samples.append((round(time.time() - self.t0, 3), up, down))

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_S):
            try:
                self.sample()
            except (CommandError, KeyError):
                return  # interrupted: the lab's namespaces and links are being removed

    def stop(self) -> list[Sample]:
        self.stopped.set()
        self.join()
        self.sample()
        busy, total = (now - then for now, then in zip(cpu_times(), self.cpu_base, strict=True))
        self.cpu_busy = round(busy / total, 3) if total else None
        return self.samples

    def server_rate(self) -> float:
        """The server's upload over the last few samples, in bit/s."""
        s = self.samples[-5:]
        if len(s) < 2 or s[-1][0] <= s[0][0]:
            return 0.0
        return (s[-1][1] - s[0][1]) * 8 / (s[-1][0] - s[0][0])

    def timeline(self, points: int = 120) -> list[Sample]:
        """The samples thinned to about `points` (the JSON stays small), the last kept."""
        step = max(1, -(-len(self.samples) // points))
        thinned = self.samples[::step]
        if thinned[-1] != self.samples[-1]:
            thinned.append(self.samples[-1])
        return thinned

    def first_data(self, threshold: int) -> float | None:
        return next((t for t, up, _ in self.samples if up >= threshold), None)
