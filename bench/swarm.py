"""The swarm benchmark: how long N machines take to get one OS, against the physical limit.

Run as root from the repository root (after `make deps`):

    .venv/bin/python bench/swarm.py --json out.json --plot out.png

One Linux bridge stands for the lab's switch. A server namespace runs the real daemon
(boottorrentd on a private D-Bus: `boottorrentctl add-os`, `boottorrentctl start`, so
transmission seeds and the daemon's tracker runs), and N client namespaces are the lab
machines. Every link is shaped with `tc tbf` on the egress of both ends of its veth
pair: the namespace side limits the machine's upload, the bridge side its download.

Modes, run back to back in one invocation (and in this order in every repeat):

- `boottorrent`: each client runs exactly the download step of the phase-1 agent
  (boottorrentd/phase1/agent/init): it fetches the OS's boot spec /os/<name>/boot.env from the
  daemon and runs boottorrentd/phase1/agent/bt-download with the command line written in the
  agent, taken from the agent's own text, so the options are the daemon's.
- `unicast`: every client fetches the same payload file over HTTP at the same time, the
  LTSP / plain PXE way. The daemon's boot server has no route for payload files, so a
  bench-local aiohttp server (bench/fileserver.py) serves the library folder on the
  daemon's address.
- `multicast` (when Debian's udpcast is installed): udp-sender to N udp-receivers, the
  FOG / Clonezilla way, paced just under the server's uplink.

Every boottorrent wave after the first meets a freshly restarted boot session (a new
seed process), unless --same-session: transmission 3.00 remembers an address that was a
complete peer and chokes a machine that comes back at that address until the seeder
notices and adds the torrent again (a few seconds and a check of the files), so later
waves on one session measure that recovery rather than the distribution.

A client's completion time counts from the moment all clients are started to the moment
its copy is complete (for bt-download: aria2c's log line for its last piece passing the
hash check, at millisecond resolution). T_all is the last client's. The limit is the
Kumar-Ross bound T* = max(F/u_s, F/d_min, N*F/(u_s + sum u_i)); unicast cannot beat
N*F/u_s.

Everything it creates (namespaces, bridge, daemon, bus, tmpfs) is removed on exit,
Ctrl-C included. The machine's other work makes the figures noisy: use --repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # boottorrentlab.devkit.lan (the LAN helper the integration tests use) is not installed: it is
    # imported from the checkout this file lives in.
    sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from boottorrentlab.devkit.harness import DaemonProcess, PrivateBus, venv_bin  # noqa: E402
from boottorrentlab.devkit.lan import Lan, Netns  # noqa: E402
from boottorrentlab.lab import sh as run  # noqa: E402

AGENT_DIR = ROOT / "boottorrentd" / "phase1" / "agent"
FILESERVER = Path(__file__).resolve().parent / "fileserver.py"
PATCHES = Path(__file__).resolve().parent / "patches"
LTSEED = Path(__file__).resolve().parent / "ltseed.py"
SEED_PORT = 51414  # an experiment's seed (--seed); transmission has seeder.peer_port
OS_NAME = "bench"
PAYLOAD = "root.img"
HTTP_PORT = 8080
FILES_PORT = 8081
MCAST_PORTBASE = 9000
SERVER_HOST = 1
FIRST_CLIENT_HOST = 10
MODES = ("boottorrent", "unicast", "multicast")
# Queue of each shaped link: what a switch port buffers, in milliseconds at line rate.
QUEUE_MS = 50
POLL_S = 0.1
SAMPLE_S = 0.25


# --- units -----------------------------------------------------------------------------------

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)(bit|bps)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'64M', '64MiB', '4096k', '1G' -> bytes (binary units: M is MiB)."""
    m = _SIZE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size; write e.g. 64M or 512K")
    scale = 1024 ** " kmgt".index((m.group(2) or " ").lower())
    value = int(float(m.group(1)) * scale)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the size must be positive")
    return value


def parse_rate(text: str) -> int:
    """tc's spelling: '40mbit', '1gbit', '500kbit' -> bits per second (decimal units)."""
    m = _RATE.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a rate; write e.g. 40mbit or 1gbit")
    scale = 1000 ** " kmg".index((m.group(2) or " ").lower())
    value = int(float(m.group(1)) * scale)
    if m.group(3) and m.group(3).lower() == "bps":
        value *= 8
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: the rate must be positive")
    return value


def human_rate(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.1f} {unit}"
    return f"{bps:.0f} bit/s"


def human_size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


# --- the bounds ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Links:
    """Rates in bits per second."""

    server_up: int
    server_down: int
    client_up: int
    client_down: int


def kumar_ross_bound(size_bytes: int, clients: int, links: Links) -> float:
    """T* = max(F/u_s, F/d_min, N*F/(u_s + sum u_i)) in seconds (every client alike)."""
    bits = size_bytes * 8
    return max(bits / links.server_up, bits / links.client_down,
               clients * bits / (links.server_up + clients * links.client_up))


def unicast_bound(size_bytes: int, clients: int, links: Links) -> float:
    """The least time for the server alone to send every client its copy."""
    bits = size_bytes * 8
    return max(clients * bits / links.server_up, bits / links.client_down)


# --- processes -------------------------------------------------------------------------------


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every client program: no proxy (aria2c and curl would use one)."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
                                "ftp_proxy", "notify_socket")}
    env["LC_ALL"] = "C"
    return env | (extra or {})


