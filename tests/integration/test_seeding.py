"""The server's seed and tracker on a real LAN: the seed engine (transmission-daemon or
boottorrentd-ltseed) and the tracker (the daemon's own, boottorrentd-tracker; opentracker
where a test says so) in a server namespace, aria2c in client namespaces, all on one
bridge.

What every engine promises is tested with each (`engine` parametrized); transmission's
own settings and workarounds only with transmission. What every tracker promises (the
whitelist and its SIGHUP) is tested with each (`tracker_kind` parametrized).

transmission's RPC listens on 127.0.0.1 inside the server namespace, out of the test
process's reach. The test drives the seeder (and awaits every ChildSpec hook) on an
asyncio loop in a thread that entered that namespace: setns(CLONE_NEWNET) moves only the
calling thread, and the loop's worker threads (asyncio.to_thread) enter it too. That is
where the daemon itself runs, so production code needs nothing for it. The children run
from their ChildSpec argv with `ip netns exec`, and the test plays the supervisor: start,
`ready`, `started`, SIGHUP, kill -9 and restart.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from boottorrentd.config import Config, parse_config
from boottorrentd.errors import BootTorrentError, InvalidArgument
from boottorrentd.library.bencode import bdecode
from boottorrentd.library.store import Library, OSEntry
from boottorrentd.library.torrent import with_announce
from boottorrentd.session.children import tracker as tracker_module
from boottorrentd.session.children.tracker import Tracker, resolve_kind
from boottorrentd.session.children.transmission import TransmissionSeeder
from boottorrentd.session.seeder import ENGINES, SeedEngine, make_seeder
from boottorrentd.session.supervisor import ChildSpec
from boottorrentd.util.wait import wait_until
from boottorrentlab.devkit.files import sha256
from boottorrentlab.devkit.lan import Lan, Netns
from tests.conftest import world_readable_tmpdir

pytestmark = pytest.mark.integration

T = TypeVar("T")

PAYLOAD_BYTES = 8 << 20
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def enter_netns(name: str) -> None:
    """Move the calling thread (only) into the named network namespace."""
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsLoop:
    """An asyncio loop running in a thread inside a network namespace."""

    def __init__(self, netns: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, args=(netns,), daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error:
            raise self._error

    def _main(self, netns: str) -> None:
        try:
            enter_netns(netns)
            # Workers would inherit the namespace from this thread anyway; entering it
            # explicitly keeps that true whoever creates them.
            self.loop.set_default_executor(ThreadPoolExecutor(
                4, thread_name_prefix=f"in-{netns}", initializer=enter_netns,
                initargs=(netns,)))
            asyncio.set_event_loop(self.loop)
        except BaseException as e:
            self._error = e
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def in_netns(netns: str, fn: Any, *args: Any) -> Any:
    """Run a blocking function in a fresh thread inside `netns`; return its result."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            enter_netns(netns)
            box["value"] = fn(*args)
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=main)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- tracker requests from a probe namespace (never from the host) -----------------------


def _tracker_get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as reply:
        decoded = bdecode(reply.read())
    assert isinstance(decoded, dict)
    return decoded


def announce(netns: str, base: str, infohash: str) -> dict:
    """One announce as a downloading peer (port 1: nothing listens there)."""
    query = urllib.parse.urlencode({
        "info_hash": bytes.fromhex(infohash),
        "peer_id": b"-PR0001-" + secrets.token_bytes(12),
        "port": 1, "uploaded": 0, "downloaded": 0, "left": 1, "compact": 1,
        "event": "started",
    }, quote_via=urllib.parse.quote)  # opentracker reads "+" as "+", not a space
    return in_netns(netns, _tracker_get, f"{base}?{query}")


def scrape(netns: str, announce_url: str, infohash: str) -> dict:
    """The tracker's counts for one torrent: complete (seeds), incomplete, downloaded."""
    base = announce_url.replace("/announce", "/scrape")
    query = urllib.parse.urlencode({"info_hash": bytes.fromhex(infohash)},
                                   quote_via=urllib.parse.quote)
    files = in_netns(netns, _tracker_get, f"{base}?{query}").get(b"files", {})
    counts = files.get(bytes.fromhex(infohash), {})
    return {key.decode(): value for key, value in counts.items()}


def json_load(path: Path) -> dict:
    return json.loads(path.read_text())


