"""A lab of N simulated machines booting from the real daemon, for scale tests.

Each machine is a network namespace on one bridge with a shaped link, running the
phase-1 agent's steps on the host (boottorrentd/phase1/agent/init) instead of a kernel:

    DHCP        busybox udhcpc with the options a PXE firmware sends (60 PXEClient,
                93 client architecture, 94 UNDI version, 97 machine UUID)
    boot script GET /boot/<mac>.ipxe, as iPXE does (the registry's stage "menu")
    phase-1     optionally the kernel and initrd over HTTP, as iPXE fetches them
    reports     a POST to the report endpoint every second, built as the agent builds
                them from bt-download's status file (stages phase1, downloading,
                seeding, booting)
    the OS      the agent's own bt-download command line (devkit.agent.client_runner),
                in the namespace; the copy is checked against the source and removed

Reports and HTTP requests go through sockets made inside each machine's namespace by
this one asyncio process (a POST every second from 200 shells would cost a core on its
own); DHCP and the download are the real programs. During the run a sampler reads the
Manager's and one client's properties over D-Bus every 100 ms, counts the
PropertiesChanged signals on the bus and the daemon's memory. `LabSim(...).run()` returns
a SimResult; `python -m boottorrentlab.devkit.labsim` prints it as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from boottorrentd import api
from boottorrentd.bus.backend import Message, MessageBus, MessageType
from boottorrentd.util.wait import wait_until

from .agent import client_runner, read_status
from .bus import PrivateBus
from .daemon import DaemonProcess, venv_bin
from .lan import Lan, Netns
from .shaping import ArpTable, bridge_side_counters, shape

OS_NAME = "sim"
PAYLOAD = "root.img"
HTTP_PORT = 8080
TRACKER_PORT = 6969
# The machines' downloads run at this niceness: on a real LAN each has its own CPU, here
# they share the server's, whose daemon and children must not wait behind 200 aria2c.
MACHINE_NICE = 10
MACHINES_WEIGHT = 25  # cgroup v2 cpu.weight of all machines together (a process: 100)
SERVER_HOST = 1
DHCP_FIRST, DHCP_LAST = 20, 250
# The Client properties a progress report sets, by the report's key.
REPORTED = {"stage": "Stage", "progress": "Progress", "downloaded_bytes": "DownloadedBytes",
            "uploaded_bytes": "UploadedBytes", "down_rate": "DownloadRate",
            "up_rate": "UploadRate", "peers": "Peers"}

# udhcpc's event script: configure the lease, print it for the simulator.
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
    bound|renew)
        ip addr replace "$ip/${mask:-24}" dev "$interface"
        echo "lease ip=$ip serverid=$serverid" ;;
    deconfig) ip -4 addr flush dev "$interface" ;;
esac
"""

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def socket_in(netns: str) -> socket.socket:
    """A TCP socket that lives in namespace `netns` (setns for this thread, and back)."""
    with open("/proc/self/ns/net") as home, open(f"/run/netns/{netns}") as target:
        if _libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if _libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back home")
    sock.setblocking(False)
    return sock


async def http(netns: str, host: str, port: int, method: str, path: str,
               body: bytes = b"", timeout: float = 30) -> tuple[int, bytes]:
    """One HTTP/1.1 request from namespace `netns`, as busybox wget sends it; (status, body)."""
    sock = socket_in(netns)
    writer = None
    try:
        async with asyncio.timeout(timeout):
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
            reader, writer = await asyncio.open_connection(sock=sock)
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
            if method == "POST":
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            writer.write(head.encode() + b"\r\n" + body)
            answer = await reader.read()
    finally:
        if writer is not None:
            writer.close()
        else:
            sock.close()
    header, _, content = answer.partition(b"\r\n\r\n")
    return int(header.split(b" ", 2)[1]), content