def kill_group(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM the process group `proc` leads (started with start_new_session), then KILL."""
    if proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- the lab network -------------------------------------------------------------------------


def iface_counters(ns: Netns) -> tuple[int, int]:
    """(rx_bytes, tx_bytes) of the namespace's eth0, read in the namespace."""
    out = run("ip", "-n", ns.name, "-s", "-j", "link", "show", "dev", ns.ifname).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["rx"]["bytes"], stats["tx"]["bytes"]


def peer_name(ns: Netns) -> str:
    """The bridge-side end of the namespace's veth pair, by the link index eth0 names."""
    link = json.loads(run("ip", "-n", ns.name, "-j", "link", "show", "dev", ns.ifname).stdout)[0]
    index = link["link_index"]
    for entry in json.loads(run("ip", "-j", "link", "show").stdout):
        if entry["ifindex"] == index:
            return entry["ifname"]
    raise RuntimeError(f"no interface with index {index} for {ns.name}'s {ns.ifname}")


def tbf(rate: int) -> list[str]:
    """tc arguments of a token bucket at `rate` bit/s with QUEUE_MS of queue.

    The bucket holds at least 64 KiB: veth hands tbf GSO packets of up to 64 KiB, and a
    smaller bucket would make tbf cut every one of them into segments.
    """
    burst = max(64 * 1024 + 1514, rate // 8 // 250)
    return ["tbf", "rate", f"{rate}bit", "burst", str(burst), "latency", f"{QUEUE_MS}ms"]


@dataclass
class Machine:
    ns: Netns
    address: str
    peer: str  # the bridge-side veth end (its egress is this machine's download)
    up: int
    down: int

    def shape(self) -> None:
        self.ns.run("tc", "qdisc", "replace", "dev", self.ns.ifname, "root", *tbf(self.up))
        run("tc", "qdisc", "replace", "dev", self.peer, "root", *tbf(self.down))

    def sent_bytes_bridge_side(self) -> int:
        """What this machine has sent, as its link partner counts it (a file read, cheap)."""
        return int(Path(f"/sys/class/net/{self.peer}/statistics/rx_bytes").read_text())

    def received_bytes_bridge_side(self) -> int:
        return int(Path(f"/sys/class/net/{self.peer}/statistics/tx_bytes").read_text())


class Lab:
    """The bridge, the server namespace and the client namespaces, every link shaped."""

    def __init__(self, links: Links) -> None:
        self.links = links
        self.lan = Lan()
        self.server: Machine | None = None
        self.clients: list[Machine] = []

    def _machine(self, role: str, host: int, up: int, down: int, address: bool) -> Machine:
        ns = self.lan.add(role)
        addr = self.lan.address(host)
        if address:
            # With its broadcast address: udpcast's receivers send their hello there.
            ns.run("ip", "addr", "add", f"{addr}/{self.lan.subnet.prefixlen}", "brd", "+",
                   "dev", ns.ifname)
        machine = Machine(ns, addr, peer_name(ns), up, down)
        machine.shape()
        return machine

    def build(self, clients: int) -> None:
        # The daemon puts host_ip on the server's eth0 itself when the session starts.
        self.server = self._machine("srv", SERVER_HOST, self.links.server_up,
                                    self.links.server_down, address=False)
        self.add_clients(clients)

    def add_clients(self, count: int) -> None:
        while len(self.clients) < count:
            i = len(self.clients)
            self.clients.append(self._machine(f"c{i}", FIRST_CLIENT_HOST + i,
                                              self.links.client_up, self.links.client_down,
                                              address=True))

    def close(self) -> None:
        self.lan.close()


# --- the daemon ------------------------------------------------------------------------------


def write_payload(path: Path, size: int, seed: int = 6) -> None:
    """`size` bytes that do not compress (an OS image is mostly compressed data)."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = min(left, 4 << 20)
            f.write(rng.randbytes(chunk))
            left -= chunk


def deep_set(doc: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        doc = doc.setdefault(key, {})
    doc[keys[-1]] = value


class Session:
    """The real daemon on a private system bus in the server namespace, with one OS."""

    def __init__(self, lab: Lab, work: Path, size: int, overrides: Sequence[str],
                 patches: dict[str, str] | None = None) -> None:
        self.lab = lab
        # Experiments only: variables for bench/patches/sitecustomize.py.
        self.patches = patches or {}
        self.work = work
        self.size = size
        self.overrides = list(overrides)
        self.bus = PrivateBus()
        self.daemon: DaemonProcess | None = None
        self.config: dict[str, Any] = {}

    @property
    def host(self) -> str:
        assert self.lab.server is not None
        return self.lab.server.address

    @property
    def server(self) -> str:
        return f"{self.host}:{HTTP_PORT}"

    @property
    def env(self) -> dict[str, str]:
        return clean_env({"DBUS_SYSTEM_BUS_ADDRESS": self.bus.address})

    @property
    def library(self) -> Path:
        return self.work / "state" / "oss"

    def ctl(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([venv_bin("boottorrentctl"), *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"boottorrentctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def status(self) -> dict[str, Any]:
        return json.loads(self.ctl("status", "--json"))

    def seed_uploaded(self) -> int:
        """What transmission says it has uploaded of the OS (payload bytes)."""
        for seed in self.status().get("seeding", []):
            if seed.get("name") == OS_NAME:
                return int(seed.get("uploaded_bytes", 0))
        return 0

    def start(self) -> None:
        lan = self.lab.lan
        config: dict[str, Any] = {
            "boottorrent": {"version": 0, "host_ip": self.host},
            "dnsmasq": {"interface": "eth0", "user": "nobody",
                        # No client asks for DHCP (they have fixed addresses), but dnsmasq
                        # needs a range inside the subnet.
                        "dhcp_range": f"{lan.address(200)},{lan.address(250)},1h"},
            "http": {"port": HTTP_PORT},
        }
        for item in self.overrides:
            key, _, value = item.partition("=")
            deep_set(config, key.strip(), yaml.safe_load(value))
        self.config = config
        # The daemon's children run as nobody: they must read the state folder.
        self.work.chmod(0o755)
        conf = self.work / "boottorrent.yaml"
        conf.write_text(yaml.safe_dump(config, sort_keys=False))
        self.bus.start()
        self.daemon = DaemonProcess(conf, self.work / "state", self.work / "run")
        assert self.lab.server is not None
        env = self.env
        if self.patches:
            say(f"experiment: the daemon runs with {self.patches} (bench/patches)")
            env |= {"PYTHONPATH": str(PATCHES), **self.patches}
        self.daemon.start(env, ["ip", "netns", "exec", self.lab.server.ns.name], timeout=60)

        src = self.work / "src" / OS_NAME
        src.mkdir(parents=True)
        src.chmod(0o755)
        say(f"writing a {human_size(self.size)} OS image and adding it to the library")
        write_payload(src / PAYLOAD, self.size)
        (src / "config.yaml").write_text(
            f"dispname: Benchmark OS\nmethod: live\nsquashfs: {PAYLOAD}\n")
        self.ctl("add-os", OS_NAME, str(src))
        shutil.rmtree(src.parent)
        say("starting the boot session (boottorrentctl start)")
        self.start_session()

    def start_session(self) -> None:
        """`boottorrentctl start`; return once the seed seeds the OS."""
        self.ctl("start")
        deadline = time.monotonic() + 120
        while "BENCH_NO_TRANSMISSION_SEED" not in self.patches:
            seeding = [s for s in self.status().get("seeding", []) if s.get("name") == OS_NAME]
            if seeding and seeding[0].get("status") == "seeding":
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the daemon does not seed {OS_NAME}: {seeding}")
            time.sleep(0.2)

    def restart_session(self) -> None:
        """A fresh session: a new seed process that has never seen these clients."""
        self.ctl("stop")
        self.start_session()

    def boot_env(self) -> str:
        assert self.lab.server is not None
        return self.lab.clients[0].ns.run(
            "curl", "-sSf", "--noproxy", "*", f"http://{self.server}/os/{OS_NAME}/boot.env",
            env=clean_env()).stdout

    def stop(self) -> None:
        if self.daemon is not None and self.daemon.process is not None:
            with contextlib.suppress(Exception):
                self.ctl("stop", timeout=60)
            try:
                self.daemon.stop()
            except Exception:
                with contextlib.suppress(Exception):
                    self.daemon.kill()
        self.daemon = None
        self.bus.stop()


# --- the agent's download step ---------------------------------------------------------------

# Variables the agent's command line may use: what this runner defines, and boot.env's.
_RUNNER_VARS = {"RUN", "OS_DIR", "STALL"}


def agent_download_command(init: Path = AGENT_DIR / "init") -> tuple[str, str]:
    """(the bt-download command line of the phase-1 agent, its default STALL), read from
    the agent's own text so that the benchmark runs exactly what a booting machine runs."""
    lines = init.read_text().splitlines()
    stall = next((m.group(1) for line in lines if (m := re.fullmatch(r"STALL=(\d+)", line))),
                 None)
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("bt-download "):
            continue
        cmd = [line.strip()]
        while cmd[-1].endswith("\\"):
            i += 1
            cmd.append(lines[i].strip())
        text = "\n    ".join(cmd)
        if not text.endswith("&"):
            raise RuntimeError(f"{init}: the agent no longer runs bt-download in the background "
                               "as this benchmark expects; update agent_download_command()")
        text = text[:-1].rstrip()
        unknown = {v for v in re.findall(r"\$\{?([A-Za-z_]\w*)", text)
                   if v not in _RUNNER_VARS and not v.startswith("BT_")}
        if unknown or stall is None:
            raise RuntimeError(f"{init}: the agent's bt-download line uses {sorted(unknown)} "
                               "(or STALL has no default); update the benchmark's runner")
        return text, stall
    raise RuntimeError(f"{init} has no bt-download command line")


def client_runner(work: Path) -> Path:
    """The shell script each client runs in boottorrent mode (written into `work`)."""
    command, stall = agent_download_command()
    script = work / "bt-client.sh"
    script.write_text(f"""#!/bin/sh
# One benchmark client: the phase-1 agent's steps from the boot spec to the OS's files
# (boottorrentd/phase1/agent/init), with this host's curl instead of busybox wget.
# usage: bt-client.sh SERVER OS RUN OS_DIR [EXTRA_ARIA2C_OPTIONS [TORRENT_URL]]
set -f
export PATH={shlex.quote(str(AGENT_DIR))}:$PATH
SERVER=$1 OS=$2 RUN=$3 OS_DIR=$4 EXTRA=$5 TORRENT=$6
STALL={stall}
mkdir -p "$RUN" "$OS_DIR"
curl -sSf -m 30 --noproxy '*' -o "$RUN/boot.env" "http://$SERVER/os/$OS/boot.env" || exit 1
. "$RUN/boot.env"
# Experiments only (--aria2-extra): options after the daemon's, so that they win.
[ -n "$EXTRA" ] && BT_ARIA2_OPTS="$BT_ARIA2_OPTS $EXTRA"
# Experiments only (--web-seed): another torrent of the same OS (same infohash).
[ -n "$TORRENT" ] && BT_TORRENT_URL=$TORRENT
# The agent's own command line, from boottorrentd/phase1/agent/init:
{command}
""")
    script.chmod(0o755)
    return script


_ARIA2_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) "
_ARIA2_PIECE_DONE = re.compile(_ARIA2_STAMP + r"\[INFO\].* - we got new piece\.")


def aria2_log_time(log: Path, line_re: re.Pattern[str], *, last: bool = False) -> float | None:
    """When aria2c logged the first (or `last`) line matching `line_re`, in seconds since
    the epoch."""
    stamp = None
    try:
        with open(log, errors="replace") as f:
            for line in f:
                m = line_re.match(line)
                if m:
                    stamp = m.group(1)
                    if not last:
                        break
    except FileNotFoundError:
        pass
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp() if stamp else None


def aria2_complete_time(log: Path) -> float | None:
    """When the client's last piece arrived and passed its hash check. (aria2c's own
    "Download complete" line comes only when it stops seeding and exits.)"""
    return aria2_log_time(log, _ARIA2_PIECE_DONE, last=True)


def aria2_first_piece_time(log: Path, host: str) -> float | None:
    """When the first block of piece data from `host` (the seed) reached this client."""
    return aria2_log_time(log, re.compile(
        _ARIA2_STAMP + rf"\[INFO\].* - From: {re.escape(host)}:\d+ piece index="))


def read_status(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return dict(re.findall(r"^(BT_\w+)='([^']*)'$", text, re.MULTILINE))


# --- experiment: a web seed (BEP 19) --------------------------------------------------------


def _bskip(data: bytes, i: int) -> int:
    """The index just past the bencoded value that starts at data[i]."""
    c = data[i:i + 1]
    if c == b"i":
        return data.index(b"e", i) + 1
    if c in (b"l", b"d"):
        i += 1
        while data[i:i + 1] != b"e":
            i = _bskip(data, i)
        return i + 1
    colon = data.index(b":", i)
    return colon + 1 + int(data[i:colon])


def _bstring(value: bytes) -> bytes:
    return str(len(value)).encode() + b":" + value


def with_url_list(torrent: bytes, url: str) -> bytes:
    """`torrent` with a BEP 19 url-list; every other value is kept byte for byte, so the
    info dict (and the infohash) cannot change."""
    if torrent[:1] != b"d":
        raise ValueError("not a torrent: the metainfo is not a dictionary")
    items: dict[bytes, bytes] = {}
    i = 1
    while torrent[i:i + 1] != b"e":
        colon = torrent.index(b":", i)
        key_end = colon + 1 + int(torrent[i:colon])
        key = torrent[colon + 1:key_end]
        end = _bskip(torrent, key_end)
        items[key] = torrent[key_end:end]
        i = end
    items[b"url-list"] = b"l" + _bstring(url.encode()) + b"e"
    return b"d" + b"".join(_bstring(k) + items[k] for k in sorted(items)) + b"e"


# --- one run ---------------------------------------------------------------------------------


@dataclass
class RunResult:
    mode: str
    clients: int
    repeat: int
    completion_s: list[float | None]
    t_all_s: float | None
    t_first_s: float | None
    t_median_s: float | None
    server_upload_bytes: int
    clients_received_bytes: int
    p2p_share: float
    seed_first_data_s: float | None
    seed_payload_bytes: int | None = None
    # Share of the host's CPU time that was busy during the run: near 1, the machine
    # (every client, the seed and the shaped network on its cores) limits the figures.
    host_cpu_busy: float | None = None
    failures: list[str] = field(default_factory=list)
    # (seconds since the start, bytes the server sent, bytes the clients received)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)


def cpu_times() -> tuple[int, int]:
    """(busy, total) clock ticks of all the host's cores since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


class Sampler(threading.Thread):
    """Samples the server's upload and the clients' total download every SAMPLE_S."""

    def __init__(self, server: Machine, clients: list[Machine], t0: float) -> None:
        super().__init__(daemon=True)
        self.server, self.clients, self.t0 = server, clients, t0
        self.base = (server.sent_bytes_bridge_side(),
                     sum(c.received_bytes_bridge_side() for c in clients))
        self.samples: list[tuple[float, int, int]] = []
        self.stopped = threading.Event()
        self.cpu_base = cpu_times()
        self.cpu_busy: float | None = None

    def sample(self) -> None:
        up = self.server.sent_bytes_bridge_side() - self.base[0]
        down = sum(c.received_bytes_bridge_side() for c in self.clients) - self.base[1]
        self.samples.append((round(time.time() - self.t0, 3), up, down))

    def run(self) -> None:
        while not self.stopped.wait(SAMPLE_S):
            try:
                self.sample()
            except FileNotFoundError:
                return  # interrupted: the lab's links are being removed

    def stop(self) -> list[tuple[float, int, int]]:
        self.stopped.set()
        self.join()
        self.sample()
        busy, total = (now - then for now, then in zip(cpu_times(), self.cpu_base, strict=True))
        self.cpu_busy = round(busy / total, 3) if total else None
        return self.samples

    def timeline(self, points: int = 120) -> list[tuple[float, int, int]]:
        """The samples thinned to about `points` (the JSON stays small), the last kept."""
        step = max(1, -(-len(self.samples) // points))
        thinned = self.samples[::step]
        if thinned[-1] != self.samples[-1]:
            thinned.append(self.samples[-1])
        return thinned

    def first_data(self, threshold: int) -> float | None:
        return next((t for t, up, _ in self.samples if up >= threshold), None)


class Runner:
    def __init__(self, args: argparse.Namespace, lab: Lab, session: Session, work: Path) -> None:
        self.args = args
        self.lab = lab
        self.session = session
        self.work = work
        self.data = work / "data"
        self.size = args.size
        self.script = client_runner(work)
        self.served = work / "served"
        self.served.mkdir()
        self.fileserver: subprocess.Popen | None = None
        self.torrent_url = ""
        self.seed: subprocess.Popen | None = None
        self.boot_waves = 0
        self._start_fileserver()
        if args.seed != "transmission":
            self._start_other_seed(args.seed)
        if args.web_seed:
            self.torrent_url = self._web_seed_torrent()

    def _start_other_seed(self, kind: str) -> None:
        """Experiment: another program seeds the library's copy in the server namespace,
        announced to the daemon's tracker, while the daemon's transmission stays idle."""
        assert self.lab.server is not None
        torrent = self.served / "seed.torrent"
        torrent.write_bytes(subprocess.run(
            ["ip", "netns", "exec", self.lab.clients[0].ns.name, "curl", "-sSf", "--noproxy",
             "*", f"http://{self.session.server}/torrents/{OS_NAME}.torrent"],
            capture_output=True, check=True, env=clean_env()).stdout)
        logs = self.work / "logs"
        logs.mkdir(exist_ok=True)
        if kind == "aria2c":
            cmd = ["aria2c", "--no-conf=true", f"--dir={self.session.library}",
                   "--seed-ratio=0.0", "--check-integrity=true", f"--listen-port={SEED_PORT}",
                   "--enable-dht=false", "--enable-dht6=false", "--disable-ipv6=true",
                   "--bt-enable-lpd=false", "--bt-tracker-interval=5",
                   "--bt-save-metadata=false", "--file-allocation=none",
                   "--summary-interval=0", "--console-log-level=warn", "--bt-max-peers=0",
                   f"--log={logs / 'seed-aria2c.log'}", "--log-level=notice", str(torrent)]
        else:
            # Debian's python3-libtorrent is a system package: the system's Python.
            cmd = ["/usr/bin/python3", str(LTSEED), self.session.host, str(SEED_PORT),
                   str(torrent), str(self.session.library)]
            if kind == "libtorrent-super":
                cmd.append("--super")
        self.seed = self._launch(self.lab.server.ns, cmd, logs / f"seed-{kind}.out")
        say(f"experiment: {kind} seeds the OS on port {SEED_PORT}; transmission stays idle")
        time.sleep(3)
        if self.seed.poll() is not None:
            raise RuntimeError(f"the {kind} seed exited: "
                               + (logs / f"seed-{kind}.out").read_text())

    def _web_seed_torrent(self) -> str:
        """Experiment: the daemon's torrent plus a url-list pointing at the bench file
        server's copy of the library; returns the URL the clients fetch it from."""
        base = f"http://{self.session.host}:{FILES_PORT}"
        data = subprocess.run(
            ["ip", "netns", "exec", self.lab.clients[0].ns.name, "curl", "-sSf", "--noproxy",
             "*", f"http://{self.session.server}/torrents/{OS_NAME}.torrent"],
            capture_output=True, check=True, env=clean_env()).stdout
        (self.served / f"{OS_NAME}.torrent").write_bytes(with_url_list(data, f"{base}/files/"))
        say(f"web seed experiment: clients use {base}/bench/{OS_NAME}.torrent "
            f"(url-list {base}/files/)")
        return f"{base}/bench/{OS_NAME}.torrent"

    # -- shared ------------------------------------------------------------------------------

    def _launch(self, ns: Netns, cmd: Sequence[str], log: Path) -> subprocess.Popen:
        with open(log, "wb") as out:
            return subprocess.Popen(["ip", "netns", "exec", ns.name, *cmd], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=clean_env(), start_new_session=True)

    def _counters(self, clients: list[Machine]) -> tuple[int, int]:
        assert self.lab.server is not None
        return (iface_counters(self.lab.server.ns)[1],
                sum(iface_counters(c.ns)[0] for c in clients))

    def _wait(self, mode: str, rep: int, clients: list[Machine], timeout: float,
              done: Callable[[int], float | None], failed: Callable[[int], str | None],
              sampler: Sampler) -> tuple[list[float | None], list[str]]:
        n = len(clients)
        finish: list[float | None] = [None] * n
        failed_why: dict[int, str] = {}
        t0 = sampler.t0
        deadline = time.monotonic() + timeout
        last_print = 0.0
        while True:
            for i in range(n):
                if finish[i] is None and i not in failed_why:
                    finish[i] = done(i)
                    if finish[i] is None and (why := failed(i)):
                        failed_why[i] = why
            done_count = sum(f is not None for f in finish)
            now = time.monotonic()
            if now - last_print >= 5 or done_count + len(failed_why) == n:
                last_print = now
                s = sampler.samples[-5:]
                rate = ((s[-1][1] - s[0][1]) * 8 / (s[-1][0] - s[0][0])
                        if len(s) > 1 and s[-1][0] > s[0][0] else 0.0)
                say(f"  {mode} N={n} #{rep + 1}: {done_count}/{n} done, "
                    f"{time.time() - t0:.1f} s, server up {human_rate(rate)}"
                    + (f", {len(failed_why)} failed" if failed_why else ""))
            if done_count + len(failed_why) == n:
                break
            if now > deadline:
                for i in range(n):
                    if finish[i] is None and i not in failed_why:
                        failed_why[i] = f"not done after {timeout:.0f} s"
                break
            time.sleep(POLL_S)
        failures = [f"c{i}: {why}" for i, why in sorted(failed_why.items())]
        return [None if f is None else round(f - t0, 3) for f in finish], failures

    def _result(self, mode: str, rep: int, clients: list[Machine], before: tuple[int, int],
                finish: list[float | None], failures: list[str], sampler: Sampler,
                seed_payload: int | None = None,
                first_data_at: float | None = None) -> RunResult:
        after = self._counters(clients)
        sampler.stop()
        up, down = after[0] - before[0], after[1] - before[1]
        done = sorted(f for f in finish if f is not None)
        complete = len(done) == len(clients)
        return RunResult(
            mode=mode, clients=len(clients), repeat=rep, completion_s=finish,
            t_all_s=done[-1] if complete else None,
            t_first_s=done[0] if done else None,
            t_median_s=statistics.median(done) if done else None,
            server_upload_bytes=up, clients_received_bytes=down,
            # Peer-to-peer exists in BitTorrent only; a multicast copy reaches N clients
            # while the server sends it once, which is not peer traffic.
            p2p_share=(round(max(0.0, (down - up) / down), 4) if down else 0.0)
            if mode == "boottorrent" else 0.0,
            # When the seed's first piece data reached a client (when a mode does not say,
            # when the server's interface had sent 256 KiB).
            seed_first_data_s=(round(first_data_at - sampler.t0, 3) if first_data_at
                               else sampler.first_data(256 * 1024)),
            seed_payload_bytes=seed_payload, host_cpu_busy=sampler.cpu_busy,
            failures=failures,
            timeline=sampler.timeline(),
        )

    def _fresh_dirs(self, mode: str, n: int) -> list[Path]:
        shutil.rmtree(self.data, ignore_errors=True)
        dirs = [self.data / f"c{i}" for i in range(n)]
        for d in dirs:
            d.mkdir(parents=True)
        (self.work / "logs" / mode).mkdir(parents=True, exist_ok=True)
        return dirs

    def _verify(self, files: list[Path]) -> list[str]:
        """Every client's copy is the library's file, byte for byte."""
        want = hashlib.sha256((self.session.library / OS_NAME / PAYLOAD).read_bytes()).digest()
        bad = []
        for i, f in enumerate(files):
            try:
                got = hashlib.sha256(f.read_bytes()).digest()
            except FileNotFoundError:
                got = b""
            if got != want:
                bad.append(f"c{i}: its copy differs from the library's {PAYLOAD}")
        return bad

    # -- boottorrent -------------------------------------------------------------------------

    def boottorrent(self, n: int, rep: int) -> RunResult:
        if self.boot_waves and not self.args.same_session:
            # Every wave meets a seed that has not seen these addresses before (see
            # --same-session for why that matters with transmission 3.00).
            say("  restarting the boot session (boottorrentctl stop; boottorrentctl start)")
            self.session.restart_session()
            time.sleep(self.args.settle)
        self.boot_waves += 1
        clients = self.lab.clients[:n]
        dirs = self._fresh_dirs("boottorrent", n)
        logs = self.work / "logs" / "boottorrent"
        seed_before = self.session.seed_uploaded()
        before = self._counters(clients)
        assert self.lab.server is not None
        t0 = time.time()
        sampler = Sampler(self.lab.server, clients, t0)
        sampler.start()
        procs = [self._launch(c.ns, [str(self.script), self.session.server, OS_NAME,
                                     str(d / "run"), str(d / "os"), self.args.aria2_extra,
                                     self.torrent_url],
                              logs / f"c{i}-r{rep}.log")
                 for i, (c, d) in enumerate(zip(clients, dirs, strict=True))]

        def done(i: int) -> float | None:
            state = read_status(dirs[i] / "run" / "dl" / "status").get("BT_STATE")
            if state not in ("seeding", "verifying", "done"):
                return None
            return aria2_complete_time(dirs[i] / "run" / "dl" / "aria2c.log") or time.time()

        def failed(i: int) -> str | None:
            status = read_status(dirs[i] / "run" / "dl" / "status")
            if status.get("BT_STATE") == "failed":
                return status.get("BT_ERROR") or "bt-download failed"
            if procs[i].poll() is not None:
                return f"exited with status {procs[i].returncode} before completing"
            return None

        timeout = 60 + 10 * kumar_ross_bound(self.size, n, self.lab.links)
        try:
            finish, failures = self._wait("boottorrent", rep, clients, timeout, done, failed,
                                          sampler)
            seed_after = self.session.seed_uploaded()
            first = [t for d in dirs if (t := aria2_first_piece_time(
                d / "run" / "dl" / "aria2c.log", self.session.host)) is not None]
            result = self._result("boottorrent", rep, clients, before, finish, failures,
                                  sampler, seed_after - seed_before,
                                  first_data_at=min(first, default=None))
        finally:
            for p in procs:
                kill_group(p)
            for i, d in enumerate(dirs):
                with contextlib.suppress(OSError):
                    shutil.copy(d / "run" / "dl" / "aria2c.log", logs / f"c{i}-r{rep}.aria2c.log")
        if self.args.verify and not result.failures:
            result.failures += self._verify([d / "os" / OS_NAME / PAYLOAD for d in dirs])
        return result

    # -- unicast -----------------------------------------------------------------------------

    def _start_fileserver(self) -> None:
        if self.fileserver is not None and self.fileserver.poll() is None:
            return
        assert self.lab.server is not None
        self.fileserver = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.server.ns.name, sys.executable, str(FILESERVER),
             self.session.host, str(FILES_PORT), f"files={self.session.library}",
             f"bench={self.served}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
            start_new_session=True)
        line = self.fileserver.stdout.readline() if self.fileserver.stdout else ""
        if line.strip() != "listening":
            err = self.fileserver.stderr.read() if self.fileserver.stderr else ""
            raise RuntimeError(f"the bench file server did not start: {err.strip()}")

    def stop_fileserver(self) -> None:
        if self.seed is not None:
            kill_group(self.seed)
            self.seed = None
        if self.fileserver is not None:
            kill_group(self.fileserver)
            self.fileserver = None

    def _timed(self, mode: str, rep: int, n: int, command: Callable[[int, Path], list[str]],
               timeout: float, before_launch: Callable[[], subprocess.Popen | None] | None = None,
               ) -> RunResult:
        """Every client runs `command(i, dest)`; each prints the time it finished."""
        clients = self.lab.clients[:n]
        dirs = self._fresh_dirs(mode, n)
        logs = self.work / "logs" / mode
        before = self._counters(clients)
        assert self.lab.server is not None
        t0 = time.time()
        sampler = Sampler(self.lab.server, clients, t0)
        sampler.start()
        extra = before_launch() if before_launch else None
        out = [logs / f"c{i}-r{rep}.log" for i in range(n)]
        procs = [self._launch(c.ns, ["sh", "-c", '"$@" && date +DONE%s.%N', "sh",
                                     *command(i, d / PAYLOAD)], out[i])
                 for i, (c, d) in enumerate(zip(clients, dirs, strict=True))]

        def done(i: int) -> float | None:
            if procs[i].poll() is None:
                return None
            m = re.search(r"DONE(\d+\.\d+)", out[i].read_text(errors="replace"))
            return float(m.group(1)) if m else None

        def failed(i: int) -> str | None:
            if procs[i].poll() is not None and done(i) is None:
                tail = out[i].read_text(errors="replace").strip().splitlines()[-1:]
                return f"exited with status {procs[i].returncode}: {' '.join(tail)}"
            return None

        try:
            finish, failures = self._wait(mode, rep, clients, timeout, done, failed, sampler)
            result = self._result(mode, rep, clients, before, finish, failures, sampler)
        finally:
            for p in procs:
                kill_group(p)
            if extra is not None:
                kill_group(extra)
        if self.args.verify and not result.failures:
            result.failures += self._verify([d / PAYLOAD for d in dirs])
        return result

    def unicast(self, n: int, rep: int) -> RunResult:
        url = f"http://{self.session.host}:{FILES_PORT}/files/{OS_NAME}/{PAYLOAD}"
        timeout = 60 + 3 * unicast_bound(self.size, n, self.lab.links)
        return self._timed("unicast", rep, n,
                           lambda i, dest: ["curl", "-sSf", "--noproxy", "*", "-o", str(dest),
                                            url], timeout)

    # -- multicast ---------------------------------------------------------------------------

    def multicast(self, n: int, rep: int) -> RunResult:
        links = self.lab.links
        assert self.lab.server is not None
        # Paced just under the slowest link: faster, the shaper drops and udpcast
        # retransmits; that would be a badly tuned baseline, not the method's limit.
        rate = int(0.95 * min(links.server_up, links.client_down))
        src = self.session.library / OS_NAME / PAYLOAD
        logs = self.work / "logs" / "multicast"

        def sender() -> subprocess.Popen:
            return self._launch(self.lab.server.ns, [  # type: ignore[union-attr]
                "udp-sender", "--file", str(src), "--interface", "eth0", "--nokbd",
                "--min-receivers", str(n), "--max-wait", "30", "--portbase",
                str(MCAST_PORTBASE), "--max-bitrate", f"{rate // 1000}k",
            ], logs / f"sender-r{rep}.log")

        timeout = 60 + 10 * kumar_ross_bound(self.size, n, links)
        return self._timed("multicast", rep, n,
                           lambda i, dest: ["udp-receiver", "--file", str(dest), "--interface",
                                            "eth0", "--nokbd", "--portbase",
                                            str(MCAST_PORTBASE)],
                           timeout, before_launch=sender)


# --- aggregation -----------------------------------------------------------------------------


def median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    if not present or len(present) < len(values):
        return None
    return round(statistics.median(present), 3)


def summarize_mode(runs: list[RunResult]) -> dict[str, Any]:
    return {
        "t_all_s": median_or_none([r.t_all_s for r in runs]),
        "t_all_s_runs": [r.t_all_s for r in runs],
        "t_median_s": median_or_none([r.t_median_s for r in runs]),
        "t_first_s": median_or_none([r.t_first_s for r in runs]),
        "server_upload_bytes": int(statistics.median([r.server_upload_bytes for r in runs])),
        "p2p_share": round(statistics.median([r.p2p_share for r in runs]), 4),
        "seed_first_data_s": median_or_none([r.seed_first_data_s for r in runs]),
        "host_cpu_busy": median_or_none([r.host_cpu_busy for r in runs]),
        "all_finished": all(not r.failures and r.t_all_s is not None for r in runs),
        "runs": [asdict(r) for r in runs],
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def summarize(n: int, size: int, links: Links, results: dict[str, list[RunResult]],
              ) -> dict[str, Any]:
    t_star = kumar_ross_bound(size, n, links)
    modes = {mode: summarize_mode(runs) for mode, runs in results.items()}
    bt = modes.get("boottorrent", {})
    uni = modes.get("unicast", {})
    bt_t = bt.get("t_all_s")
    uni_t = uni.get("t_all_s")
    up = bt.get("server_upload_bytes")
    doc = {
        "clients": n,
        "size_bytes": size,
        "t_star_s": round(t_star, 3),
        "unicast_bound_s": round(unicast_bound(size, n, links), 3),
        "boottorrent_t_all_s": bt_t,
        "ratio_to_bound": ratio(bt_t, t_star),
        "unicast_t_all_s": uni_t,
        "speedup": ratio(uni_t, bt_t),
        "server_upload_bytes": up,
        "server_upload_ratio": ratio(up, size),
        "p2p_share": bt.get("p2p_share"),
    }
    if "multicast" in modes:
        doc["multicast_t_all_s"] = modes["multicast"]["t_all_s"]
    doc["goals"] = {
        "ratio_to_bound_at_most_1.25": None if doc["ratio_to_bound"] is None
        else doc["ratio_to_bound"] <= 1.25,
        "speedup_at_least_10": None if doc["speedup"] is None else doc["speedup"] >= 10,
        "server_upload_at_most_2F": None if up is None else up <= 2 * size,
    }
    doc["modes"] = modes
    return doc


# --- plots -----------------------------------------------------------------------------------

COLORS = {"boottorrent": "tab:blue", "unicast": "tab:red", "multicast": "tab:green"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_cdf(doc: dict[str, Any], links: Links, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=100)
    n, size = doc["clients"], doc["size_bytes"]
    for mode, summary in doc["modes"].items():
        for k, run_ in enumerate(summary["runs"]):
            times = sorted(t for t in run_["completion_s"] if t is not None)
            if not times:
                continue
            xs = [0.0, *times]
            ys = [0.0, *[(j + 1) / n for j in range(len(times))]]
            label = f"{mode} (T_all median {summary['t_all_s']} s)" if k == 0 else None
            ax.step(xs, ys, where="post", color=COLORS.get(mode), alpha=0.8, label=label)
    ax.axvline(doc["t_star_s"], color="black", ls="--",
               label=f"T* = {doc['t_star_s']:.1f} s (Kumar-Ross)")
    ax.axvline(doc["unicast_bound_s"], color="gray", ls=":",
               label=f"N*F/u_s = {doc['unicast_bound_s']:.1f} s")
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
             if t <= 1.5 * max(doc["unicast_bound_s"], doc["t_star_s"])]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlabel("seconds since all clients started (log scale)")
    ax.set_ylabel("fraction of clients done")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"N={n}, F={human_size(size)}, server up {human_rate(links.server_up)}, "
                 f"clients {human_rate(links.client_up)} up / {human_rate(links.client_down)} "
                 "down", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_xlim(left=0.5 * min([doc["t_star_s"]] + [
        t for s in doc["modes"].values() for r in s["runs"] for t in r["completion_s"] if t]))
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_scaling(points: list[dict[str, Any]], links: Links, size: int, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=100)
    ns = [p["clients"] for p in points]
    for mode in ("boottorrent", "unicast", "multicast"):
        have = [p for p in points if p["modes"].get(mode, {}).get("t_all_s") is not None]
        if not have:
            continue
        xs = [p["clients"] for p in have]
        med = [p["modes"][mode]["t_all_s"] for p in have]
        runs = [[t for t in p["modes"][mode]["t_all_s_runs"] if t is not None] for p in have]
        lo = [m - min(r) for m, r in zip(med, runs, strict=True)]
        hi = [max(r) - m for m, r in zip(med, runs, strict=True)]
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, color=COLORS[mode],
                    label=f"{mode} T_all")
    grid = list(range(1, max(ns) + 1))
    ax.plot(grid, [kumar_ross_bound(size, k, links) for k in grid], "k--", label="T* (bound)")
    ax.plot(grid, [unicast_bound(size, k, links) for k in grid], ":", color="gray",
            label="N*F/u_s (unicast bound)")
    ax.set_xlabel("clients N")
    ax.set_ylabel("seconds until every client has the OS")
    ax.set_xticks(ns)
    ax.set_title(f"F={human_size(size)}, every link {human_rate(links.server_up)} "
                 "(medians, bars: min-max)", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def replot(doc: dict[str, Any], path: Path) -> None:
    p = doc["parameters"]
    links = Links(p["server_up_bps"], p["server_down_bps"], p["client_up_bps"],
                  p["client_down_bps"])
    if "scaling" in doc:
        plot_scaling(doc["scaling"], links, doc["size_bytes"], path)
    else:
        plot_cdf(doc, links, path)
    say(f"wrote {path}")


# --- main ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/swarm.py",
        description="Measure how long N clients take to get one OS from the real BootTorrent "
        "daemon (BitTorrent), from one HTTP server (unicast) and by udpcast (multicast), "
        "on shaped links in network namespaces, against the Kumar-Ross bound. Run as root "
        "from the repository root.")
    p.add_argument("--clients", type=int, default=16, help="number of clients N (default 16)")
    p.add_argument("--size", type=parse_size, default=parse_size("64M"),
                   help="size of the OS image F (default 64M; binary units)")
    p.add_argument("--rate", type=parse_rate, default=parse_rate("40mbit"),
                   help="rate of every link and direction unless set below (default 40mbit)")
    p.add_argument("--server-up", type=parse_rate, help="server uplink u_s (default --rate)")
    p.add_argument("--server-down", type=parse_rate, help="server downlink (default --rate)")
    p.add_argument("--client-up", type=parse_rate, help="client uplink u_i (default --rate)")
    p.add_argument("--client-down", type=parse_rate, help="client downlink d (default --rate)")
    p.add_argument("--repeat", type=int, default=1,
                   help="runs per mode; the figures are medians over them (default 1)")
    p.add_argument("--modes", default=",".join(MODES),
                   help="comma-separated, in order (default boottorrent,unicast,multicast; "
                   "multicast is skipped when udpcast is not installed)")
    p.add_argument("--scaling", metavar="N,N,...",
                   help="a scaling run: every mode for each of these client counts, e.g. "
                   "1,2,4,8,16; --plot then draws T_all per N")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results here")
    p.add_argument("--plot", type=Path, metavar="FILE",
                   help="write a PNG: completion-time CDF per mode (or T_all per N with "
                   "--scaling)")
    p.add_argument("--replot", type=Path, metavar="JSON",
                   help="only draw --plot again from the JSON document of an earlier run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a daemon configuration key for this run (YAML value), e.g. "
                   "tracker.announce_interval=5 or boottorrent.seed_time=60; repeatable")
    p.add_argument("--aria2-extra", default="", metavar="OPTIONS",
                   help="experiments only: aria2c options appended to the daemon's "
                   "(BT_ARIA2_OPTS), e.g. '--bt-max-peers=80'")
    p.add_argument("--web-seed", action="store_true",
                   help="experiment: clients get the daemon's torrent with a BEP 19 url-list "
                   "to the bench file server's copy of the library (same infohash)")
    p.add_argument("--piece-size", type=parse_size, metavar="SIZE",
                   help="experiment: the daemon makes the torrent with this piece length "
                   "(e.g. 64K) instead of its own choice (256K for 64M)")
    p.add_argument("--transmission-setting", action="append", default=[], metavar="KEY=VALUE",
                   help="experiment: a settings.json key for the daemon's transmission-daemon "
                   "(YAML value), e.g. upload-slots-per-torrent=32; repeatable")
    p.add_argument("--seed", default="transmission",
                   choices=("transmission", "aria2c", "libtorrent", "libtorrent-super"),
                   help="experiment: another program seeds the OS in the server namespace "
                   "(announced to the daemon's tracker) while the daemon's transmission stays "
                   "idle; libtorrent-super is libtorrent-rasterbar in super-seeding mode "
                   "(needs Debian's python3-libtorrent)")
    p.add_argument("--same-session", action="store_true",
                   help="run every boottorrent wave on the same boot session (by default the "
                   "session is restarted before each wave after the first); the seed then "
                   "first has to forget the machines that were complete peers before")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds between the seed being ready (or the previous run) and the "
                   "clients starting (default 3)")
    p.add_argument("--no-verify", dest="verify", action="store_false",
                   help="skip comparing every client's copy with the library's file")
    p.add_argument("--keep", action="store_true",
                   help="keep the work folder (logs of every client) and print its path")
    return p


