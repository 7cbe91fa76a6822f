"""What every seed engine shares: its statistics, its refusals, waiting until it seeds.

The engines (children/libtorrent.py, children/transmission.py) build on this module;
the seam the session talks to, and the choice between them, is seeder.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from boottorrentd.errors import BootTorrentError
from boottorrentd.util.wait import poll_until

# The supervised child of each engine (its journal identifier is boottorrentd-<name>).
CHILD = {"libtorrent": "ltseed", "transmission": "transmission"}
POLL_S = 0.25


@dataclass(frozen=True)
class TorrentStats:
    infohash: str
    name: str
    status: str  # stopped, check pending, checking, seeding, ... (transmission's words)
    percent_done: float  # 0.0 to 1.0
    peers: int
    uploaded_bytes: int
    rate_upload: int  # bytes/s
    error: str  # "" when fine


class SeederUnavailable(BootTorrentError):
    """The seed engine does not answer (it is starting, restarting or gone)."""


def refusal(os_name: str, where: Path, verified: float, *, user: str | None,
            cause: str = "") -> str:
    """Why OS `os_name` is not seeded: `where`, its first file that does not match its
    torrent (its folder when the engine cannot tell), `verified` of it checked good;
    `cause`: the engine's own error, if it gave one."""
    why = (f"OS {os_name} is not seeded: its files do not match its torrent, first "
           f"{where} ({verified:.0%} verified{f'; {cause}' if cause else ''}); restore "
           "them, or remove the OS and add it again")
    if user and verified == 0:
        # Nothing readable looks like nothing matching.
        why += (f" (or the seed's user {user} cannot read them: the folder must be "
                "readable by it)")
    return why


async def wait_seeding(stats: Callable[[], Awaitable[list[TorrentStats]]],
                       refused: Callable[[str], str | None], infohashes: Iterable[str],
                       timeout: float) -> None:
    """SeedEngine.wait_seeding for an engine that gives its `stats` and its refusals
    by infohash."""
    wanted = sorted(set(infohashes))
    now: dict[str, TorrentStats] = {}

    async def seeding() -> bool:
        now.clear()
        now.update((s.infohash, s) for s in await stats())
        for h in wanted:
            if reason := refused(h):
                raise BootTorrentError(reason)
        return all(h in now and now[h].status == "seeding" and now[h].percent_done >= 1.0
                   for h in wanted)

    def states() -> str:
        return "not seeding: " + str({
            h: (f"{now[h].status} {now[h].percent_done:.0%} {now[h].error}".strip()
                if h in now else "not added") for h in wanted})

    await poll_until(seeding, timeout=timeout, what=states, interval=POLL_S)