@dataclass
class SimConfig:
    machines: int = 32
    rate: int = 4_000_000  # bit/s, each machine's link, both ways
    server_rate: int = 40_000_000  # bit/s, the server's link, both ways
    size: int = 16 << 20  # bytes of the OS
    seed_time: int = 10  # boottorrent.seed_time: seconds a machine seeds after its download
    phase1: bool = False  # fetch the phase-1 kernel and initrd over HTTP first
    report_interval: float = 1.0
    sample_interval: float = 0.1
    timeout: float = 900  # seconds the whole run may take
    seed_servers: int = 0  # further servers in swarm.role seed, each a namespace
    # Stop server STOP_SERVER (0: the full one) once the machines have on average this
    # share of the OS; None stops none.
    stop_at_progress: float | None = None
    stop_server: int = 0
    # Further configuration sections merged over the simulator's, e.g. {"ltseed": {...}}.
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class MachineResult:
    name: str
    mac: str = ""
    ip: str = ""
    lease_s: float | None = None
    downloaded_s: float | None = None  # whole OS downloaded, seconds after the start
    done_s: float | None = None  # verified copy, after seed_time: seconds after the start
    verified: bool = False
    http_bytes: int = 0  # what it fetched from the boot HTTP server
    reports: int = 0
    report_errors: int = 0
    last_report: dict[str, Any] = field(default_factory=dict)
    final: dict[str, Any] = field(default_factory=dict)  # its D-Bus object at the end
    error: str = ""


