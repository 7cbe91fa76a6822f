"""Coalesced change signals: a bounded PropertiesChanged rate on the bus whatever the lab's size.

Every booting machine reports about once a second, and each report changes several of its
Client object's properties; 200 machines would put 200+ signals a second on the system bus
and into every listener. Changes are merged per object instead (the union of the changed
fields, read when the signal goes out: the last value wins) and sent by a tick every
`interval` seconds, at most `batch` objects a tick, those waiting longest first: at most
batch / interval signals a second for progress, however many machines there are. A change
that must not wait (a new stage: a listener follows a machine through its stages, and the
final ones must not be late) goes out at once, with whatever was waiting for that object.
When the daemon stops, whatever still waits goes out before it leaves the bus (close):
with 200 machines that is up to two seconds of their last progress.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Iterable

# 25 objects every 250 ms: at most 100 progress signals a second, and a machine's row
# moves at least every 2 s with 200 machines reporting every second.
INTERVAL_S = 0.25
BATCH = 25


class Coalescer:
    """`changed(key, fields)` from the model; `emit(key, fields)` goes out coalesced."""

    def __init__(self, emit: Callable[[Hashable, set[str]], None], *,
                 interval: float = INTERVAL_S, batch: int = BATCH) -> None:
        self._emit = emit
        self.interval = interval
        self.batch = batch
        # Insertion order is waiting order: a key keeps its place when more fields join it.
        self._pending: dict[Hashable, set[str]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def changed(self, key: Hashable, fields: Iterable[str], *, now: bool = False) -> None:
        merged = self._pending.setdefault(key, set())
        merged.update(fields)
        if now:
            self._send(key)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.tick)

    def close(self) -> None:
        """Send everything that waits, and stop the ticks: the daemon is stopping."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for key in list(self._pending):
            self._send(key)

    def _send(self, key: Hashable) -> None:
        fields = self._pending.pop(key, None)
        if fields:
            self._emit(key, fields)

    def tick(self) -> None:
        """Send the next batch, those waiting longest first; the timer calls it."""
        self._timer = None
        for key in list(self._pending)[:self.batch]:
            self._send(key)
        if self._pending:
            self._timer = asyncio.get_running_loop().call_later(self.interval, self.tick)
