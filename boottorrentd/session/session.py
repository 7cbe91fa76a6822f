"""A boot session: the boot address, the tracker, the seed, the boot HTTP server and
dnsmasq, started in that order (each needs the one before) and stopped in reverse.

Before any child runs, the session looks for another DHCP server on the boot interface
(dhcpprobe.py) and decides whether dnsmasq serves full DHCP or proxyDHCP; while it serves
full DHCP it keeps looking, and is degraded while another server answers.

Data flows one way: the config and the library go in; the children are rendered from
them. The session records what it claimed in <state>/session.json so that a daemon
restarted mid-session undoes the old claim and brings the session back.
"""

import asyncio
import contextlib
import json
import logging
import pwd
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from boottorrentd.boot.http import BootServer
from boottorrentd.clients.registry import Registry
from boottorrentd.config import Config
from boottorrentd.errors import BootTorrentError
from boottorrentd.library.store import Library, OSEntry
from boottorrentd.library.torrent import with_announce
from boottorrentd.session import dhcpprobe, network
from boottorrentd.session.children.dnsmasq import Dnsmasq
from boottorrentd.session.children.tracker import Tracker
from boottorrentd.session.seeder import SeedEngine, make_seeder
from boottorrentd.session.seeding import SeederUnavailable, TorrentStats
from boottorrentd.session.supervisor import ChildSpec, ChildState, Supervisor
from boottorrentd.util.fs import read_state, write_atomic

log = logging.getLogger(__name__)

STATS_INTERVAL_S = 2.0
# Created by the Debian package (sysusers.d); the children run as it, not as root.
SYSTEM_USER = "boottorrent"


def _parse_remembered(raw: bytes) -> dict:
    record = json.loads(raw.decode("utf-8"))
    if not isinstance(record, dict) or not isinstance(record.get("active"), bool):
        raise TypeError("'active' is not true or false")
    if record.get("claim") is not None:
        try:
            network.NetworkClaim.from_dict(record["claim"])
        except BootTorrentError as e:
            raise ValueError(str(e)) from None
    return record


def children_user(cfg: Config) -> str | None:
    """Who the children run as: children.user, else the package's system user; None (the
    daemon's own user) in a development checkout where that user does not exist."""
    if cfg.children.user:
        return cfg.children.user
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        return None
    return SYSTEM_USER


@dataclass(frozen=True)
class ChildStatus:
    name: str
    state: ChildState
    pid: int
    uptime_s: float
    restarts: int


