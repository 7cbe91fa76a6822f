"""The libtorrent session that seeds the library: verified, read-only, to a boot lab.

How a torrent gets seeded: it is added in upload mode (it never requests a piece, so it
never writes) with `stop_when_ready`, so libtorrent checks every piece of its files and
pauses it before it talks to anyone; a complete one is then resumed and announced, one
that is not stays paused with the first file that does not match. libtorrent keeps no
resume data here: after a restart every torrent is checked again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import libtorrent as lt  # Debian: python3-libtorrent

from boottorrentd.ltseed.protocol import CHECKING, SEEDING, STOPPED, Seed, SeedState

log = logging.getLogger(__name__)

# Sized for a lab of 200 machines, each connected once to each OS it boots, with room
# for machines that reconnect before their old connection timed out.
MACHINES = 200
CONNECTIONS_LIMIT = 3 * MACHINES
PEERS_PER_TORRENT = 2 * MACHINES
# Connections a whole lab opens at once wait in the kernel's queue, not refused.
LISTEN_QUEUE = MACHINES

# While another program holds the peer port, how often the engine tries to take it back.
LISTEN_RETRY_S = 10.0

_CHECKING_STATES = {lt.torrent_status.checking_files, lt.torrent_status.checking_resume_data}


@dataclass(frozen=True)
class Settings:
    """What the daemon's configuration decides about the seed (see __main__.py)."""

    host: str
    port: int
    upload_slots: int
    upload_limit_kbps: int  # 0: unlimited
    local_discovery: bool
    peer_exchange: bool


def session_settings(s: Settings) -> dict[str, object]:
    return {
        "listen_interfaces": f"{s.host}:{s.port}",
        "outgoing_interfaces": s.host,
        "listen_queue_size": LISTEN_QUEUE,
        # DHT would announce the swarm beyond the lab; nothing here sits behind a NAT.
        "enable_dht": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_lsd": s.local_discovery,
        # aria2c, the only client, speaks TCP BitTorrent only.
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        # A fixed number of slots, and an interested peer takes a free one at once: a
        # joining machine gets data without waiting for the next unchoke round.
        "choking_algorithm": lt.choking_algorithm_t.fixed_slots_choker,
        "unchoke_slots_limit": s.upload_slots,
        "upload_rate_limit": s.upload_limit_kbps * 1000,
        "connections_limit": CONNECTIONS_LIMIT,
        "announce_to_all_tiers": True,
        # Every boot server's tracker (swarm.other_trackers, a tier each): machines announce
        # to the first that answers, so the seed must be in all of them. With the tiers
        # alone, libtorrent 2.0 announced to the first tier only.
        "announce_to_all_trackers": True,
        "alert_mask": lt.alert.category_t.error_notification,
    }


def lt_version() -> str:
    return str(lt.__version__)


def _state(status: lt.torrent_status) -> str:
    # A file it cannot read stops a check halfway, with the error.
    if status.errc.value() != 0:
        return STOPPED
    if status.state in _CHECKING_STATES:
        return CHECKING
    return STOPPED if status.paused else SEEDING


