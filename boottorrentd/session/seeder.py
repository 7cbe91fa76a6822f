"""The seam between the session and the server's seed: one interface, two engines.

The session seeds the library through a `SeedEngine` and never learns which program
does it; `make_seeder` picks the engine by the key seeder.engine:

- transmission: transmission-daemon over its RPC (children/transmission.py), with the
  workarounds transmission 3.00 needs, all inside that module;
- libtorrent: libtorrent-rasterbar in a program of this project (boottorrentd.ltseed),
  driven over a Unix socket (children/libtorrent.py). libtorrent never runs in the
  daemon, so a crash of the engine costs a restart of the seed, not the bus name.

What every engine promises: it seeds exactly the entries of the last `set_torrents`,
each verified against its torrent before a peer gets a byte of it; it never writes
into the library; after the supervisor restarts its child it comes back to that set by
itself (its ChildSpec's `ready`/`started` hooks); an entry whose files no longer match
its torrent is refused, and `stats()` and `wait_seeding()` say why, naming the OS and
the file.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from boottorrentd.config import Config
from boottorrentd.errors import BootTorrentError
from boottorrentd.library.store import OSEntry
from boottorrentd.session.children.libtorrent import LibtorrentSeeder
from boottorrentd.session.children.transmission import TransmissionSeeder
from boottorrentd.session.seeding import TorrentStats
from boottorrentd.session.supervisor import ChildSpec

# seeder.engine's values; the config's SeederSection lists them too.
ENGINES = ("libtorrent", "transmission")


class SeedEngine(Protocol):
    def prepare(self) -> ChildSpec:
        """Render the engine's runtime folder and return its child for the supervisor.
        Blocking (small file operations)."""
        ...

    async def set_torrents(self, entries: Iterable[OSEntry]) -> None:
        """Seed exactly `entries`; return once each is seeding or refused. Before the
        child runs it only records the set, which the `started` hook applies."""
        ...

    async def stats(self) -> list[TorrentStats]:
        """Every seeded torrent now; SeederUnavailable while the engine does not answer."""
        ...

    async def health(self) -> str:
        """What is wrong with the engine as a whole (its peer port taken), "" when
        nothing; SeederUnavailable while it does not answer."""
        ...

    def expect_peers(self) -> None:
        """A hint: a machine just fetched a torrent and connects within seconds."""
        ...

    async def reannounce(self) -> None:
        """Announce every seeding torrent now (the tracker restarted)."""
        ...

    async def wait_seeding(self, infohashes: Iterable[str], timeout: float) -> None:
        """Return once every torrent in `infohashes` seeds; BootTorrentError at once
        for a refused one, TimeoutError after `timeout` seconds."""
        ...

    def close(self) -> None:
        """Drop the connection to the engine (its child is the supervisor's)."""
        ...


def make_seeder(cfg: Config, runtime_dir: Path, download_dir: Path, *,
                announce_url: str | None, user: str | None) -> SeedEngine:
    """The engine seeder.engine names. `runtime_dir`: the engine's own folder.
    `download_dir`: the folder of the OS folders; the torrent named <name> is seeded
    from <download_dir>/<name>/. `announce_url`: the tracker, None for none. `user`:
    the engine's child runs as this user (it must be able to read the library); None
    runs it as the daemon's user."""
    if cfg.seeder.engine == "libtorrent":
        return LibtorrentSeeder(cfg, runtime_dir, download_dir,
                                announce_url=announce_url, user=user)
    if cfg.seeder.engine == "transmission":
        return TransmissionSeeder(cfg, runtime_dir, download_dir,
                                  announce_url=announce_url, user=user)
    raise BootTorrentError(
        f"seeder.engine {cfg.seeder.engine!r} is not an engine; use one of {', '.join(ENGINES)}")