class Session:
    def __init__(
        self,
        config: Config,
        library: Library,
        registry: Registry,
        state_dir: Path,
        runtime_dir: Path,
        on_change: Callable[[], None],
    ) -> None:
        self.config = config
        self.library = library
        self.registry = registry
        self.state_file = state_dir / "session.json"
        self.phase1_dir = state_dir / "phase1"
        self.dir = runtime_dir / "session"
        self.on_change = on_change
        self.claim: network.NetworkClaim | None = None
        self.supervisor = Supervisor(runtime_dir / "children.json", self._children_changed)
        self.tracker: Tracker | None = None
        self.seeder: SeedEngine | None = None
        self.http: BootServer | None = None
        self.dnsmasq: Dnsmasq | None = None
        self.seeding: list[TorrentStats] = []
        # OSes the server stopped seeding (StopSeeding) for the rest of the session.
        self.unseeded: set[str] = set()
        # What the seed engine says is wrong with it as a whole (its peer port); "" if fine.
        self.seed_health = ""
        self.dhcp: dhcpprobe.DhcpDecision | None = None  # decided at start
        self.dhcp_watch = dhcpprobe.Watch()
        self.started_at = 0.0
        self._tasks: list[asyncio.Task] = []
        self._grub_lock = asyncio.Lock()
        self._running = False

    # --- what the daemon shows -----------------------------------------------------------

    @property
    def degraded(self) -> bool:
        return self._running and (self.supervisor.degraded or bool(self.dhcp_watch.present)
                                  or bool(self._seed_problems()))

    def _seed_problems(self) -> list[str]:
        """What the seed engine reports wrong: its peer port, torrents it refused or broke."""
        return [p for p in (self.seed_health, *(s.error for s in self.seeding)) if p]

    @property
    def reason(self) -> str:
        """Why the running session is degraded or serves DHCP the way it does; "" when
        there is nothing to explain."""
        down = [f"child {c.spec.name}: {c.state}" for c in self.supervisor.children.values()
                if c.state != ChildState.RUNNING]
        dhcp = self.dhcp.reason if self.dhcp else ""
        return "; ".join(r for r in (self.dhcp_watch.reason, *down, *self._seed_problems(),
                                     dhcp) if r)

    def children(self) -> list[ChildStatus]:
        return [ChildStatus(c.spec.name, c.state, c.pid, c.uptime, c.restarts)
                for c in self.supervisor.children.values()]

    def _children_changed(self) -> None:
        self.on_change()

    # --- persistence -----------------------------------------------------------------------

    @staticmethod
    def remembered(state_dir: Path) -> dict:
        """What session.json says: {"active": bool, "claim": a NetworkClaim dict or None};
        {} when there is none or it was corrupt (then it is set aside)."""
        return read_state(state_dir / "session.json", _parse_remembered) or {}

    def _remember(self, active: bool) -> None:
        record = {"active": active, "claim": self.claim.to_dict() if self.claim else None}
        write_atomic(self.state_file, json.dumps(record, indent=2) + "\n")

    async def undo_previous(self) -> None:
        """Undo what a daemon that died mid-session left: its children and its address."""
        self.supervisor.kill_leftovers()
        claim = self.remembered(self.state_file.parent).get("claim")
        if claim:
            await asyncio.to_thread(network.release, network.NetworkClaim.from_dict(claim))

    # --- start and stop --------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        await self.undo_previous()
        self.claim = await asyncio.to_thread(
            network.claim, cfg.dnsmasq.interface, cfg.boot_network)
        self._remember(active=True)
        try:
            await self._start_children()
        except BaseException:
            await self._teardown()
            self._remember(active=False)
            raise
        self._running = True
        self.started_at = time.monotonic()
        self._tasks.append(asyncio.create_task(self._poll_stats(), name="seed-stats"))
        log.info("session running on %s (%s)", cfg.dnsmasq.interface, cfg.boot_network)

    async def _start_children(self) -> None:
        cfg = self.config
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "torrents").mkdir(parents=True)
        user = children_user(cfg)
        probe_mac = dhcpprobe.host_probe_mac(cfg.dnsmasq.interface)
        # Before any child: with full DHCP beside another server, nothing may start.
        self.dhcp = dhcp = await self._choose_dhcp(probe_mac)

        self.tracker = Tracker(cfg, self.dir / "tracker", user=user)
        entries = list(self.library.entries.values())
        spec = self.tracker.prepare(e.torrent.infohash for e in entries)
        if spec is not None:
            spec.started = self._after_tracker_start
            await self.supervisor.start(spec)

        self.seeder = make_seeder(cfg, self.dir / "seeder", self.library.oss_dir,
                                  announce_url=self.tracker.announce_url, user=user)
        # Every OS goes to the engine, the marked ones too: its full check (done when
        # the child has started) is what marks or clears them before any is served.
        await self.seeder.set_torrents(entries)
        await self.supervisor.start(self.seeder.prepare())
        await self._judge_now()
        await asyncio.to_thread(self._write_torrents, list(self.library.served.values()))
        if cfg.swarm.role == "seed":
            # A seed server boots nobody: a full server's DHCP and boot files do that.
            return

        self.http = BootServer(
            host=cfg.boottorrent.host_ip, port=cfg.http.port, cfg=cfg, library=self.library,
            registry=self.registry, phase1_dir=self.phase1_dir,
            torrent_file=lambda entry: self.dir / "torrents" / f"{entry.name}.torrent",
            on_torrent=self._download_starting,
        )
        await self.http.start()

        self.dnsmasq = Dnsmasq(cfg, self.dir / "dnsmasq", dhcp_mode=dhcp.mode,
                               ignore_mac=dhcpprobe.format_mac(probe_mac), user=user,
                               phase1_dir=self.phase1_dir.absolute())
        dnsmasq_spec: ChildSpec = await asyncio.to_thread(self.dnsmasq.prepare)
        await self.boot_plans_changed()
        self.registry.on_assignments.append(self._rewrite_grub_config_soon)
        self._tasks.append(asyncio.create_task(self._consume_leases(), name="leases"))
        await self.supervisor.start(dnsmasq_spec)
        if dhcp.mode == "full" and self._probes():
            self._tasks.append(asyncio.create_task(self._watch_dhcp(probe_mac),
                                                   name="dhcp-watch"))

    # --- other DHCP servers ----------------------------------------------------------------

    def _probes(self) -> bool:
        """Whether this session looks for other DHCP servers: only where it may serve full
        DHCP (proxyDHCP is made to run beside one)."""
        cfg = self.config
        return cfg.swarm.role == "full" and cfg.dnsmasq.enable_dhcp and cfg.dhcp.mode != "proxy"

    async def _probe(self, probe_mac: bytes) -> list[IPv4Address]:
        """The other DHCP servers that answer a DISCOVER on the boot interface now."""
        cfg = self.config
        with dhcpprobe.DhcpProbe(cfg.dnsmasq.interface, probe_mac) as probe:
            offers = await probe.discover(cfg.dhcp.probe_seconds)
        return dhcpprobe.servers(offers, own=cfg.boot_network.ip)

    async def _choose_dhcp(self, probe_mac: bytes) -> dhcpprobe.DhcpDecision:
        cfg = self.config
        if not self._probes():
            return dhcpprobe.DhcpDecision("proxy" if cfg.dhcp.mode == "proxy" else "full")
        decision = dhcpprobe.decide(cfg.dhcp.mode, await self._probe(probe_mac),
                                    cfg.dnsmasq.interface)
        if decision.reason:
            log.info("%s", decision.reason)
        return decision

    async def _watch_dhcp(self, probe_mac: bytes) -> None:
        """Probe every dhcp.watch_seconds while serving full DHCP; another server seen
        makes the session degraded until it has been missed twice in a row."""
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.dhcp.watch_seconds)
            try:
                seen = await self._probe(probe_mac)
            except (BootTorrentError, OSError) as e:
                log.warning("could not look for other DHCP servers: %s", e)
                continue
            if not self.dhcp_watch.update(seen):
                continue
            if self.dhcp_watch.present:
                log.warning("%s", self.dhcp_watch.reason)
            else:
                log.info("no other DHCP server answers on %s any more", cfg.dnsmasq.interface)
            self.on_change()

    def reconfigure(self, config: Config) -> None:
        """Go on with `config`, which differs from the running one only in keys that the
        boot HTTP server reads per request (config/changes.py says which)."""
        self.config = config
        if self.http is not None:
            self.http.cfg = config
        # The menu, default and timeout are in GRUB's config too.
        self._rewrite_grub_config_soon()

    async def boot_plans_changed(self) -> None:
        """Rewrite GRUB's config from the current boot plans: UEFI machines read it over
        TFTP, which cannot ask the boot plan per request as the HTTP server does."""
        cfg = self.config
        if self.dnsmasq is None or self.http is None or cfg.boot.uefi_loader != "shim" \
                or not cfg.dnsmasq.enable_tftp:
            return
        # One at a time, each from the state when it runs: the last write is the newest.
        async with self._grub_lock:
            text = await self.http.grub_text()
            await asyncio.to_thread(self.dnsmasq.write_grub_config, text)

    def _rewrite_grub_config_soon(self) -> None:
        if self._running:
            self._tasks = [task for task in self._tasks if not task.done()]
            self._tasks.append(asyncio.create_task(self.boot_plans_changed(),
                                                   name="grub-config"))

    def _download_starting(self, _entry: OSEntry) -> None:
        # The machine that fetched the torrent connects to the seed within seconds.
        if self.seeder is not None:
            self.seeder.expect_peers()

    async def _after_tracker_start(self) -> None:
        # A restarted tracker knows no peers; the seed must announce at once, not in 30 min.
        if self.seeder is not None and self._running:
            await self.seeder.reannounce()

    def _write_torrents(self, entries: list[OSEntry]) -> None:
        """The torrents clients fetch: the library's, with this session's announce URL and
        then the other servers' trackers (a tier each: the next when one stops answering)."""
        folder = self.dir / "torrents"
        wanted = {f"{e.name}.torrent" for e in entries}
        for stale in folder.glob("*.torrent"):
            if stale.name not in wanted:
                stale.unlink()
        url = self.tracker.announce_url if self.tracker else None
        for entry in entries:
            data = entry.torrent_path.read_bytes()
            urls = [*([url] if url else []), *self.config.swarm.other_trackers]
            write_atomic(folder / f"{entry.name}.torrent",
                         with_announce(data, urls) if urls else data)

    async def library_changed(self) -> None:
        """Seed exactly the library, without a restart."""
        if not self._running:
            return
        entries = list(self.library.entries.values())
        hashes = [e.torrent.infohash for e in entries]
        if self.tracker and self.tracker.set_infohashes(hashes):
            self.supervisor.send_signal(self.tracker.child_name, self.tracker.reload_signal)
            # A first announce the tracker refuses is retried only after minutes.
            await self.tracker.wait_whitelisted(hashes, timeout=10)
        assert self.seeder is not None
        await self.seeder.set_torrents(self._seeded())
        await self._judge_now()
        await self._served_changed()

    async def stop_seeding(self, name: str) -> None:
        """Seed every OS but `name` (and those stopped before) until the session ends."""
        self.unseeded.add(name)
        assert self.seeder is not None
        await self.seeder.set_torrents(self._seeded())
        await self._judge_now()
        self.on_change()

    def _seeded(self) -> list[OSEntry]:
        return [e for e in self.library.entries.values() if e.name not in self.unseeded]

    async def _judge_now(self) -> None:
        """Take the engine's verdict on the library now; while the engine does not
        answer (it restarts), the statistics poll takes it when it is back."""
        assert self.seeder is not None
        try:
            self.seeding = await self.seeder.stats()
        except SeederUnavailable as e:
            log.warning("%s; its verdict on the library comes with its next statistics", e)
            return
        self._judge(self.seeding)

    def _judge(self, stats: list[TorrentStats]) -> bool:
        """Mark the OSes the engine refused or reports broken, clear the ones it seeds;
        True when that changed what is served."""
        before = set(self.library.served)
        by_hash = {s.infohash: s for s in stats}
        for entry in list(self.library.entries.values()):
            seed = by_hash.get(entry.torrent.infohash)
            if seed is not None and seed.error:
                self.library.set_problem(entry.name, seed.error)
            elif seed is not None and seed.status == "seeding":
                self.library.set_problem(entry.name, "")
        return set(self.library.served) != before

    async def _served_changed(self) -> None:
        """Offer exactly the served OSes: their torrents and the boot menus."""
        await asyncio.to_thread(self._write_torrents, list(self.library.served.values()))
        await self.boot_plans_changed()

    async def _consume_leases(self) -> None:
        assert self.dnsmasq is not None
        async for event in self.dnsmasq.lease_events():
            self.registry.lease(event.action, event.mac, event.ip, event.hostname,
                                asker=event.asker)

    async def _poll_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            if self.seeder is None:
                continue
            try:
                stats = await self.seeder.stats()
                health = await self.seeder.health()
            except Exception as e:  # transmission restarting: the supervisor reports it
                log.debug("no seed statistics: %s", e)
                continue
            if stats != self.seeding or health != self.seed_health:
                self.seeding, self.seed_health = stats, health
                if self._judge(stats):
                    await self._served_changed()
                self.on_change()

    async def stop(self, *, forget: bool = True) -> None:
        """Stop everything; `forget=False` (daemon shutdown) keeps the session remembered
        so the next daemon start brings it back."""
        self._running = False
        await self._teardown()
        self._remember(active=not forget)
        log.info("session stopped")

    async def _teardown(self) -> None:
        with contextlib.suppress(ValueError):
            self.registry.on_assignments.remove(self._rewrite_grub_config_soon)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.seeder is not None:
            # Its RPC (and join watcher) ends while transmission still answers.
            self.seeder.close()
        await self.supervisor.stop()
        if self.http is not None:
            await self.http.stop()
        if self.dnsmasq is not None:
            self.dnsmasq.close()
        self.http = self.dnsmasq = self.seeder = self.tracker = None
        self.seeding, self.seed_health = [], ""
        self.unseeded = set()
        if self.claim is not None:
            try:
                await asyncio.to_thread(network.release, self.claim)
            except BootTorrentError as e:
                log.error("could not undo the boot address: %s", e)
            self.claim = None
        shutil.rmtree(self.dir, ignore_errors=True)