def host_info() -> dict[str, str]:
    def version(*cmd: str) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "unknown"

    return {
        "kernel": platform.release(),
        "cpus": str(os.cpu_count()),
        "aria2c": version("aria2c", "--version"),
        "transmission": version("transmission-daemon", "--version"),
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def interrupts_as_exit() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does: through the cleanup in `finally`."""
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def check_environment(modes: list[str]) -> list[str]:
    if os.geteuid() != 0:
        raise SystemExit("bench/swarm.py needs root (network namespaces, tc); run it with sudo")
    needed = ["ip", "tc", "aria2c", "curl", "transmission-daemon", "dbus-daemon"]
    missing = [prog for prog in needed if shutil.which(prog) is None]
    if missing:
        raise SystemExit(f"missing programs: {', '.join(missing)}; run `make deps` first")
    if "multicast" in modes and not (shutil.which("udp-sender") and shutil.which("udp-receiver")):
        say("multicast skipped: udpcast is not installed (apt-get install udpcast)")
        modes = [m for m in modes if m != "multicast"]
    return modes


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    links = Links(args.server_up or args.rate, args.server_down or args.rate,
                  args.client_up or args.rate, args.client_down or args.rate)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad:
        raise SystemExit(f"unknown mode(s) {', '.join(bad)}; the modes are {', '.join(MODES)}")
    counts = ([int(x) for x in args.scaling.split(",")] if args.scaling else [args.clients])
    if min(counts) < 1 or args.repeat < 1:
        raise SystemExit("--clients, --scaling and --repeat need whole numbers >= 1")
    if args.replot:
        if not args.plot:
            raise SystemExit("--replot needs --plot FILE")
        replot(json.loads(args.replot.read_text()), args.plot)
        return 0
    modes = check_environment(modes)

    work = Path(tempfile.mkdtemp(prefix="bt-bench-"))
    lab: Lab | None = None
    session: Session | None = None
    runner: Runner | None = None
    mounted = False
    started = dt.datetime.now(dt.UTC)
    try:
        with interrupts_as_exit():
            # The clients' copies live in RAM, as in phase-1 (a tmpfs per machine there).
            (work / "data").mkdir()
            tmpfs = max(counts) * args.size * 11 // 10 + (64 << 20)
            run("mount", "-t", "tmpfs", "-o", f"size={tmpfs},mode=0755", "bt-bench",
                str(work / "data"))
            mounted = True
            say(f"lab: {max(counts)} clients, server up {human_rate(links.server_up)}, "
                f"clients {human_rate(links.client_up)} up / {human_rate(links.client_down)} "
                f"down, F = {human_size(args.size)}")
            lab = Lab(links)
            say(f"lab tag {lab.lan.tag}: bridge btbr{lab.lan.tag}, namespaces "
                f"bt-{lab.lan.tag}-*, subnet {lab.lan.subnet}")
            lab.build(max(counts))
            patches = {}
            if args.piece_size:
                patches["BENCH_PIECE_LENGTH"] = str(args.piece_size)
            if args.transmission_setting:
                patches["BENCH_TRANSMISSION_SETTINGS"] = json.dumps(
                    {k: yaml.safe_load(v) for k, _, v in
                     (item.partition("=") for item in args.transmission_setting)})
            if args.seed != "transmission":
                patches["BENCH_NO_TRANSMISSION_SEED"] = "1"
            session = Session(lab, work, args.size, args.set, patches)
            session.start()
            runner = Runner(args, lab, session, work)
            boot_env = session.boot_env()
            aria2_opts = re.search(r"^BT_ARIA2_OPTS='([^']*)'", boot_env, re.MULTILINE)
            seed_time = re.search(r"^BT_SEED_TIME='([^']*)'", boot_env, re.MULTILINE)
            points = []
            for n in counts:
                results: dict[str, list[RunResult]] = {m: [] for m in modes}
                for rep in range(args.repeat):
                    for mode in modes:
                        time.sleep(args.settle)
                        say(f"{mode}: N={n}, run {rep + 1}/{args.repeat}")
                        result = getattr(runner, mode)(n, rep)
                        results[mode].append(result)
                        t_star = kumar_ross_bound(args.size, n, links)
                        say(f"{mode}: N={n} T_all "
                            f"{result.t_all_s if result.t_all_s is not None else 'n/a'} s "
                            f"(T* {t_star:.1f} s), server sent "
                            f"{result.server_upload_bytes / args.size:.2f} F, p2p share "
                            f"{result.p2p_share:.2f}"
                            + (f"; FAILURES: {result.failures}" if result.failures else ""))
                points.append(summarize(n, args.size, links, results))
            runner.stop_fileserver()

            doc = dict(points[-1])
            doc["parameters"] = {
                "clients": counts[-1] if not args.scaling else counts,
                "size_bytes": args.size,
                "server_up_bps": links.server_up, "server_down_bps": links.server_down,
                "client_up_bps": links.client_up, "client_down_bps": links.client_down,
                "repeat": args.repeat, "modes": modes,
                "shaping": f"tc {' '.join(tbf(links.server_up))} on both ends of every veth",
                "daemon_config": session.config,
                "agent_command": agent_download_command()[0],
                "aria2_options": aria2_opts.group(1) if aria2_opts else None,
                "aria2_extra": args.aria2_extra,
                "web_seed": args.web_seed,
                "piece_size_override": args.piece_size,
                "transmission_settings": args.transmission_setting,
                "seed": args.seed,
                "seed_time_s": seed_time.group(1) if seed_time else None,
                "settle_s": args.settle,
                "session_per_wave": not args.same_session,
                "lab_tag": lab.lan.tag,
                "started": started.isoformat(timespec="seconds"),
                "host": host_info(),
                "note": "one 2-core machine shared with other work: figures are noisy",
            }
            if args.scaling:
                doc["scaling"] = [{k: v for k, v in p.items() if k != "modes"}
                                  | {"modes": {m: {"t_all_s": s["t_all_s"],
                                                   "t_all_s_runs": s["t_all_s_runs"],
                                                   "server_upload_bytes":
                                                       s["server_upload_bytes"]}
                                               for m, s in p["modes"].items()}}
                                  for p in points]
            if args.json:
                args.json.write_text(json.dumps(doc, indent=2) + "\n")
                say(f"wrote {args.json}")
            if args.plot:
                if args.scaling:
                    plot_scaling(doc["scaling"], links, args.size, args.plot)
                else:
                    plot_cdf(doc, links, args.plot)
                say(f"wrote {args.plot}")
            for p in points:
                say(f"N={p['clients']}: T* {p['t_star_s']} s, boottorrent "
                    f"{p['boottorrent_t_all_s']} s ({p['ratio_to_bound']} x T*), unicast "
                    f"{p['unicast_t_all_s']} s, speed-up {p['speedup']}, server sent "
                    f"{p['server_upload_ratio']} F, p2p share {p['p2p_share']}"
                    + (f", multicast {p['multicast_t_all_s']} s"
                       if "multicast_t_all_s" in p else ""))
            ok = all(s["all_finished"] for p in points for s in p["modes"].values())
            return 0 if ok else 1
    except KeyboardInterrupt:
        say("interrupted: cleaning up")
        return 130
    finally:
        # A second Ctrl-C must not cut the cleanup short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if runner is not None:
            runner.stop_fileserver()
        if session is not None:
            session.stop()
        if lab is not None:
            lab.close()
        if mounted:
            run("umount", "-l", str(work / "data"), check=False)
        if args.keep:
            say(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
