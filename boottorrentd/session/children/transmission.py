"""The transmission engine of the seed (seeder.engine: transmission): transmission-daemon,
driven over its RPC with transmission-rpc, behind the seam of session/seeder.py.

Over 500 lines on purpose: every workaround transmission 3.00 needs (below) lives here
and nowhere else, so that the other engine and the session need none of them.

One TransmissionSeeder lives as long as the session. `prepare()` renders transmission's
config folder (the runtime folder: settings.json, and transmission's own torrents/ and
resume/) and returns the ChildSpec the supervisor runs; `set_torrents()` makes
transmission seed exactly the given library entries; the supervisor's `ready`/`started`
hooks bring a restarted transmission back to that state.

What transmission 3.00 does, and what this module does about it (measured here):

- Adding a torrent whose files exist makes transmission check them by itself, but an
  unchecked or half-checked torrent that runs would *download* into the library folder
  from the clients. So torrents are added paused, checked (`torrent-verify`), and
  started only at 100 %; one that is not complete stays stopped with an error. The
  library folder is only ever read.
- Resume data (what has been checked) is written lazily: after a `kill -9` a restarted
  transmission finds its torrents at 0 %. `--paused` keeps them all stopped at start, and
  `started` checks them again before they run.
- A manual reannounce (`torrent-reannounce`) is ignored until the tracker's min interval
  has passed since the last announce (~15 min with opentracker). Transmission announces
  at once to a tracker URL it has not seen, though, so `reannounce()` swaps the tracker
  URL between two spellings of the same announce URL (the second one has a query
  parameter the tracker ignores). Peers stay connected.
- transmission rewrites settings.json when it starts (the RPC password becomes a salted
  hash); the plain password stays in this object's memory only.
- A peer that connects stays choked until transmission's next rechoke, and rechokes come
  every 10 s (no setting changes that): a booting lab waited 3-12 s for its first byte.
  Starting any torrent rechokes every torrent at once, though. So while clients join
  (`expect_peers()`), the seeder watches the seeded torrents' peers and, when one is
  interested but choked with an upload slot free, restarts a tiny private torrent of its
  own (no tracker, no data, never in the library: the "rechoke torrent") to rechoke now.
- transmission remembers each address that was a complete peer and never unchokes it
  again, even when it comes back with nothing (a lab machine that reboots). A peer that
  stays choked through rechokes with a slot free is such a one; once the seed sends to
  no one else, the seeder adds the torrent again, which makes transmission forget.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import transmission_rpc
from transmission_rpc.error import TransmissionAuthError, TransmissionConnectError

from boottorrentd.config import Config
from boottorrentd.errors import BootTorrentError, InvalidArgument
from boottorrentd.library.bencode import bencode
from boottorrentd.library.store import OSEntry
from boottorrentd.library.torrent import with_announce
from boottorrentd.session import seeding
from boottorrentd.session.seeding import SeederUnavailable, TorrentStats
from boottorrentd.session.supervisor import ChildSpec
from boottorrentd.util.privdrop import setpriv_prefix, shared_folder
from boottorrentd.util.programs import program_path
from boottorrentd.util.wait import poll_until

log = logging.getLogger(__name__)

T = TypeVar("T")

RPC_HOST = "127.0.0.1"
READY_TIMEOUT_S = 20.0
RPC_TIMEOUT_S = 10.0
POLL_S = 0.25
# Below Linux's default ephemeral range (32768-60999): a port the kernel hands out for
# outgoing connections could be taken while transmission restarts.
RPC_PORTS = range(20000, 32768)
# The query parameter of the second spelling of the announce URL (see reannounce()).
REANNOUNCE_PARAM = "boottorrent-reannounce=1"

CHECKING = ("check pending", "checking")
# How long after the last client started a download the seeder watches for choked peers,
# and how often it looks. A client's aria2c is interested about 4 s after it fetched the
# torrent; a rechoke costs transmission no more than a sort of its peers.
JOIN_WINDOW_S = 20.0
JOIN_POLL_S = 0.25
RECHOKE_MIN_GAP_S = 0.25
# A joining peer is unchoked within two bandwidth pulses (0.5 s each) of a rechoke; one
# still choked after this many looks (3 s of rechokes) is one transmission refuses.
STALE_PEER_LOOKS = 12


def _rechoke_metainfo() -> tuple[bytes, str]:
    """The rechoke torrent (see the module doc) and its infohash: one byte nobody has,
    private (no DHT, PEX or LPD) and without a tracker, so starting it contacts no one."""
    info = {"length": 1, "name": "boottorrent-rechoke", "piece length": 16384,
            "pieces": hashlib.sha1(b"\0").digest(), "private": 1}
    raw = bencode(info)
    return bencode({"info": info}), hashlib.sha1(raw).hexdigest()


RECHOKE_TORRENT, RECHOKE_HASH = _rechoke_metainfo()
_FIELDS = ["hashString", "name", "status", "percentDone", "peersConnected", "uploadedEver",
           "rateUpload", "errorString", "error"]


@dataclass(frozen=True)
class _Waiting:
    """A seeded torrent's peers that wait to be unchoked."""

    infohash: str
    name: str
    addresses: frozenset[str]
    seed_busy: bool  # the seed sends to other peers of this torrent now