# --- the site: a server namespace with a library, its tracker and its seed ---------------


def make_config(lan: Lan, engine: str = "transmission", tracker_kind: str = "builtin",
                **seeder: Any) -> Config:
    return parse_config({
        "boottorrent": {"version": 0, "host_ip": lan.address(1)},
        "dnsmasq": {"dhcp_range": f"{lan.address(100)},{lan.address(150)},1h"},
        "tracker": {"kind": tracker_kind},
        "seeder": {"engine": engine, **seeder},
    })


@dataclass
class Site:
    lan: Lan
    tmp: Path
    loop: NetnsLoop
    srv: Netns
    probe: Netns
    cfg: Config
    library: Library
    tracker: Tracker
    seeder: SeedEngine
    entries: dict[str, OSEntry] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    specs: dict[str, ChildSpec] = field(default_factory=dict)

    def add_os(self, name: str) -> OSEntry:
        src = self.tmp / "src" / name
        src.mkdir(parents=True)
        (src / "config.yaml").write_text(f"dispname: {name}\nmethod: bin\nbin: payload.bin\n")
        (src / "payload.bin").write_bytes(os.urandom(PAYLOAD_BYTES))
        entry = self.loop.run(self.library.add(name, src))
        self.entries[name] = entry
        return entry

    def hashes(self, *names: str) -> list[str]:
        return [self.entries[n].torrent.infohash for n in names or self.entries]

    def spawn(self, spec: ChildSpec) -> None:
        """Start a child as the supervisor does: run argv, then `ready`, then `started`."""
        with open(self.tmp / f"{spec.name}.log", "ab") as log:
            self.procs[spec.name] = self.srv.popen(*spec.argv, env=spec.env, stdout=log,
                                                   stderr=subprocess.STDOUT)
        self.specs[spec.name] = spec
        if spec.ready:
            self.loop.run(spec.ready())
        if spec.started:
            self.loop.run(spec.started())

    def kill9(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.kill()  # `ip netns exec` execs the child: this is the child's pid
        proc.wait(10)

    def start_tracker(self) -> None:
        spec = self.tracker.prepare(self.hashes())
        assert spec is not None
        # What the session does: a restarted tracker learns of the seed at once.
        spec.started = self.seeder.reannounce
        self.spawn(spec)

    def start_seeder(self) -> None:
        self.spawn(self.seeder.prepare())

    @property
    def seeder_child(self) -> str:
        """The seed engine's child: "transmission" or "ltseed"."""
        (name,) = (n for n in self.specs if n != self.tracker.child_name)
        return name

    def seed(self, *names: str) -> None:
        self.loop.run(self.seeder.set_torrents([self.entries[n] for n in names]))

    def stats(self) -> dict[str, Any]:
        return {s.infohash: s for s in self.loop.run(self.seeder.stats())}

    def client_torrent(self, name: str) -> Path:
        path = self.tmp / f"{name}.client.torrent"
        metainfo = self.entries[name].torrent_path.read_bytes()
        assert self.tracker.announce_url
        path.write_bytes(with_announce(metainfo, [self.tracker.announce_url]))
        return path

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                         for p in sorted(self.tmp.glob("*.log")))


@pytest.fixture
def engine() -> str:
    """The seed engine of `site`; tests of what every engine does parametrize it."""
    return "transmission"


@pytest.fixture
def tracker_kind() -> str:
    """The tracker of `site`; tests of what every tracker does parametrize it."""
    return "builtin"


@pytest.fixture
def seeder_options() -> dict[str, Any]:
    """More seeder.* keys for `site`."""
    return {}


@pytest.fixture
def site(lan: Lan, tmp_path: Path, engine: str, tracker_kind: str,
         seeder_options: dict[str, Any]) -> Iterator[Site]:
    srv = lan.add("srv")
    srv.add_address(1)
    probe = lan.add("probe")
    probe.add_address(9)
    loop = NetnsLoop(srv.name)
    cfg = make_config(lan, engine, tracker_kind, **seeder_options)
    state = tmp_path / "state"
    library = Library(state)
    library.load()
    # The tracker runs as nobody, who must reach its folder: not pytest's 0700 tmp_path.
    run = world_readable_tmpdir("bt-seeding-run-")
    tracker = Tracker(cfg, run / "tracker", user="nobody")
    seeder = make_seeder(cfg, tmp_path / "run" / "seeder", library.oss_dir,
                         announce_url=tracker.announce_url, user=None)
    s = Site(lan, tmp_path, loop, srv, probe, cfg, library, tracker, seeder)
    try:
        yield s
    finally:
        print(s.logs())  # shown by pytest when the test failed
        seeder.close()
        loop.close()
        shutil.rmtree(run, ignore_errors=True)
        # lan.close() (the fixture) stops the children: they are srv's processes.