@dataclass
class SimResult:
    machines: int
    rate_bit_s: int
    server_rate_bit_s: int
    size_bytes: int
    t_download_all_s: float | None  # every machine has the whole OS, seconds after power-on
    t_all_s: float | None  # every machine verified it after seeding seed_time
    leases: int
    verified: int
    # Machines whose last report differs from their D-Bus object (None: not checked, the
    # full server was stopped).
    reports_lost: list[str] | None
    server_sent_bytes: int  # the servers' links, as the bridge counts them
    servers_sent_bytes: list[int]  # each server's, the full one first
    http_bytes: int  # of that, what the machines fetched by HTTP (scripts, phase-1, torrent)
    seed_uploaded_bytes: int  # the seed engines' own count
    servers_seed_uploaded_bytes: list[int]
    stopped_server_at_s: float | None  # when stop_server was stopped
    dbus_calls: int
    dbus_p50_ms: float
    dbus_p99_ms: float
    dbus_max_ms: float
    properties_changed: int  # PropertiesChanged signals the bus carried during the run
    properties_changed_peak_per_s: int
    daemon_peak_rss_kib: int
    failures: list[str]
    per_machine: list[MachineResult]

    def summary(self) -> dict[str, Any]:
        """The run without the per-machine rows."""
        out = asdict(self)
        out.pop("per_machine")
        return out


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _daemon_rss_peak_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class CpuGroup:
    """A CPU cgroup of low weight for the machines' processes.

    On a real LAN every machine has its own CPU; here 200 aria2c share the server's two
    cores, and niceness alone does not help: CFS weighs each task, and 400 tasks at nice
    10 still outweigh the daemon. As one group they weigh a quarter of one normal process
    (MACHINES_WEIGHT), and take what the server's processes leave; less starves them when
    other work shares the machine. Without a writable cgroup (v2 cpu.weight or v1
    cpu.shares) the machines run at MACHINE_NICE only."""

    def __init__(self, name: str) -> None:
        self.path: Path | None = None
        for root, knob, least in ((Path("/sys/fs/cgroup"), "cpu.weight", str(MACHINES_WEIGHT)),
                                  (Path("/sys/fs/cgroup/cpu"), "cpu.shares",
                                   str(MACHINES_WEIGHT * 1024 // 100))):
            if not (root / knob).exists() and not (root / "cgroup.controllers").exists():
                continue
            group = root / name
            try:
                group.mkdir()
                (group / knob).write_text(least)
            except OSError:
                with contextlib.suppress(OSError):
                    group.rmdir()
                continue
            self.path = group
            return

    def add(self, pid: int) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):  # it may have exited already
                (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()
            self.path = None


class BusSampler:
    """Reads properties over D-Bus every `interval` seconds and counts PropertiesChanged.

    It runs in a process of its own (sample_bus): in the simulator's, busy with hundreds of
    machines, it would measure its own event loop's delays instead of the daemon's."""

    def __init__(self, address: str, interval: float = 0.1) -> None:
        self.address = address
        self.interval = interval
        self.latencies: list[float] = []
        self.signals_by_second: dict[int, int] = {}
        self.client_path = ""  # the first client the daemon announces, read as well
        self.bus: MessageBus | None = None

    async def connect(self, *, listen: bool = False) -> None:
        self.bus = await MessageBus(bus_address=self.address).connect()
        if not listen:
            return
        for interface, member in (("org.freedesktop.DBus.Properties", "PropertiesChanged"),
                                  ("org.freedesktop.DBus.ObjectManager", "InterfacesAdded")):
            await self.bus.call(Message(
                destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                body=[f"type='signal',sender='{api.BUS_NAME}',interface='{interface}',"
                      f"member='{member}'"]))
        self.bus.add_message_handler(self._on_message)

    def _on_message(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL:
            return
        if msg.member == "PropertiesChanged":
            second = int(time.monotonic())
            self.signals_by_second[second] = self.signals_by_second.get(second, 0) + 1
        elif msg.member == "InterfacesAdded" and api.CLIENT_IFACE in msg.body[1]:
            self.client_path = self.client_path or msg.body[0]

    async def get_all(self, path: str, interface: str) -> dict[str, Any]:
        assert self.bus is not None
        reply = await self.bus.call(Message(
            destination=api.BUS_NAME, path=path, interface="org.freedesktop.DBus.Properties",
            member="GetAll", signature="s", body=[interface]))
        if reply.message_type == MessageType.ERROR:
            raise RuntimeError(f"GetAll {path}: {reply.error_name} {reply.body}")
        return {k: v.value for k, v in reply.body[0].items()}

    async def managed_clients(self) -> dict[str, dict[str, Any]]:
        """Every Client object's properties, by MAC."""
        assert self.bus is not None
        reply = await self.bus.call(Message(
            destination=api.BUS_NAME, path=api.MANAGER_PATH,
            interface="org.freedesktop.DBus.ObjectManager", member="GetManagedObjects"))
        out = {}
        for ifaces in reply.body[0].values():
            if api.CLIENT_IFACE in ifaces:
                props = {k: v.value for k, v in ifaces[api.CLIENT_IFACE].items()}
                out[props["MAC"]] = props
        return out

    async def sample(self, stop: Callable[[], bool]) -> None:
        while not stop():
            for path, iface in ((api.MANAGER_PATH, api.MANAGER_IFACE),
                                (self.client_path, api.CLIENT_IFACE)):
                if not path:
                    continue
                started = time.perf_counter()
                try:
                    await self.get_all(path, iface)
                except Exception:
                    return  # the daemon was stopped (a server-failure run)
                self.latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(self.interval)

    def disconnect(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()


def sample_bus(address: str, interval: float, stop: Any, out: Any) -> None:
    """A sampler process: "ready" on `out` once listening, then (latencies, signals by
    second) once `stop` (a multiprocessing Event) is set."""

    async def main() -> BusSampler:
        sampler = BusSampler(address, interval)
        await sampler.connect(listen=True)
        out.put("ready")
        await sampler.sample(stop.is_set)
        # Signals still count until the end of the run.
        while not stop.is_set():
            await asyncio.sleep(0.2)
        sampler.disconnect()
        return sampler

    sampler = asyncio.run(main())
    out.put((sampler.latencies, sampler.signals_by_second))


class SimServer:
    """One boot server: a namespace, a private bus, the daemon on it."""

    def __init__(self, ns: Netns, host: str, workdir: Path) -> None:
        self.ns = ns
        self.host = host
        self.workdir = workdir
        self.bus = PrivateBus()
        self.daemon: DaemonProcess | None = None
        self.seed_uploaded = 0  # the seed's count when the server was stopped

    @property
    def tracker(self) -> str:
        return f"http://{self.host}:{TRACKER_PORT}/announce"

    def ctl(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([venv_bin("boottorrentctl"), *args], env=self.bus.env,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"boottorrentctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def start(self, config: dict[str, Any]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "boottorrent.yaml"
        conf.write_text(yaml.safe_dump(config, sort_keys=False))
        self.bus.start()
        self.daemon = DaemonProcess(conf, self.workdir / "state", self.workdir / "run")
        self.daemon.start(self.bus.env, ["ip", "netns", "exec", self.ns.name], timeout=60)

    def seed_status(self) -> dict[str, Any]:
        status = json.loads(self.ctl("status", "--json"))
        return next((s for s in status.get("seeding", []) if s.get("name") == OS_NAME), {})

    def seeding(self) -> bool:
        return self.seed_status().get("status") == "seeding"

    @property
    def running(self) -> bool:
        return self.daemon is not None and self.daemon.process is not None

    def stop(self) -> None:
        if self.running:
            assert self.daemon is not None
            with contextlib.suppress(Exception):
                self.seed_uploaded = int(self.seed_status().get("uploaded_bytes", 0))
                self.ctl("stop", timeout=60)
            self.daemon.stop_or_kill()
        self.bus.stop()


class LabSim:
    """`with LabSim(SimConfig(...)) as sim: result = sim.run()`: a LAN, the daemon on a
    private bus in the server's namespace with one OS, and N machines booting from it.
    With `seed_servers`, further daemons in swarm.role seed join the swarm."""

    def __init__(self, config: SimConfig, workdir: Path | None = None) -> None:
        self.config = config
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="bt-labsim-"))
        # The daemon's children run as nobody: they must read the state folder.
        self.workdir.chmod(0o755)
        self.arp = ArpTable()
        self.lan: Lan | None = None
        self.servers: list[SimServer] = []
        self.machines: list[Netns] = []
        self.payload_sha256 = ""
        self.script = self.workdir / "udhcpc.sh"
        self.runner = self.workdir / "bt-client.sh"
        self.cpu: CpuGroup | None = None

    # --- set-up ----------------------------------------------------------------------------

    def __enter__(self) -> LabSim:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def server(self) -> SimServer:
        """The full server: DHCP, boot files, reports."""
        return self.servers[0]

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def bus(self) -> PrivateBus:
        return self.server.bus

    def ctl(self, *args: str, timeout: float = 300) -> str:
        return self.server.ctl(*args, timeout=timeout)

    def daemon_config(self, server: SimServer) -> dict[str, Any]:
        assert self.lan is not None
        others = [s.tracker for s in self.servers if s is not server]
        doc: dict[str, dict[str, Any]] = {
            "boottorrent": {"version": 0, "host_ip": server.host, "timeout": 0,
                            "default_os": OS_NAME, "seed_time": self.config.seed_time},
            "dnsmasq": {"interface": "eth0", "dhcp_range":
                        f"{self.lan.address(DHCP_FIRST)},{self.lan.address(DHCP_LAST)},1h"},
            "opentracker": {"port": TRACKER_PORT},
            "children": {"user": "nobody"},
            "tracker": {"announce_interval": 5},
            "http": {"port": HTTP_PORT},
            # The LAN is the simulator's own: no other DHCP server can answer.
            "dhcp": {"probe_seconds": 1},
            "swarm": {"role": "full" if server is self.server else "seed",
                      "other_trackers": others},
        }
        for section, values in self.config.extra.items():
            doc.setdefault(section, {}).update(values)
        return doc

    def start(self) -> None:
        n = self.config.machines
        if n > DHCP_LAST - DHCP_FIRST + 1:
            raise ValueError(f"at most {DHCP_LAST - DHCP_FIRST + 1} machines fit the LAN's "
                             "DHCP range")
        if 1 + self.config.seed_servers >= DHCP_FIRST:
            raise ValueError(f"at most {DHCP_FIRST - 2} seed servers fit below the DHCP range")
        self.arp.size_for(n + 1 + self.config.seed_servers)
        self.cpu = CpuGroup(f"bt-labsim-{os.getpid()}")
        self.lan = Lan()
        for i in range(1 + self.config.seed_servers):
            ns = self.lan.add(f"srv{i}")
            shape(ns, self.config.server_rate, self.config.server_rate)
            self.servers.append(SimServer(ns, self.lan.address(SERVER_HOST + i),
                                          self.workdir / f"server{i}"))
        for i in range(n):
            ns = self.lan.add(f"m{i}")
            shape(ns, self.config.rate, self.config.rate)
            self.machines.append(ns)
        self.script.write_text(UDHCPC_SCRIPT)
        self.script.chmod(0o755)
        for server in self.servers:
            server.start(self.daemon_config(server))
        self._add_os()
        for server in self.servers:
            server.ctl("start")
        for server in self.servers:
            wait_until(server.seeding, timeout=120, interval=0.2,
                       what=f"the daemon in {server.ns.name} to seed {OS_NAME}")

    def _add_os(self) -> None:
        """The same OS on every server: the same files make the same torrent."""
        src = self.workdir / "src" / OS_NAME
        src.mkdir(parents=True)
        src.chmod(0o755)
        data = random.Random(15).randbytes(self.config.size)
        self.payload_sha256 = hashlib.sha256(data).hexdigest()
        (src / PAYLOAD).write_bytes(data)
        (src / "config.yaml").write_text(
            f"dispname: Simulated OS\nmethod: live\nsquashfs: {PAYLOAD}\n")
        for server in self.servers:
            server.ctl("add-os", OS_NAME, str(src))
        shutil.rmtree(src.parent)

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        if self.lan is not None:
            self.lan.close()
            self.lan = None
        if self.cpu is not None:
            self.cpu.remove()
        self.arp.restore()

    def remove_files(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- one machine -------------------------------------------------------------------------

    async def _dhcp(self, ns: Netns, result: MachineResult) -> None:
        out = await _run(ns, "cat", f"/sys/class/net/{ns.ifname}/address")
        result.mac = out.strip()
        uuid = hashlib.md5(result.mac.encode()).hexdigest()
        # What a BIOS PXE ROM sends: its class, architecture 0 (x86 BIOS), UNDI 2.1, UUID.
        out = await _run(ns, "busybox", "udhcpc", "-i", ns.ifname, "-f", "-q", "-n",
                         "-t", "10", "-T", "2", "-A", "2", "-s", str(self.script),
                         "-V", "PXEClient:Arch:00000:UNDI:002001",
                         "-x", "0x5d:0000", "-x", "0x5e:010201", "-x", f"0x61:00{uuid}")
        lease = [line for line in out.splitlines() if line.startswith("lease ")]
        if not lease:
            raise RuntimeError(f"no DHCP lease: {out.strip()[-300:]}")
        result.ip = dict(kv.split("=", 1) for kv in lease[-1].split()[1:])["ip"]

    async def _get(self, ns: Netns, path: str, result: MachineResult) -> bytes:
        status, body = await http(ns.name, self.host, HTTP_PORT, "GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {body[:200]!r}")
        result.http_bytes += len(body)
        return body

    async def _post(self, ns: Netns, report: dict[str, Any], result: MachineResult) -> None:
        body = json.dumps(report).encode()
        try:
            status, _ = await http(ns.name, self.host, HTTP_PORT, "POST",
                                   f"/api/v1/clients/{result.mac}/events", body, timeout=5)
        except (OSError, TimeoutError):
            status = 0
        # The agent's reporter does not retry either: the next report follows. One whose
        # answer did not come in time may still have arrived: the last one sent counts.
        result.last_report = report
        if status == 200:
            result.reports += 1
        else:
            result.report_errors += 1

    @staticmethod
    def _progress(status: dict[str, str], stage: str | None) -> dict[str, Any] | None:
        """The agent's progress_report(): from bt-download's status file."""
        if stage is None:
            stage = {"starting": "downloading", "downloading": "downloading",
                     "seeding": "seeding"}.get(status.get("BT_STATE", "starting"))
            if stage is None:
                return None
            rates = (int(status.get("BT_DOWN_RATE", 0)), int(status.get("BT_UP_RATE", 0)))
        else:
            rates = (0, 0)
        return {"stage": stage, "os": OS_NAME,
                "progress": float(status.get("BT_PROGRESS", 0)),
                "downloaded_bytes": int(status.get("BT_DONE", 0)),
                "uploaded_bytes": int(status.get("BT_UPLOADED", 0)),
                "down_rate": rates[0], "up_rate": rates[1],
                "peers": int(status.get("BT_PEERS", 0))}

    async def _boot(self, ns: Netns, started: float, result: MachineResult) -> None:
        run = self.workdir / "machines" / ns.name
        os_dir = run / "os"
        await self._dhcp(ns, result)
        result.lease_s = time.monotonic() - started
        await self._get(ns, f"/boot/{result.mac}.ipxe", result)
        if self.config.phase1:
            for name in ("vmlinuz", "initrd.img"):
                await self._get(ns, f"/phase1/{name}?mac={result.mac}", result)
        await self._post(ns, {"stage": "phase1", "os": OS_NAME}, result)
        await self._post(ns, {"stage": "downloading", "os": OS_NAME}, result)
        log = open(run.parent / f"{ns.name}.log", "wb")  # noqa: SIM115 (closed below)
        download_start = time.monotonic() - started
        try:
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", ns.name, "nice", "-n", str(MACHINE_NICE),
                str(self.runner),
                f"{self.host}:{HTTP_PORT}", OS_NAME, str(run), str(os_dir),
                stdout=log, stderr=subprocess.STDOUT)
            assert self.cpu is not None
            self.cpu.add(proc.pid)
            while proc.returncode is None:
                report = self._progress(read_status(run / "dl" / "status"), None)
                if report is not None:
                    await self._post(ns, report, result)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), self.config.report_interval)
        finally:
            log.close()
        status = read_status(run / "dl" / "status")
        if proc.returncode != 0:
            raise RuntimeError(f"the download failed ({proc.returncode}): "
                               f"{status.get('BT_ERROR') or 'see ' + log.name}")
        # The torrent and boot spec came over HTTP too.
        result.http_bytes += sum(p.stat().st_size for p in
                                 (run / "boot.env", run / "dl" / "download.torrent"))
        copy = next(os_dir.rglob(PAYLOAD))
        digest = await asyncio.to_thread(_sha256, copy)
        shutil.rmtree(os_dir)
        if digest != self.payload_sha256:
            raise RuntimeError(f"the downloaded {PAYLOAD} differs from the OS's")
        result.verified = True
        result.downloaded_s = download_start + float(status.get("BT_DOWNLOAD_SECONDS") or 0)
        result.done_s = time.monotonic() - started
        final = self._progress(status, "booting")
        assert final is not None
        await self._post(ns, final, result)

    # --- the run ---------------------------------------------------------------------------

    def run(self) -> SimResult:
        return asyncio.run(self._run())

    async def _stop_server_mid_download(self, started: float) -> float:
        """Stop the configured server once the machines have on average stop_at_progress
        of the OS; when, in seconds after the start."""
        share = self.config.stop_at_progress
        assert share is not None
        folder = self.workdir / "machines"
        while True:
            shares = [float(read_status(folder / ns.name / "dl" / "status")
                            .get("BT_PROGRESS", 0)) for ns in self.machines]
            if sum(shares) / len(shares) >= share:
                break
            await asyncio.sleep(0.5)
        server = self.servers[self.config.stop_server]
        at = time.monotonic() - started
        await asyncio.to_thread(server.stop)
        return at

    async def _run(self) -> SimResult:
        assert self.lan is not None
        client_runner(self.workdir)
        (self.workdir / "machines").mkdir(exist_ok=True)
        for ns in self.machines:
            (self.workdir / "machines" / ns.name).mkdir()
        results = [MachineResult(ns.name) for ns in self.machines]
        before = bridge_side_counters(self.lan)
        seed_before = [int(s.seed_status().get("uploaded_bytes", 0)) for s in self.servers]
        daemon = self.server.daemon
        assert daemon is not None and daemon.process is not None
        daemon_pid = daemon.process.pid
        peak_rss = 0
        spawn = multiprocessing.get_context("spawn")
        stop_sampling, sampled = spawn.Event(), spawn.Queue()
        sampler_process = spawn.Process(
            target=sample_bus, args=(self.bus.address, self.config.sample_interval,
                                     stop_sampling, sampled), daemon=True)
        sampler_process.start()
        ready = await asyncio.to_thread(sampled.get, timeout=60)
        assert ready == "ready", ready
        started = time.monotonic()
        stopper = (asyncio.create_task(self._stop_server_mid_download(started))
                   if self.config.stop_at_progress is not None else None)

        async def boot(i: int, ns: Netns) -> None:
            try:
                await self._boot(ns, started, results[i])
            except Exception as e:
                results[i].error = f"{type(e).__name__}: {e}"

        boots = [asyncio.create_task(boot(i, ns)) for i, ns in enumerate(self.machines)]
        _, pending = await asyncio.wait(boots, timeout=self.config.timeout)
        for task in pending:
            task.cancel()
        for i, task in enumerate(boots):
            if task in pending:
                results[i].error = f"not done within {self.config.timeout:.0f} s"
        await asyncio.gather(*pending, return_exceptions=True)
        stopped_at = None
        if stopper is not None:
            if stopper.done():
                stopped_at = round(stopper.result(), 1)
            else:
                stopper.cancel()
                await asyncio.gather(stopper, return_exceptions=True)
        stop_sampling.set()
        latencies, signals_by_second = await asyncio.to_thread(sampled.get, timeout=60)
        await asyncio.to_thread(sampler_process.join, 10)
        lost: list[str] | None = None
        if self.server.running:
            peak_rss = _daemon_rss_peak_kib(daemon_pid)
            # The daemon takes reports in order: by now every report has been answered.
            reader = BusSampler(self.bus.address)
            await reader.connect()
            finals = await reader.managed_clients()
            reader.disconnect()
            lost = []
            for r in results:
                r.final = {key: finals.get(r.mac, {}).get(prop)
                           for key, prop in REPORTED.items()}
                wanted = {key: r.last_report.get(key) for key in REPORTED}
                if r.last_report and any(
                        wanted[k] is not None and wanted[k] != r.final[k] for k in REPORTED):
                    lost.append(r.name)
        after = bridge_side_counters(self.lan)
        sent = [after[s.ns.peer][0] - before[s.ns.peer][0] for s in self.servers]
        uploaded = [(int(s.seed_status().get("uploaded_bytes", 0)) if s.running
                     else s.seed_uploaded) - b for s, b in zip(self.servers, seed_before,
                                                                strict=True)]

        def latest(times: list[float | None]) -> float | None:
            return None if None in times else round(max(t for t in times if t), 1)

        per_second = list(signals_by_second.values())
        return SimResult(
            machines=len(results), rate_bit_s=self.config.rate,
            server_rate_bit_s=self.config.server_rate, size_bytes=self.config.size,
            t_download_all_s=latest([r.downloaded_s for r in results]),
            t_all_s=latest([r.done_s for r in results]),
            leases=sum(1 for r in results if r.ip),
            verified=sum(1 for r in results if r.verified),
            reports_lost=lost, server_sent_bytes=sum(sent), servers_sent_bytes=sent,
            http_bytes=sum(r.http_bytes for r in results),
            seed_uploaded_bytes=sum(uploaded), servers_seed_uploaded_bytes=uploaded,
            stopped_server_at_s=stopped_at,
            dbus_calls=len(latencies),
            dbus_p50_ms=round(_percentile(latencies, 0.5), 2),
            dbus_p99_ms=round(_percentile(latencies, 0.99), 2),
            dbus_max_ms=round(max(latencies, default=0.0), 2),
            properties_changed=sum(per_second),
            properties_changed_peak_per_s=max(per_second, default=0),
            daemon_peak_rss_kib=peak_rss,
            failures=[f"{r.name} ({r.mac or 'no MAC'}): {r.error}" for r in results if r.error],
            per_machine=results)


async def _run(ns: Netns, *cmd: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns.name, *cmd, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {out.decode()[-300:]}")
    return out.decode()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m boottorrentlab.devkit.labsim",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", "-n", type=int, default=SimConfig.machines)
    parser.add_argument("--rate", type=int, default=SimConfig.rate, help="bit/s per machine")
    parser.add_argument("--server-rate", type=int, default=SimConfig.server_rate,
                        help="bit/s of the server's link")
    parser.add_argument("--size", type=int, default=SimConfig.size, help="bytes of the OS")
    parser.add_argument("--phase1", action="store_true",
                        help="fetch the phase-1 kernel and initrd over HTTP first")
    parser.add_argument("--seed-servers", type=int, default=0,
                        help="further servers in swarm.role seed")
    parser.add_argument("--stop-at-progress", type=float,
                        help="stop a server when the machines have this share of the OS")
    parser.add_argument("--stop-server", type=int, default=0,
                        help="which server --stop-at-progress stops (0: the full one)")
    parser.add_argument("--timeout", type=float, default=SimConfig.timeout,
                        help="seconds the machines may take, all together")
    parser.add_argument("--json", type=Path, help="write the result here as well")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    config = SimConfig(machines=args.machines, rate=args.rate, server_rate=args.server_rate,
                       size=args.size, phase1=args.phase1, timeout=args.timeout,
                       seed_servers=args.seed_servers, stop_at_progress=args.stop_at_progress,
                       stop_server=args.stop_server)
    sim = LabSim(config)
    with sim:
        result = sim.run()
    if not args.keep:
        sim.remove_files()
    out = {"summary": result.summary(), "machines": [asdict(r) for r in result.per_machine]}
    text = json.dumps(out, indent=2)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    json.dump(result.summary(), sys.stdout, indent=2)
    print()
    return 0 if not result.failures and not result.reports_lost else 1


if __name__ == "__main__":
    sys.exit(main())