def _ids(hashes: Iterable[str]) -> list[int | str]:
    """Infohashes as transmission-rpc's list of torrent ids."""
    return list(hashes)


def _get_torrents(ids: list[int | str], fields: list[str],
                  client: transmission_rpc.Client) -> list[transmission_rpc.Torrent]:
    return client.get_torrents(ids, arguments=fields)


def _replace_tracker(infohash: str, replace: Any, client: transmission_rpc.Client) -> None:
    client.change_torrent(infohash, tracker_replace=replace)


def _free_port(host: str) -> int:
    for _ in range(100):
        port = RPC_PORTS.start + secrets.randbelow(len(RPC_PORTS))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"found no free port for transmission's RPC on {host}")


class TransmissionSeeder:
    """transmission-daemon seeding the library to the boot swarm (a SeedEngine)."""

    def __init__(
        self,
        cfg: Config,
        runtime_dir: Path,
        download_dir: Path,
        *,
        announce_url: str | None,
        user: str | None = None,
    ) -> None:
        """`runtime_dir`: transmission's config folder (this object's alone).
        `download_dir`: the folder that holds the OS folders (<state>/oss): the torrent
        named <name> is seeded from <download_dir>/<name>/. `announce_url`: the tracker
        the torrents announce to, None for none. `user`: run transmission as this user
        (it must be able to read the library); None runs it as the daemon's user."""
        self.cfg = cfg
        self.runtime_dir = runtime_dir
        self.download_dir = download_dir
        self.announce_url = announce_url
        self.user = user
        self.rpc_port = 0
        self.rpc_username = ""
        self._rpc_password = ""
        self._client: transmission_rpc.Client | None = None
        # The transmission-rpc client (a requests.Session) is used from worker threads.
        self._client_lock = threading.Lock()
        self._wanted: dict[str, OSEntry] = {}
        self._refused: dict[str, str] = {}
        self._sync_lock = asyncio.Lock()
        self._join_until = 0.0
        self._watcher: asyncio.Task | None = None
        self._last_rechoke = 0.0

    @property
    def settings_path(self) -> Path:
        return self.runtime_dir / "settings.json"

    # --- the child ------------------------------------------------------------------------

    def _render_settings(self) -> dict[str, Any]:
        """transmission's settings.json for this session, transmission.settings merged in."""
        cfg = self.cfg
        limit = cfg.seeder.upload_limit_kbps
        return {
            "rpc-enabled": True,
            "rpc-bind-address": RPC_HOST,
            "rpc-port": self.rpc_port,
            "rpc-authentication-required": True,
            "rpc-username": self.rpc_username,
            "rpc-password": self._rpc_password,
            "rpc-whitelist-enabled": True,
            "rpc-whitelist": RPC_HOST,
            "peer-port": cfg.seeder.peer_port,
            "peer-port-random-on-start": False,
            "bind-address-ipv4": cfg.boottorrent.host_ip,
            # Clients reach the seed over IPv4 at host_ip; keep it off other networks.
            "bind-address-ipv6": "::1",
            "port-forwarding-enabled": False,
            # DHT would announce the swarm beyond the lab (config.py refuses it too).
            "dht-enabled": False,
            "lpd-enabled": cfg.transmission.lpd_enabled,
            "pex-enabled": cfg.swarm.peer_exchange,
            # aria2c, the only client, speaks TCP BitTorrent only.
            "utp-enabled": False,
            # 1: prefer encryption, accept plain connections.
            "encryption": 1,
            "ratio-limit-enabled": False,
            "idle-seeding-limit-enabled": False,
            "download-queue-enabled": False,
            "seed-queue-enabled": False,
            "upload-slots-per-torrent": cfg.seeder.upload_slots,
            "queue-stalled-enabled": False,
            "speed-limit-up-enabled": limit > 0,
            "speed-limit-up": limit,
            "speed-limit-down-enabled": False,
            "alt-speed-enabled": False,
            "download-dir": str(self.download_dir),
            "incomplete-dir-enabled": False,
            "watch-dir-enabled": False,
            # A torrent must never run before its files are checked (see module doc).
            "start-added-torrents": False,
            "trash-original-torrent-files": False,
            "script-torrent-done-enabled": False,
            "blocklist-enabled": False,
            # Never create or grow files in the library.
            "preallocation": 0,
            # Group-writable: what it writes in its folder (resume, torrents), the daemon
            # removes as a member of the group, without CAP_DAC_OVERRIDE.
            "umask": 0o002,
            # 2: info, which has checks and tracker errors, without debug chatter.
            "message-level": 2,
            # Last, so they win; the config refuses the keys the seeder needs as above.
            **(cfg.transmission.settings or {}),
        }

    def prepare(self) -> ChildSpec:
        """Render the config folder with a fresh RPC port and credentials, and return the
        child to run. Torrents and resume data a previous session left are removed: the
        library may have changed since, so every torrent is checked again.

        Blocking (small file operations): from async code, run it in a thread if needed.
        """
        binary = program_path("transmission-daemon")
        if binary is None:
            # Only suggested by the package: its own service would start at install.
            raise InvalidArgument(
                "seeder.engine is transmission, but transmission-daemon is not installed; "
                "install it with 'apt install transmission-daemon' (and stop the service "
                "that package starts: 'systemctl disable --now transmission-daemon'), or set "
                "\"seeder.engine: libtorrent\"")
        group = shared_folder(self.runtime_dir, self.user)
        for leftover in ("torrents", "resume"):
            shutil.rmtree(self.runtime_dir / leftover, ignore_errors=True)
        self.rpc_port = _free_port(RPC_HOST)
        self.rpc_username = f"boottorrentd-{secrets.token_hex(4)}"
        self._rpc_password = secrets.token_urlsafe(24)
        self._client = None
        tmp = self.settings_path.with_name(".settings.json.tmp")
        # 0640 and the user's group: the password is in clear text until transmission
        # hashes it.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w") as f:
            os.fchown(fd, -1, group)
            json.dump(self._render_settings(), f, indent=2, sort_keys=True)
            f.write("\n")
        tmp.replace(self.settings_path)

        argv = [binary, "--foreground", "--config-dir", str(self.runtime_dir),
                # Torrents it loads at start stay stopped until `started` checked them.
                "--paused"]
        if self.user:
            argv = [*setpriv_prefix(self.user), *argv]
        return ChildSpec(seeding.CHILD["transmission"], argv, ready=self.wait_ready,
                         started=self.restore)

    # --- RPC plumbing ------------------------------------------------------------------

    def _connect(self) -> transmission_rpc.Client:
        return transmission_rpc.Client(
            host=RPC_HOST,
            port=self.rpc_port,
            username=self.rpc_username,
            password=self._rpc_password,
            timeout=RPC_TIMEOUT_S,
        )

    def _locked(self, call: Callable[[transmission_rpc.Client], T]) -> T:
        with self._client_lock:
            if self._client is None:
                if not self.rpc_port:
                    raise RuntimeError("TransmissionSeeder.prepare() has not run")
                self._client = self._connect()
            return call(self._client)

    async def _rpc(self, call: Callable[[transmission_rpc.Client], T]) -> T:
        # transmission-rpc blocks on HTTP: keep it off the event loop.
        try:
            # run_in_executor, not to_thread: mypy 1.0 cannot match a generic `call` there.
            return await asyncio.get_running_loop().run_in_executor(None, self._locked, call)
        except TransmissionConnectError as e:
            raise SeederUnavailable(
                f"the seed (transmission-daemon) does not answer on {RPC_HOST}:{self.rpc_port}: "
                f"{e}; the supervisor restarts it, see its log lines in the journal"
            ) from e

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Return once transmission answers RPC (a fresh connection); raise if it does not
        within `timeout` seconds, or refuses the credentials."""
        if not self.rpc_port:
            raise RuntimeError("TransmissionSeeder.prepare() has not run")
        last_error: list[Exception] = []

        async def connected() -> transmission_rpc.Client | None:
            try:
                return await asyncio.to_thread(self._connect)
            except TransmissionAuthError as e:
                raise BootTorrentError(
                    f"transmission refused the RPC credentials in {self.settings_path} ({e}); "
                    "was the file changed? Restart the session to render it again"
                ) from None
            except TransmissionConnectError as e:
                last_error[:] = [e]
                return None

        client = await poll_until(
            connected, timeout=timeout, interval=0.1,
            what=lambda: (f"transmission does not answer RPC on {RPC_HOST}:{self.rpc_port} "
                          f"({last_error[0] if last_error else 'no answer'}); see its log "
                          "lines in the journal"))
        with self._client_lock:
            self._client = client

    # --- the seeded set ----------------------------------------------------------------

    async def set_torrents(self, entries: Iterable[OSEntry]) -> None:
        """Seed exactly `entries`: add the missing ones, remove the others (their files
        stay), and check added ones before they run.

        Returns when every wanted torrent is seeding or refused (its files do not match
        the torrent: it stays stopped and `stats()` shows why). Checking reads every byte
        of a new OS. Call it after the tracker's whitelist holds the infohashes.
        Before transmission runs (or while it restarts) it only records the set: the
        `started` hook applies it.
        """
        wanted = {e.torrent.infohash: e for e in entries}
        self._wanted = wanted
        if self._client is None:
            return
        try:
            await self._sync()
        except SeederUnavailable as e:
            log.warning("%s; the torrent list is applied when it is back", e)

    async def restore(self) -> None:
        """The `started` hook: after a (re)start, seed the wanted set again. transmission
        starts with every torrent paused; starting one announces it to the tracker."""
        await self._sync()

    async def _sync(self) -> None:
        async with self._sync_lock:
            await self._sync_locked()

    async def _sync_locked(self) -> None:
        wanted = dict(self._wanted)
        present = {t.hash_string: t for t in await self._rpc(
            lambda c: c.get_torrents(arguments=_FIELDS))}

        unwanted = [h for h in present if h not in wanted and h != RECHOKE_HASH]
        if unwanted:
            await self._rpc(lambda c: c.remove_torrent(_ids(unwanted), delete_data=False))
            for h in unwanted:
                self._refused.pop(h, None)
                log.info("stopped seeding %s (%s)", present[h].name, h)

        check: list[str] = []
        start: list[str] = []
        for h, entry in wanted.items():
            torrent = present.get(h)
            if torrent is None:
                await self._add(entry)
                check.append(h)
            elif torrent.status.value in CHECKING:
                # Checked again below: stopping it cancels this check.
                check.append(h)
            elif torrent.percent_done < 1.0:
                # Resume data was lost (transmission was killed), or the files changed.
                check.append(h)
            elif torrent.status.value == "stopped":
                start.append(h)

        if RECHOKE_HASH not in present:
            # Into transmission's own folder: it is never in the library.
            await self._rpc(lambda c: c.add_torrent(
                RECHOKE_TORRENT, download_dir=str(self.runtime_dir), paused=True))
        if check:
            # Stop first: a running incomplete torrent would download into the library.
            await self._rpc(lambda c: c.stop_torrent(_ids(check)))
            await self._rpc(lambda c: c.verify_torrent(_ids(check)))
            start += await self._wait_checked(check)
        if start:
            await self._rpc(lambda c: c.start_torrent(_ids(start)))

    async def _add(self, entry: OSEntry) -> None:
        metainfo = await asyncio.to_thread(entry.torrent_path.read_bytes)
        if self.announce_url:
            # Every server's tracker: the seed announces to all of them (all tiers).
            metainfo = with_announce(metainfo, [self.announce_url,
                                                *self.cfg.swarm.other_trackers])
        await self._rpc(lambda c: c.add_torrent(
            metainfo, download_dir=str(self.download_dir), paused=True))
        self._refused.pop(entry.torrent.infohash, None)
        log.info("seeding %s (%s) from %s", entry.name, entry.torrent.infohash, entry.path)

    async def _wait_checked(self, hashes: list[str]) -> list[str]:
        """Wait until transmission has checked `hashes`; return the complete ones and
        record the others as refused."""
        pending = set(hashes)
        complete: list[str] = []
        while pending:
            await asyncio.sleep(POLL_S)
            torrents = await self._rpc(functools.partial(
                _get_torrents, _ids(sorted(pending)), [*_FIELDS, "files"]))
            seen = set()
            for t in torrents:
                h = t.hash_string
                seen.add(h)
                if t.status.value in CHECKING:
                    continue
                pending.discard(h)
                if t.percent_done >= 1.0:
                    self._refused.pop(h, None)
                    complete.append(h)
                else:
                    why = seeding.refusal(t.name, self._first_bad_file(t), t.percent_done,
                                         user=self.user)
                    self._refused[h] = why
                    log.error("%s", why)
            # Removed meanwhile (by a restart of transmission, say): nothing to wait for.
            pending &= seen
        return complete

    def _first_bad_file(self, torrent: transmission_rpc.Torrent) -> Path:
        """The first file of `torrent` that is not complete after a check (its folder
        when transmission does not list files)."""
        for f in torrent.fields.get("files") or []:
            if f["bytesCompleted"] < f["length"]:
                return self.download_dir / f["name"]
        return self.download_dir / torrent.name

    # --- state ---------------------------------------------------------------------------

    async def stats(self) -> list[TorrentStats]:
        """Every torrent transmission has, as it reports it now; SeederUnavailable while
        transmission does not answer."""
        torrents = await self._rpc(lambda c: c.get_torrents(arguments=_FIELDS))
        return [
            TorrentStats(
                infohash=t.hash_string,
                name=t.name,
                status=t.status.value,
                percent_done=t.percent_done,
                peers=t.peers_connected,
                uploaded_bytes=t.uploaded_ever,
                rate_upload=t.rate_upload,
                error=self._refused.get(t.hash_string) or t.error_string,
            )
            for t in torrents
            if t.hash_string != RECHOKE_HASH
        ]

    # --- clients joining ------------------------------------------------------------------

    async def health(self) -> str:
        """Always "": transmission's RPC reports the configured peer port, not whether
        it could bind it (a failed bind is only in its log)."""
        return ""

    def expect_peers(self) -> None:
        """A client is starting a download (it fetched a torrent): for the next
        JOIN_WINDOW_S seconds, unchoke joining peers at once instead of at transmission's
        next 10 s rechoke (see the module doc)."""
        self._join_until = time.monotonic() + JOIN_WINDOW_S
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch_joining(), name="seed-rechoke")

    async def _watch_joining(self) -> None:
        # (infohash, peer address): how many looks in a row found that peer waiting.
        looks: Counter[tuple[str, str]] = Counter()
        while time.monotonic() < self._join_until:
            await asyncio.sleep(JOIN_POLL_S)
            try:
                waiting = await self._waiting_peers()
                looks = Counter({(w.infohash, a): looks[w.infohash, a] + 1
                                 for w in waiting for a in w.addresses})
                for w in waiting:
                    stale = sorted(a for a in w.addresses
                                   if looks[w.infohash, a] >= STALE_PEER_LOOKS)
                    # While the seed sends to others (or is at its upload limit, when
                    # transmission unchokes no one new) the waiting peers get the pieces
                    # from those others.
                    if stale and not w.seed_busy:
                        await self._forget_peers(w.infohash, w.name, stale)
                        looks = Counter({k: n for k, n in looks.items() if k[0] != w.infohash})
                if waiting:
                    await self._rechoke()
            except Exception as e:
                # Only a head start: without it transmission's own rechoke still comes
                # within 10 s (and a restarting transmission is the supervisor's).
                log.debug("cannot rechoke for joining peers now: %s", e)

    async def _waiting_peers(self) -> list[_Waiting]:
        """The seeded torrents with peers that are interested but choked while the torrent
        has an upload slot free (with none free, a rechoke would only swap peers)."""
        ids = sorted(self._wanted)
        if not ids:
            return []
        torrents = await self._rpc(lambda c: c.get_torrents(
            _ids(ids), arguments=["hashString", "name", "peers"]))
        waiting = []
        for t in torrents:
            peers = t.fields.get("peers") or []
            interested = [p for p in peers if p.get("peerIsInterested")]
            choked = frozenset(p["address"] for p in interested if p.get("peerIsChoked"))
            if choked and len(interested) - len(choked) < self.cfg.seeder.upload_slots:
                waiting.append(_Waiting(t.hash_string, t.name, choked,
                                        seed_busy=any(p.get("isUploadingTo") for p in peers)))
        return waiting

    async def _forget_peers(self, infohash: str, name: str, addresses: list[str]) -> None:
        """Add the torrent again: transmission forgets the peers it remembers as complete
        (see the module doc)."""
        log.info("the seed will not send %s to %s, which it remembers as complete peers; "
                 "adding the torrent again so that it forgets them", name, ", ".join(addresses))
        await self._rpc(lambda c: c.remove_torrent(infohash, delete_data=False))
        await self._sync()
        # They reconnect to the fresh torrent within seconds: keep helping them.
        self._join_until = max(self._join_until, time.monotonic() + JOIN_WINDOW_S)

    async def _rechoke(self) -> None:
        """Make transmission choose the peers it uploads to now."""
        now = time.monotonic()
        if now - self._last_rechoke < RECHOKE_MIN_GAP_S:
            return
        self._last_rechoke = now
        await self._rpc(lambda c: c.stop_torrent(RECHOKE_HASH))
        await self._rpc(lambda c: c.start_torrent(RECHOKE_HASH))

    async def reannounce(self) -> None:
        """Announce every running torrent to the tracker now (after a tracker restart).

        transmission ignores its own reannounce within the tracker's min interval, so
        the tracker URL is swapped to its other spelling: a URL it has not announced to
        yet gets a "started" announce at once.
        """
        if not self.announce_url or self._client is None:
            # Not running yet: starting a torrent announces it anyway.
            return
        try:
            await self._reannounce(self.announce_url)
        except SeederUnavailable as e:
            # Its `started` hook announces every torrent when it is back.
            log.warning("cannot reannounce: %s", e)

    async def _reannounce(self, base: str) -> None:
        other = f"{base}{'&' if '?' in base else '?'}{REANNOUNCE_PARAM}"
        torrents = await self._rpc(
            lambda c: c.get_torrents(arguments=["hashString", "status", "trackers"]))
        for t in torrents:
            if t.status.value == "stopped" or t.hash_string not in self._wanted:
                continue
            trackers = t.fields.get("trackers") or []
            mine = [tr for tr in trackers if tr["announce"] in (base, other)]
            if not mine:
                continue
            tracker = mine[0]
            url = base if tracker["announce"] == other else other
            # transmission 3.00 reads trackerReplace as a flat [id, url, ...] list (a list
            # of pairs is "invalid argument"); transmission-rpc's type hint says pairs.
            replace: Any = [tracker["id"], url]
            h = t.hash_string
            await self._rpc(functools.partial(_replace_tracker, h, replace))

    async def wait_seeding(self, infohashes: Iterable[str], timeout: float) -> None:
        """Return once every torrent in `infohashes` is seeding at 100 %; raise
        TimeoutError after `timeout` seconds, or BootTorrentError at once for a torrent
        whose files do not match."""
        await seeding.wait_seeding(self.stats, self._refused.get, infohashes, timeout)

    def close(self) -> None:
        """Drop the RPC connection (transmission itself is the supervisor's)."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.__exit__(None, None, None)