class Engine:
    """One libtorrent session, seeding exactly the torrents of the last `set_torrents`."""

    def __init__(self, settings: Settings) -> None:
        # Without libtorrent's default plugins (flags 0): PEX is added only when wanted.
        self.session = lt.session(session_settings(settings), 0)
        self.session.add_extension("ut_metadata")
        self.session.add_extension("smart_ban")
        if settings.peer_exchange:
            self.session.add_extension("ut_pex")
        # libtorrent leaves peers on a local network out of its rate limits, and every
        # peer of a boot lab is on the local network: put them all in the global class
        # that upload_rate_limit limits.
        everyone = lt.ip_filter()
        everyone.add_rule("0.0.0.0", "255.255.255.255", 1 << lt.session.global_peer_class_id)
        self.session.set_peer_class_filter(everyone)
        self._handles: dict[str, lt.torrent_handle] = {}
        self._names: dict[str, str] = {}
        # Torrents being checked: resumed (and announced) once complete.
        self._checking: set[str] = set()
        self._settings = settings
        self._listen_tried = time.monotonic()

    def set_torrents(self, seeds: list[Seed]) -> None:
        """Seed exactly `seeds`: remove the others (their files stay) and check the
        new ones, and the ones that were refused, before they run."""
        wanted = {s.infohash: s for s in seeds}
        for infohash in [h for h in self._handles if h not in wanted]:
            self.session.remove_torrent(self._handles.pop(infohash))
            self._checking.discard(infohash)
            log.info("stopped seeding %s (%s)", self._names.pop(infohash), infohash)
        for infohash, seed in wanted.items():
            handle = self._handles.get(infohash)
            if handle is None:
                self._add(seed)
            elif infohash not in self._checking and _state(handle.status()) == STOPPED:
                # Refused before: its files may have been restored since.
                self._recheck(infohash, handle)

    def _add(self, seed: Seed) -> None:
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(lt.bdecode(seed.metainfo))
        params.save_path = seed.save_path
        params.max_connections = PEERS_PER_TORRENT
        # Not paused (a paused torrent is not checked), never auto-managed (libtorrent's
        # queue would pause seeds), checked in full (no seed_mode).
        params.flags |= lt.torrent_flags.upload_mode | lt.torrent_flags.stop_when_ready
        params.flags &= ~(lt.torrent_flags.paused | lt.torrent_flags.auto_managed
                          | lt.torrent_flags.seed_mode)
        handle = self.session.add_torrent(params)
        self._handles[seed.infohash] = handle
        self._names[seed.infohash] = seed.name
        self._checking.add(seed.infohash)
        log.info("checking %s (%s) in %s", seed.name, seed.infohash, seed.save_path)

    def _recheck(self, infohash: str, handle: lt.torrent_handle) -> None:
        handle.clear_error()
        handle.set_flags(lt.torrent_flags.stop_when_ready)
        handle.force_recheck()
        handle.resume()
        self._checking.add(infohash)
        log.info("checking %s (%s) again", self._names[infohash], infohash)

    def poll(self) -> None:
        """Start the torrents whose check ended complete; log the others' refusal and
        libtorrent's errors. Called a few times a second."""
        for alert in self.session.pop_alerts():
            # Some alerts come whatever the mask; only errors are worth a line.
            if alert.category() & lt.alert.category_t.error_notification:
                log.warning("%s", alert.message())
        if (time.monotonic() - self._listen_tried > LISTEN_RETRY_S
                and self.listen_problem()):
            self._retry_listen()
        for infohash in sorted(self._checking):
            handle = self._handles[infohash]
            status = handle.status()
            if _state(status) == CHECKING:
                continue
            self._checking.discard(infohash)
            name = self._names[infohash]
            if status.errc.value() == 0 and status.is_seeding:
                handle.resume()
                handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
                log.info("seeding %s (%s)", name, infohash)
            else:
                log.error("not seeding %s (%s): %s", name, infohash,
                          self._error(handle, status)
                          or f"{self._bad_file(handle)} does not match the torrent")

    def listen_problem(self) -> str:
        """"" while the engine listens on its peer port, else what is wrong and the fix.

        libtorrent does not fail when the port is taken: it takes a port above it (or
        one the system picks) and announces that one, so that peers still find the seed
        through the tracker; but a firewall opened for the configured port blocks it."""
        host, port = self._settings.host, self._settings.port
        if self.session.is_listening() and self.session.listen_port() == port:
            return ""
        now = "on no port" if not self.session.is_listening() else \
            f"on port {self.session.listen_port()} instead"
        return (f"the seed cannot listen on its peer port {host}:{port}, another program "
                f"holds it (ss -ltnp 'sport = :{port}' names it), and listens {now}; stop "
                "that program, or set seeder.peer_port to a free port and restart the session")

    def _retry_listen(self) -> None:
        # Re-applying the same listen_interfaces does not reopen the sockets; clearing it
        # first does. Connections already open stay open.
        self._listen_tried = time.monotonic()
        self.session.apply_settings({"listen_interfaces": ""})
        self.session.apply_settings(
            {"listen_interfaces": f"{self._settings.host}:{self._settings.port}"})

    def reannounce(self) -> None:
        for infohash, handle in self._handles.items():
            if infohash not in self._checking and _state(handle.status()) == SEEDING:
                handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)

    @staticmethod
    def _bad_file(handle: lt.torrent_handle) -> str:
        files = handle.torrent_file().files()
        done = handle.file_progress(lt.torrent_handle.piece_granularity)
        for index, have in enumerate(done):
            pad = files.file_flags(index) & lt.file_storage.flag_pad_file
            if not pad and have < files.file_size(index):
                return files.file_path(index)
        return ""

    @staticmethod
    def _error(handle: lt.torrent_handle, status: lt.torrent_status) -> str:
        if status.errc.value() == 0:
            return ""
        if status.error_file >= 0:
            path = handle.torrent_file().files().file_path(status.error_file)
            return f"{path}: {status.errc.message()}"
        return status.errc.message()

    def stats(self) -> list[SeedState]:
        states = []
        for infohash, handle in self._handles.items():
            status = handle.status()
            state = CHECKING if infohash in self._checking else _state(status)
            failed = status.errc.value() != 0
            states.append(SeedState(
                infohash=infohash,
                name=self._names[infohash],
                status=state,
                progress=status.progress,
                peers=status.num_peers,
                uploaded_bytes=status.all_time_upload,
                rate_upload=status.upload_payload_rate,
                bad_file=self._bad_file(handle) if state == STOPPED and not failed else "",
                error=self._error(handle, status),
            ))
        return states

    def close(self) -> None:
        self.session.pause()