def aria2c(ns: Netns, torrent: Path, out: Path, log: Path) -> subprocess.Popen:
    """A boot client's download: tracker only, no DHT/LPD, leave at once when done."""
    out.mkdir(parents=True, exist_ok=True)
    argv = [
        "aria2c", f"--dir={out}", "--seed-time=0", "--enable-dht=false",
        "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=true",
        "--bt-tracker-interval=2", "--bt-tracker-connect-timeout=3", "--bt-tracker-timeout=5",
        "--bt-stop-timeout=40", "--file-allocation=none", "--disable-ipv6=true",
        "--summary-interval=0", "--console-log-level=notice", "--bt-save-metadata=false",
        "--listen-port=6881-6889", str(torrent),
    ]
    with open(log, "wb") as output:
        return ns.popen(*argv, stdout=output, stderr=subprocess.STDOUT)


def download(site: Site, name: str, clients: list[Netns], timeout: float = 60,
             *, expect_peers: bool = False) -> float:
    """Download `name` on every client at once; check the bytes; return the seconds.
    `expect_peers`: tell the seeder that clients join, as the boot server does."""
    torrent = site.client_torrent(name)
    begin = time.monotonic()
    if expect_peers:
        site.loop.loop.call_soon_threadsafe(site.seeder.expect_peers)
    runs = []
    for client in clients:
        tag = f"{client.name}-{secrets.token_hex(2)}"
        out = site.tmp / "dl" / tag
        log = site.tmp / f"aria2c-{tag}.log"
        runs.append((aria2c(client, torrent, out, log), out, log))
    for proc, _out, log in runs:
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        assert code == 0, f"aria2c failed ({code}):\n{log.read_text()}\n{site.logs()}"
    seconds = time.monotonic() - begin
    want = sha256(site.entries[name].path / "payload.bin")
    for _proc, out, _log in runs:
        assert sha256(out / name / "payload.bin") == want
    return seconds


# --- the tests ------------------------------------------------------------------------


def test_settings_bind_rpc_to_localhost_on_a_random_port_with_auth_and_peers_to_host_ip(
        lan: Lan, tmp_path: Path) -> None:
    cfg = make_config(lan)
    rendered = []
    for i in range(2):
        seeder = TransmissionSeeder(cfg, tmp_path / f"t{i}", tmp_path / "oss",
                                    announce_url=None)
        seeder.prepare()
        rendered.append(json_load(seeder.settings_path))
    one, two = rendered
    assert one["rpc-bind-address"] == "127.0.0.1"
    assert one["rpc-authentication-required"] is True
    assert one["rpc-username"] and one["rpc-password"]
    assert (one["rpc-port"], one["rpc-username"], one["rpc-password"]) != (
        two["rpc-port"], two["rpc-username"], two["rpc-password"])
    assert one["dht-enabled"] is False
    assert one["bind-address-ipv4"] == cfg.boottorrent.host_ip
    assert one["peer-port"] == cfg.seeder.peer_port
    assert one["ratio-limit-enabled"] is False and one["idle-seeding-limit-enabled"] is False
    assert one["seed-queue-enabled"] is False and one["download-queue-enabled"] is False
    assert one["encryption"] == 1
    assert one["download-dir"] == str(tmp_path / "oss")
    # The clear-text password: the daemon and the child's group may read it, nobody else.
    assert (tmp_path / "t0" / "settings.json").stat().st_mode & 0o037 == 0


def test_transmission_hashes_its_rpc_password_when_it_starts(site: Site) -> None:
    site.start_seeder()

    # transmission rewrote its settings: the RPC password is now a salted hash.
    assert isinstance(site.seeder, TransmissionSeeder)
    settings = json_load(site.seeder.settings_path)
    assert settings["rpc-bind-address"] == "127.0.0.1"
    assert settings["rpc-password"].startswith("{")


