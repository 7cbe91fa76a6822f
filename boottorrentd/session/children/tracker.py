"""The boot swarm's BitTorrent tracker: the daemon's own (boottorrentd.tracker), or
opentracker (Debian) or hefur when the configuration names them.

The tracker introduces the clients and the server's seed to each other. It only tracks
the library's torrents: the daemon's own tracker and opentracker read an infohash
whitelist, hefur the torrent files of a folder.

The daemon's own tracker (kind "builtin", the child "tracker", journal identifier
boottorrentd-tracker) is the default: Debian's opentracker package starts and enables a
public tracker of its own at install, and compiles in a 30-minute announce interval. It
takes the whitelist and SIGHUP as opentracker does (below), but rereads the file before
it answers the next request, and tells clients tracker.announce_interval.

opentracker, as Debian builds it (WANT_ACCESSLIST_WHITE):
- `-d DIR` is a chroot (when started as root, else a chdir) that happens before `-w FILE`
  is read, so the whitelist is named relative to DIR: this object's runtime folder. The
  same goes for every reload, which runs after `-u USER` dropped privileges: the folder
  and the file must be readable by that user.
- SIGHUP makes it reread the whitelist (measured on Debian 12: a hash added to the file
  is accepted after the signal, refused before). A thread reads the file, at start too:
  for a few milliseconds after the port opens every torrent is refused, so `ready`
  waits until a whitelisted torrent is accepted.
- Its query parser does not read "+" as a space: an info_hash with a 0x20 byte must be
  sent as %20, as aria2 (measured) and transmission do.
- It tells clients to announce every ~30 min (min interval ~15 min); that is compiled in.
  Clients use aria2's --bt-tracker-interval (tracker.announce_interval) instead, and the
  seed re-registers at once after a tracker restart through Seeder.reannounce().

hefur is not packaged in Debian; its options come from its manual and source (not
tested here). Its whitelist is a folder of .torrent files that it rescans by itself, so
it needs no signal; without `torrents_dir` it tracks any torrent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import pwd
import secrets
import signal
import sys
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

from boottorrentd.config import Config
from boottorrentd.errors import InvalidArgument
from boottorrentd.session.supervisor import ChildSpec
from boottorrentd.util.fs import write_atomic
from boottorrentd.util.privdrop import setpriv_prefix
from boottorrentd.util.programs import program_path as _binary
from boottorrentd.util.wait import poll_until

log = logging.getLogger(__name__)

KINDS = ("builtin", "hefur", "opentracker", "none")
# The kinds that read the whitelist file (and reread it on SIGHUP).
WHITELISTED = ("builtin", "opentracker")
WHITELIST_NAME = "whitelist"
READY_TIMEOUT_S = 10.0
# hefur rescans its torrent folder this often (seconds): the delay before it accepts a
# newly added OS.
HEFUR_SCAN_INTERVAL_S = 5


def resolve_kind(cfg: Config) -> str:
    """The tracker this configuration runs: "builtin", "hefur", "opentracker" or "none".

    "auto" is the daemon's own tracker. A tracker the configuration asks for by name but
    that is not installed is an InvalidArgument that says how to install it or which key
    to change.
    """
    kind = cfg.tracker_kind
    if kind in ("none", "builtin"):
        return kind
    if kind == "auto":
        return "builtin"
    if kind == "hefur":
        if not _binary("hefurd"):
            key = "hefur.enable" if cfg.tracker.kind != "hefur" else "tracker.kind"
            raise InvalidArgument(
                f"{key} asks for the hefur tracker, but hefurd is not installed; hefur has "
                "no Debian package: build it from https://github.com/abique/hefur, or use "
                "the daemon's own tracker with \"tracker.kind: auto\" (and "
                "\"hefur.enable: false\")"
            )
        return "hefur"
    if not _binary("opentracker"):
        raise InvalidArgument(
            "tracker.kind is opentracker, but opentracker is not installed; install "
            "Debian's opentracker package ('apt install opentracker'; it starts a tracker "
            "service of its own: 'systemctl disable --now opentracker'), or set "
            "\"tracker.kind: auto\" for the daemon's own tracker"
        )
    return "opentracker"


def _normalize(infohashes: Iterable[str]) -> list[str]:
    hashes = set()
    for value in infohashes:
        text = value.strip().lower()
        if len(text) != 40 or any(c not in "0123456789abcdef" for c in text):
            raise ValueError(f"{value!r} is not a hex SHA-1 infohash")
        hashes.add(text)
    return sorted(hashes)



class Tracker:
    """One tracker for the session's life. `prepare()` gives the child to supervise.

    Whitelist changes: `set_infohashes()` rewrites the list and returns True when the
    running tracker must reread it; the session then sends `reload_signal` (SIGHUP) to
    the child through the supervisor and awaits `wait_whitelisted(new hashes)` (the
    reread happens in a thread, a moment later). All that before the seeder adds the
    torrents: transmission retries a refused announce only after 20 s, then minutes.

    After the tracker (re)starts it knows no peers: its ChildSpec's `started` is left
    for the session to set to the seeder's reannounce, so that clients find the seed at
    once instead of at the seed's next regular announce (~30 min with opentracker).
    """

    reload_signal = signal.SIGHUP

    def __init__(
        self,
        cfg: Config,
        runtime_dir: Path,
        *,
        user: str | None = None,
        torrents_dir: Path | None = None,
    ) -> None:
        """`runtime_dir` is this tracker's own folder (opentracker chroots into it).
        `user`: the user the tracker drops to; None leaves opentracker to its default
        (nobody, when started as root) and hefur to the daemon's user. `torrents_dir`:
        hefur's whitelist, the library's torrent folder (opentracker ignores it)."""
        self.cfg = cfg
        self.runtime_dir = runtime_dir
        self.user = user
        self.torrents_dir = torrents_dir
        self.kind = resolve_kind(cfg)
        self.host = cfg.boottorrent.host_ip
        self.port = cfg.tracker_port
        self.announce_url: str | None = (
            None if self.kind == "none" else f"http://{self.host}:{self.port}/announce"
        )
        self._written: list[str] | None = None

    @property
    def child_name(self) -> str:
        """The supervised child's name: "tracker" for the daemon's own, else the program's."""
        return "tracker" if self.kind == "builtin" else self.kind

    @property
    def whitelist_path(self) -> Path:
        return self.runtime_dir / WHITELIST_NAME

    def prepare(self, infohashes: Iterable[str]) -> ChildSpec | None:
        """Write the whitelist and return the child to run; None when there is no tracker.

        Blocking (small file writes): from async code, run it in a thread if that matters.
        """
        if self.kind == "none":
            return None
        # opentracker reads the whitelist after dropping privileges, inside its chroot.
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        self.runtime_dir.chmod(0o755)
        self._written = None
        self.set_infohashes(infohashes)
        argv = {"builtin": self._builtin_argv, "opentracker": self._opentracker_argv,
                "hefur": self._hefur_argv}[self.kind]()
        return ChildSpec(self.child_name, argv, ready=self.wait_ready)

    def _builtin_argv(self) -> list[str]:
        # The daemon's own interpreter: the one that has this package.
        return [*setpriv_prefix(self.user), sys.executable, "-m", "boottorrentd.tracker",
                "--listen", f"{self.host}:{self.port}", "--whitelist", str(self.whitelist_path),
                "--interval", str(self.cfg.tracker.announce_interval)]

    def _opentracker_argv(self) -> list[str]:
        binary = _binary("opentracker")
        assert binary is not None  # resolve_kind checked
        port = str(self.port)
        # Started as root, opentracker insists on chroot(2), which the hardened unit
        # does not grant; started as the user it needs no privilege at all.
        return [*setpriv_prefix(self.user), binary, "-i", self.host, "-p", port, "-P", port,
                "-d", str(self.runtime_dir), "-w", WHITELIST_NAME]

    def _hefur_argv(self) -> list[str]:
        binary = _binary("hefurd")
        assert binary is not None
        port = str(self.port)
        # hefur counts its announce interval in minutes.
        minutes = max(1, math.ceil(self.cfg.tracker.announce_interval / 60))
        argv = [binary, "-bind-addr", self.host, "-http-port", port, "-https-port", "0",
                "-udp-port", port, "-announce-interval", str(minutes),
                "-control-socket", str(self.runtime_dir / "control")]
        if self.torrents_dir is not None:
            argv += ["-torrent-dir", str(self.torrents_dir),
                     "-scan-interval", str(HEFUR_SCAN_INTERVAL_S)]
        if self.user:
            group = pwd.getpwnam(self.user).pw_gid
            argv += ["-uid", self.user, "-gid", str(group)]
        return argv

    def set_infohashes(self, infohashes: Iterable[str]) -> bool:
        """Make the whitelist exactly `infohashes` (hex). Returns True when the running
        tracker must be sent `reload_signal` (SIGHUP) to take the change; False when
        nothing changed or the tracker needs no signal (hefur rescans, or no tracker)."""
        hashes = _normalize(infohashes)
        if self.kind not in WHITELISTED or hashes == self._written:
            return False
        self.runtime_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(self.whitelist_path, "".join(f"{h}\n" for h in hashes), 0o644)
        self._written = hashes
        return True

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """The ChildSpec's `ready`: return once the tracker answers on host_ip:port and
        tracks the whitelisted torrents; raise if not within `timeout` seconds.

        opentracker listens before it has read its whitelist (a thread reads it), and
        refuses every torrent until then: transmission would retry only after 20 s.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._wait_port(timeout)
        # One file read loads every hash: asking about one of them is enough.
        await self.wait_whitelisted((self._written or [])[:1],
                                    max(0.0, deadline - loop.time()))

    async def _wait_port(self, timeout: float) -> None:
        last_error: list[Exception] = []

        async def accepts() -> bool:
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.host, self.port), 2.0)
            except (OSError, TimeoutError) as e:
                last_error[:] = [e]
                return False
            writer.close()
            await writer.wait_closed()
            return True

        await poll_until(
            accepts, timeout=timeout,
            what=lambda: (f"{self.child_name} does not accept connections on {self.host}:"
                          f"{self.port} ({last_error[0] if last_error else 'no answer'}); "
                          "see its log lines in the journal"))

    async def wait_whitelisted(self, infohashes: Iterable[str],
                               timeout: float = READY_TIMEOUT_S) -> None:
        """Return once the running opentracker accepts every one of `infohashes` (after
        set_infohashes and SIGHUP: it rereads the file in a thread, a moment later);
        raise TimeoutError if it does not within `timeout` seconds. Other kinds: at once.

        Asks with an announce of a peer that leaves again at once (see _accepts).
        """
        if self.kind not in WHITELISTED:
            return
        pending = _normalize(infohashes)

        async def accepted() -> bool:
            # Not answering yet (OSError, TimeoutError): ask again.
            with contextlib.suppress(OSError, TimeoutError):
                pending[:] = [h for h in pending if not await self._accepts(h)]
            return not pending

        await poll_until(
            accepted, timeout=timeout,
            what=lambda: (f"{self.child_name} still refuses {', '.join(pending)}; is it in "
                          f"{self.whitelist_path}, and was {self.child_name} sent SIGHUP?"))

    async def _accepts(self, infohash: str) -> bool:
        # Only a "started" announce meets the whitelist ("stopped" is answered for any
        # hash). The probe peer, host_ip port 1 (nothing listens there), leaves again
        # at once; a client announcing in between may be told about it, and fails to
        # connect to it.
        peer_id = b"-BT0000-" + secrets.token_bytes(12)
        accepted = await self._announce(infohash, peer_id, "started")
        if accepted:
            await self._announce(infohash, peer_id, "stopped")
        return accepted

    async def _announce(self, infohash: str, peer_id: bytes, event: str) -> bool:
        query = urllib.parse.urlencode({
            "info_hash": bytes.fromhex(infohash), "peer_id": peer_id, "port": 1,
            "uploaded": 0, "downloaded": 0, "left": 1, "numwant": 0, "compact": 1,
            "event": event,
        }, quote_via=urllib.parse.quote)  # opentracker reads "+" as "+", not a space
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), 2.0)
        try:
            writer.write(f"GET /announce?{query} HTTP/1.0\r\n"
                         f"Host: {self.host}:{self.port}\r\n\r\n".encode())
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(), 2.0)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        status, _, rest = reply.partition(b"\r\n")
        return b" 200 " in status and b"failure reason" not in rest
