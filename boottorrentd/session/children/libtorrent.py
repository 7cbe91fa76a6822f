"""The libtorrent engine of the seed (seeder.engine: libtorrent), the daemon's side.

libtorrent runs in a program of its own, `python3 -m boottorrentd.ltseed`, the
supervised child "ltseed" (journal identifier boottorrentd-ltseed), as the
unprivileged user; never in a thread of the daemon, so that a crash of libtorrent does
not take the bus name down. This module builds its command line and drives it over a
Unix socket in the engine's runtime folder (boottorrentd/ltseed/protocol.py).

The engine checks every torrent in full before it seeds it and never writes (see
boottorrentd/ltseed/engine.py). It keeps nothing across a restart: the `started` hook
gives a restarted engine the wanted set again, and it checks it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from boottorrentd.config import Config
from boottorrentd.errors import BootTorrentError
from boottorrentd.library.store import OSEntry
from boottorrentd.library.torrent import with_announce
from boottorrentd.ltseed import protocol
from boottorrentd.session import seeding
from boottorrentd.session.seeding import SeederUnavailable, TorrentStats
from boottorrentd.session.supervisor import ChildSpec
from boottorrentd.util.privdrop import setpriv_prefix, shared_folder
from boottorrentd.util.wait import poll_until

log = logging.getLogger(__name__)

CHILD = seeding.CHILD["libtorrent"]
READY_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 10.0
# How often set_torrents looks whether the engine's checks are done.
CHECK_POLL_S = 0.1


class LibtorrentSeeder:
    """boottorrentd-ltseed seeding the library to the boot swarm (a SeedEngine)."""

    def __init__(
        self,
        cfg: Config,
        runtime_dir: Path,
        download_dir: Path,
        *,
        announce_url: str | None,
        user: str | None = None,
    ) -> None:
        """As TransmissionSeeder's: `runtime_dir` is the engine's own folder (it holds
        the control socket); the torrent named <name> is seeded from
        <download_dir>/<name>/."""
        self.cfg = cfg
        self.runtime_dir = runtime_dir
        self.download_dir = download_dir
        self.announce_url = announce_url
        self.user = user
        self._wanted: dict[str, OSEntry] = {}
        self._refused: dict[str, str] = {}
        self._connection: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        # One request at a time: its response is the next line.
        self._request_lock = asyncio.Lock()
        self._sync_lock = asyncio.Lock()
        self._ready = False

    @property
    def control_path(self) -> Path:
        return self.runtime_dir / "control.sock"

    # --- the child ------------------------------------------------------------------------

    def prepare(self) -> ChildSpec:
        """Make the runtime folder (shared with the engine's user: it creates its socket
        there) and return the child to run. Blocking (small file operations)."""
        if importlib.util.find_spec("libtorrent") is None:
            raise FileNotFoundError(
                "seeder.engine is libtorrent, but python3-libtorrent is not installed; "
                "install it with 'apt install python3-libtorrent', or set "
                "seeder.engine: transmission")
        shared_folder(self.runtime_dir, self.user)
        self.control_path.unlink(missing_ok=True)
        self._drop_connection()
        self._ready = False
        return ChildSpec(CHILD, [*setpriv_prefix(self.user), *self.command()],
                         ready=self.wait_ready, started=self.restore)

    def command(self) -> list[str]:
        """The engine's command line (without the user switch)."""
        cfg = self.cfg

        def flag(name: str, on: bool) -> str:
            return f"--{name}" if on else f"--no-{name}"

        # The daemon's own interpreter: the one that has this package and libtorrent.
        return [
            sys.executable, "-m", "boottorrentd.ltseed",
            "--control", str(self.control_path),
            "--listen", f"{cfg.boottorrent.host_ip}:{cfg.seeder.peer_port}",
            "--upload-slots", str(cfg.seeder.upload_slots),
            "--upload-limit-kbps", str(cfg.seeder.upload_limit_kbps),
            flag("local-discovery", cfg.transmission.lpd_enabled),
            flag("peer-exchange", cfg.swarm.peer_exchange),
        ]

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once the engine answers on its socket; raise TimeoutError if it does
        not within `timeout` seconds."""
        self._drop_connection()
        last_error: list[Exception] = []

        async def answer() -> dict | None:
            try:
                return await self._request(protocol.PING)
            except SeederUnavailable as e:
                last_error[:] = [e]
                return None

        version = await poll_until(
            answer, timeout=timeout, interval=0.1,
            what=lambda: ("the seed (boottorrentd-ltseed) does not answer: "
                          f"{last_error[0] if last_error else 'no answer'}"))
        log.info("the seed runs libtorrent %s", version.get("libtorrent"))
        self._ready = True

    # --- the channel ----------------------------------------------------------------------

    def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection[1].close()

    async def _request(self, op: str, **arguments: Any) -> Any:
        async with self._request_lock:
            try:
                line = await self._exchange(protocol.request(op, **arguments))
            except (OSError, TimeoutError, ValueError, EOFError) as e:
                self._drop_connection()
                raise SeederUnavailable(
                    f"the seed (boottorrentd-ltseed) does not answer on {self.control_path} "
                    f"({e or type(e).__name__}); the supervisor restarts it, see its log "
                    "lines in the journal") from e
            except BaseException:
                # Cancelled halfway: the next response on this connection is not ours.
                self._drop_connection()
                raise
        reply = protocol.decode(line)
        if not reply.get("ok"):
            raise BootTorrentError(f"the seed (boottorrentd-ltseed) refused {op}: "
                                   f"{reply.get('error')}")
        return reply.get("result")

    async def _exchange(self, request: bytes) -> bytes:
        if self._connection is None:
            self._connection = await asyncio.open_unix_connection(
                self.control_path, limit=protocol.MAX_LINE_BYTES)
        reader, writer = self._connection
        writer.write(request)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT_S)
        if not line:
            raise EOFError("it closed the connection")
        return line

    # --- the seeded set ----------------------------------------------------------------

    async def set_torrents(self, entries: Iterable[OSEntry]) -> None:
        """Seed exactly `entries`; return once each is seeding or refused (`stats()`
        says why). Before the engine runs (or while it restarts) it only records the
        set: the `started` hook applies it."""
        self._wanted = {e.torrent.infohash: e for e in entries}
        if not self._ready:
            return
        try:
            await self._sync()
        except SeederUnavailable as e:
            log.warning("%s; the torrent list is applied when it is back", e)

    async def restore(self) -> None:
        """The `started` hook: give a (re)started engine the wanted set."""
        await self._sync()

    async def _sync(self) -> None:
        async with self._sync_lock:
            wanted = dict(self._wanted)
            seeds = await asyncio.to_thread(self._seeds, list(wanted.values()))
            await self._request(protocol.SET_TORRENTS, torrents=seeds)
            while any(s.status == protocol.CHECKING for s in await self._states()
                      if s.infohash in wanted):
                await asyncio.sleep(CHECK_POLL_S)

    def _seeds(self, entries: list[OSEntry]) -> list[protocol.Seed]:
        seeds = []
        for entry in entries:
            metainfo = entry.torrent_path.read_bytes()
            if self.announce_url:
                # Every server's tracker: the seed announces to all of them (all tiers).
                metainfo = with_announce(metainfo, [self.announce_url,
                                                    *self.cfg.swarm.other_trackers])
            seeds.append(protocol.Seed.of(entry.torrent.infohash, entry.name, metainfo,
                                          str(self.download_dir)))
        return seeds

    # --- state ---------------------------------------------------------------------------

    async def _states(self) -> list[protocol.SeedState]:
        states = protocol.states_from(await self._request(protocol.STATS))
        # The engine keeps a refused torrent stopped: each one it reports is refused.
        self._refused = {
            s.infohash: seeding.refusal(s.name, self.download_dir / (s.bad_file or s.name),
                                       s.progress, user=self.user, cause=s.error)
            for s in states if s.status == protocol.STOPPED}
        return states

    async def stats(self) -> list[TorrentStats]:
        """Every torrent the engine seeds or refused, as it reports it now;
        SeederUnavailable while it does not answer."""
        return [
            TorrentStats(
                infohash=s.infohash, name=s.name, status=s.status, percent_done=s.progress,
                peers=s.peers, uploaded_bytes=s.uploaded_bytes, rate_upload=s.rate_upload,
                error=self._refused.get(s.infohash, ""),
            )
            for s in await self._states()
        ]

    async def health(self) -> str:
        """The engine's peer port taken by another program, "" when it has it."""
        return str((await self._request(protocol.HEALTH) or {}).get("problem", ""))

    def expect_peers(self) -> None:
        """Nothing to do: libtorrent unchokes an interested peer at once while one of
        seeder.upload_slots is free (transmission waits for its next rechoke)."""

    async def reannounce(self) -> None:
        """Announce every seeding torrent to the tracker now (after a tracker restart)."""
        if not self.announce_url or not self._ready:
            # Not running yet: a torrent announces when it starts anyway.
            return
        try:
            await self._request(protocol.REANNOUNCE)
        except SeederUnavailable as e:
            # Its `started` hook starts (and so announces) every torrent when it is back.
            log.warning("cannot reannounce: %s", e)

    async def wait_seeding(self, infohashes: Iterable[str], timeout: float) -> None:
        """Return once every torrent in `infohashes` is seeding at 100 %; raise
        TimeoutError after `timeout` seconds, or BootTorrentError at once for a torrent
        whose files do not match."""
        await seeding.wait_seeding(self.stats, self._refused.get, infohashes, timeout)

    def close(self) -> None:
        """Drop the connection (the engine itself is the supervisor's)."""
        self._ready = False
        with contextlib.suppress(RuntimeError):  # its event loop is closed already
            self._drop_connection()