@pytest.mark.parametrize("engine", ENGINES)
def test_seed_is_verified_and_seeding_at_100_percent_after_set_torrents(site: Site) -> None:
    site.add_os("alpha")
    site.start_tracker()
    site.start_seeder()
    site.seed("alpha")

    (stats,) = site.stats().values()
    assert (stats.infohash, stats.name) == (site.hashes("alpha")[0], "alpha")
    assert stats.status == "seeding", stats
    assert stats.percent_done == 1.0
    assert stats.error == ""
    # Nothing the seed keeps lives in the library.
    assert sorted(p.name for p in site.entries["alpha"].path.iterdir()) == [
        "config.yaml", "payload.bin"]
    # The seed registered with the tracker.
    url = site.tracker.announce_url
    assert url
    wait_until(lambda: scrape(site.probe.name, url, site.hashes("alpha")[0]).get("complete"),
               timeout=5, what="the tracker counting the seed", interval=0.2)


@pytest.mark.parametrize("engine", ENGINES)
# Slow enough for the watcher to see the clients connected: an unlimited seed can send
# the whole OS between two of its looks.
@pytest.mark.parametrize("seeder_options", [{"upload_limit_kbps": 2000}])
def test_two_aria2c_clients_download_the_os_from_the_seed_via_the_tracker(site: Site) -> None:
    site.add_os("alpha")
    site.start_tracker()
    site.start_seeder()
    site.seed("alpha")
    clients = [site.lan.add("c1"), site.lan.add("c2")]
    for i, client in enumerate(clients):
        client.add_address(20 + i)
    infohash = site.hashes("alpha")[0]

    url = site.tracker.announce_url
    assert url
    seen: list[tuple[int, int]] = []  # (the seed's peers, the tracker's downloaders)
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.append((site.stats()[infohash].peers,
                         scrape(site.probe.name, url, infohash).get("incomplete", 0)))
            time.sleep(0.3)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        download(site, "alpha", clients)
    finally:
        stop.set()
        watcher.join()

    assert max(peers for peers, _ in seen) >= 1, seen
    assert max(downloaders for _, downloaders in seen) >= 1, seen
    stats = site.stats()[infohash]
    assert stats.uploaded_bytes >= PAYLOAD_BYTES // 2, stats
    assert stats.status == "seeding"
    assert scrape(site.probe.name, url, infohash).get("complete", 0) >= 1  # the seed


def seconds_to_first_byte(site: Site, name: str, client: Netns, *, expect_peers: bool) -> float:
    """Start a download on `client` (telling the seeder a client joins, as the boot
    server does when it serves a torrent, if `expect_peers`); return the seconds until
    the seed has sent it data, and stop the download."""
    infohash = site.entries[name].torrent.infohash
    before = site.stats()[infohash].uploaded_bytes
    out, log = site.tmp / "dl" / client.name, site.tmp / f"aria2c-{client.name}.log"
    begin = time.monotonic()
    proc = aria2c(client, site.client_torrent(name), out, log)
    if expect_peers:
        site.loop.loop.call_soon_threadsafe(site.seeder.expect_peers)
    try:
        wait_until(lambda: site.stats()[infohash].uploaded_bytes > before, timeout=20,
                   what=f"the seed sending data to {client.name}", interval=0.1)
        return time.monotonic() - begin
    finally:
        proc.kill()
        proc.wait(10)


def test_a_joining_client_is_unchoked_at_once_not_at_the_seeds_next_10_s_rechoke(
        site: Site) -> None:
    site.add_os("alpha")
    site.start_tracker()
    site.start_seeder()
    # Starting alpha rechokes, and transmission's next rechoke is 10 s away from here.
    site.seed("alpha")
    late, early = site.lan.add("c1"), site.lan.add("c2")
    late.add_address(20)
    early.add_address(21)

    # Without the seeder's help the client waits for that rechoke, though it asked for
    # data after about 4 s (tracker, connection, handshake, bitfield); with it, the
    # client is served as soon as it asks. Compared, not timed: the next rechoke comes
    # ~10 s after the first, so a client that waited for it would not be ahead by more
    # than a second or two.
    unhelped = seconds_to_first_byte(site, "alpha", late, expect_peers=False)
    helped = seconds_to_first_byte(site, "alpha", early, expect_peers=True)
    assert helped < unhelped - 2.5, (helped, unhelped)

    # The rechoke torrent that did it is the seeder's own: not shown, not in the library.
    assert set(site.stats()) == set(site.hashes())
    assert sorted(p.name for p in site.entries["alpha"].path.iterdir()) == [
        "config.yaml", "payload.bin"]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_machine_that_downloaded_the_os_before_is_sent_it_again_when_it_comes_back(
        site: Site) -> None:
    # A lab reboots while the session runs: every machine comes back at the address it
    # had, with nothing on it. transmission remembers those addresses as complete peers
    # and, left alone, never sends to them again: the whole lab waits at 0 %.
    site.add_os("alpha")
    site.start_tracker()
    site.start_seeder()
    site.seed("alpha")
    machine = site.lan.add("c1")
    machine.add_address(20)
    download(site, "alpha", [machine], expect_peers=True)
    shutil.rmtree(site.tmp / "dl")

    download(site, "alpha", [machine], timeout=60, expect_peers=True)
    assert site.stats()[site.hashes("alpha")[0]].status == "seeding"


@pytest.mark.parametrize("tracker_kind", ["builtin", "opentracker"])
def test_the_tracker_refuses_a_torrent_off_the_whitelist_until_set_infohashes_and_sighup(
        site: Site) -> None:
    site.add_os("alpha")
    site.start_tracker()
    url = site.tracker.announce_url
    assert url
    # A 0x20 byte: form-encoded as "+", which opentracker does not read as a space.
    stranger = secrets.token_hex(9) + "20" + secrets.token_hex(10)

    assert b"failure reason" not in announce(site.probe.name, url, site.hashes("alpha")[0])
    refused = announce(site.probe.name, url, stranger)
    assert b"not authorized" in refused.get(b"failure reason", b""), refused

    assert site.tracker.set_infohashes([*site.hashes(), stranger]) is True
    assert site.tracker.set_infohashes([stranger.upper(), *site.hashes()]) is False
    # Still refused: the running tracker has not been told.
    assert b"failure reason" in announce(site.probe.name, url, stranger)
    site.procs[site.tracker.child_name].send_signal(site.tracker.reload_signal)
    # What the session awaits before it adds the torrent to the seed.
    site.loop.run(site.tracker.wait_whitelisted([stranger], 3))
    assert b"failure reason" not in announce(site.probe.name, url, stranger)

    # And a hash dropped from the list is refused again after the next SIGHUP.
    assert site.tracker.set_infohashes(site.hashes()) is True
    site.procs[site.tracker.child_name].send_signal(signal.SIGHUP)
    wait_until(lambda: b"failure reason" in announce(site.probe.name, url, stranger),
               timeout=3, what="the tracker refusing the dropped infohash", interval=0.2)


def test_the_tracker_tells_a_client_of_a_250_machine_lab_about_200_peers_at_once(
        site: Site) -> None:
    site.add_os("alpha")
    site.start_tracker()
    url = site.tracker.announce_url
    assert url
    (infohash,) = site.hashes()

    def lab_announces() -> bytes:
        last = b""
        for i in range(250):
            query = urllib.parse.urlencode({
                "info_hash": bytes.fromhex(infohash), "peer_id": b"-LAB000-%012d" % i,
                "port": 10000 + i, "uploaded": 0, "downloaded": 0, "left": 1,
                "compact": 1, "numwant": 50, "event": "started",  # aria2c's numwant
            }, quote_via=urllib.parse.quote)
            with urllib.request.urlopen(f"{url}?{query}", timeout=5) as reply:
                last = reply.read()
        return last

    reply = bdecode(in_netns(site.probe.name, lab_announces))

    assert isinstance(reply, dict)
    peers = reply[b"peers"]
    assert isinstance(peers, bytes) and len(peers) == 200 * 6
    ports = {int.from_bytes(peers[i + 4:i + 6], "big") for i in range(0, len(peers), 6)}
    assert len(ports) == 200 and 10249 not in ports  # never the asking peer itself
    assert reply[b"interval"] == site.cfg.tracker.announce_interval
    assert scrape(site.probe.name, url, infohash)["incomplete"] == 250


@pytest.mark.parametrize("engine", ENGINES)
def test_removed_os_stops_seeding_keeps_its_files_and_seeds_again_when_added_back(
        site: Site) -> None:
    site.add_os("alpha")
    site.add_os("beta")
    site.start_tracker()
    site.start_seeder()
    site.seed("alpha", "beta")
    alpha, beta = site.hashes("alpha", "beta")
    site.loop.run(site.seeder.wait_seeding([alpha, beta], 10))
    seed = site.procs[site.seeder_child]
    beta_file = site.entries["beta"].path / "payload.bin"
    before = sha256(beta_file)

    site.seed("alpha")
    stats = site.stats()
    assert set(stats) == {alpha}
    assert stats[alpha].status == "seeding"
    assert sha256(beta_file) == before
    assert sorted(p.name for p in beta_file.parent.iterdir()) == ["config.yaml", "payload.bin"]

    site.seed("alpha", "beta")
    site.loop.run(site.seeder.wait_seeding([alpha, beta], 10))
    assert seed.poll() is None, "the seed was restarted"
    assert site.procs[site.seeder_child] is seed


@pytest.mark.parametrize("engine", ENGINES)
def test_damaged_library_files_are_refused_left_alone_and_seeded_once_repaired(
        site: Site) -> None:
    site.add_os("alpha")
    site.start_tracker()
    site.start_seeder()
    payload = site.entries["alpha"].path / "payload.bin"
    good = payload.read_bytes()
    damaged = bytearray(good)
    damaged[PAYLOAD_BYTES // 2] ^= 0xFF
    payload.write_bytes(damaged)
    (infohash,) = site.hashes()

    site.seed("alpha")
    stats = site.stats()[infohash]
    assert stats.status == "stopped", stats
    assert stats.percent_done < 1.0
    assert "do not match" in stats.error
    assert "OS alpha" in stats.error and str(payload) in stats.error
    with pytest.raises(BootTorrentError, match="do not match"):
        site.loop.run(site.seeder.wait_seeding([infohash], 5))
    assert payload.read_bytes() == damaged, "the seed wrote into the library"

    payload.write_bytes(good)
    site.seed("alpha")
    site.loop.run(site.seeder.wait_seeding([infohash], 5))
    assert site.stats()[infohash].error == ""


@pytest.mark.parametrize("engine", ENGINES)
def test_the_seed_killed_and_restarted_from_its_childspec_seeds_everything_again(
        site: Site) -> None:
    site.add_os("alpha")
    site.add_os("beta")
    site.start_tracker()
    site.start_seeder()
    site.seed("alpha", "beta")
    hashes = site.hashes()
    site.loop.run(site.seeder.wait_seeding(hashes, 10))

    site.kill9(site.seeder_child)
    site.spawn(site.specs[site.seeder_child])  # ready + started, as the supervisor does

    site.loop.run(site.seeder.wait_seeding(hashes, 20))
    client = site.lan.add("c1")
    client.add_address(20)
    download(site, "beta", [client])


@pytest.mark.parametrize("engine", ENGINES)
def test_tracker_restarted_learns_of_the_seed_at_once_through_reannounce(site: Site) -> None:
    site.add_os("alpha")
    site.start_tracker()
    site.start_seeder()
    site.seed("alpha")
    (infohash,) = site.hashes()
    url = site.tracker.announce_url
    assert url
    wait_until(lambda: scrape(site.probe.name, url, infohash).get("complete"), timeout=5,
               what="the tracker counting the seed", interval=0.2)

    site.kill9(site.tracker.child_name)
    site.spawn(site.specs[site.tracker.child_name])  # its `started` is seeder.reannounce

    # The seed's own next announce would be ~30 min away.
    wait_until(lambda: scrape(site.probe.name, url, infohash).get("complete"), timeout=5,
               what="the restarted tracker counting the seed", interval=0.2)
    client = site.lan.add("c1")
    client.add_address(20)
    download(site, "alpha", [client], timeout=45)


def test_reannounce_twice_in_a_row_keeps_the_seed_registered(site: Site) -> None:
    # Each reannounce swaps the URL spelling; the second swaps it back.
    site.add_os("alpha")
    site.start_tracker()
    site.start_seeder()
    site.seed("alpha")
    (infohash,) = site.hashes()
    url = site.tracker.announce_url
    assert url
    for _ in range(2):
        site.kill9(site.tracker.child_name)
        site.spawn(site.specs[site.tracker.child_name])
        wait_until(lambda: scrape(site.probe.name, url, infohash).get("complete"), timeout=5,
                   what="the restarted tracker counting the seed", interval=0.2)



def test_tracker_choice_names_the_package_and_key_and_none_means_no_child(
        lan: Lan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"boottorrent": {"version": 0, "host_ip": lan.address(1)},
            "dnsmasq": {"dhcp_range": f"{lan.address(100)},{lan.address(150)},1h"}}
    # hefur has no Debian package, and is not installed here.
    with pytest.raises(InvalidArgument, match=r"tracker\.kind.*hefurd is not installed"):
        resolve_kind(parse_config({**base, "tracker": {"kind": "hefur"}}))
    with pytest.raises(InvalidArgument, match=r"hefur\.enable.*github\.com/abique/hefur"):
        resolve_kind(parse_config({**base, "hefur": {"enable": True}}))
    assert resolve_kind(parse_config(base)) == "builtin"  # auto: the daemon's own

    monkeypatch.setattr(tracker_module, "_binary", lambda name: None)
    with pytest.raises(InvalidArgument, match=r"apt install opentracker"):
        resolve_kind(parse_config({**base, "tracker": {"kind": "opentracker"}}))

    cfg = parse_config({**base, "tracker": {"kind": "none"},
                        "aria2": {"bt_enable_lpd": True}})
    none = Tracker(cfg, tmp_path / "none")
    assert none.announce_url is None
    assert none.prepare(["0" * 40]) is None
    assert none.set_infohashes(["0" * 40]) is False

    # hefur's command line, from its documentation (it cannot run here).
    monkeypatch.setattr(tracker_module, "_binary", lambda name: f"/usr/bin/{name}")
    cfg = parse_config({**base, "tracker": {"kind": "hefur"}})
    hefur = Tracker(cfg, tmp_path / "hefur", torrents_dir=tmp_path / "torrents")
    spec = hefur.prepare(["0" * 40])
    assert spec is not None and spec.name == "hefur"
    args = dict(zip(spec.argv[1::2], spec.argv[2::2], strict=False))
    assert args["-bind-addr"] == lan.address(1)
    assert args["-http-port"] == str(cfg.tracker_port)
    assert args["-torrent-dir"] == str(tmp_path / "torrents")
    assert hefur.announce_url == f"http://{lan.address(1)}:{cfg.tracker_port}/announce"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_seed_runs_as_the_given_user_and_seeds_what_that_user_can_read(
        lan: Lan, engine: str) -> None:
    srv = lan.add("srv")
    srv.add_address(1)
    base = world_readable_tmpdir("bt-seeder-user-")
    loop = NetnsLoop(srv.name)
    try:
        src = base / "src"
        src.mkdir()
        (src / "config.yaml").write_text("method: bin\nbin: payload.bin\n")
        (src / "payload.bin").write_bytes(os.urandom(1 << 20))
        library = Library(base / "state")
        library.load()
        entry = loop.run(library.add("alpha", src))
        (base / "run").mkdir(mode=0o755)
        seeder = make_seeder(make_config(lan, engine), base / "run" / "seeder",
                             library.oss_dir, announce_url=None, user="nobody")
        spec = seeder.prepare()
        with open(base / "seed.log", "wb") as log:
            proc = srv.popen(*spec.argv, stdout=log, stderr=subprocess.STDOUT)
        assert spec.ready and spec.started
        loop.run(spec.ready())
        loop.run(spec.started())
        with open(f"/proc/{proc.pid}/status") as status:
            uid = next(line.split()[1] for line in status if line.startswith("Uid:"))
        assert int(uid) == pwd.getpwnam("nobody").pw_uid

        entry.path.chmod(0o700)  # root's alone
        loop.run(seeder.set_torrents([entry]))
        (stats,) = loop.run(seeder.stats())
        assert stats.status == "stopped"
        assert "nobody cannot read them" in stats.error

        entry.path.chmod(0o755)
        loop.run(seeder.set_torrents([entry]))
        loop.run(seeder.wait_seeding([entry.torrent.infohash], 5))
        seeder.close()
    finally:
        print((base / "seed.log").read_text(errors="replace")[-3000:])
        loop.close()
        shutil.rmtree(base, ignore_errors=True)
