"""`boottorrentctl lab`: a virtual lab of QEMU machines PXE-booting from a real daemon.

Everything lives in two network namespaces made for the run, so the host's own network
is never touched:

    btlab-<tag>       the LAN: bridge br0, one tap per machine, a router-advertisement
                      dnsmasq (see below), and the QEMU processes plugged into the taps
    btlab-<tag>-srv   the server: eth0 (a veth to br0), boottorrentd and its children

IPv4 uses a random 10.x.y.0/24 that exists only on that bridge; the daemon puts
10.x.y.1 on the server's eth0 itself (host_ip). The bridge gets a random ULA IPv6
prefix, announced by a second dnsmasq with router advertisements only: iPXE waits
~13 s for IPv6 autoconfiguration on a LAN without any router advertisement. The
daemon's own dnsmasq must not send them: on a real LAN that is the router's job.

The daemon runs on a private system bus (harness.PrivateBus) with its own state folder,
so the host's boottorrentd, if any, is not involved. Teardown kills what the lab
started, by PID, and deletes the two namespaces (and with them every interface in
them); it runs on success, failure, Ctrl-C and SIGTERM alike, unless --keep.

The Lab class is also what the end-to-end tests drive (tests/e2e).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from boottorrentctl.bus import Client, CtlError
from boottorrentctl.records import client_record, seed_records
from boottorrentd import api
from boottorrentd.bus.backend import MessageBus

from .devkit.harness import DaemonProcess, PrivateBus, venv_bin

QEMU = "qemu-system-x86_64"
HTTP_PORT = 8080
SERVER_HOST = 1
DHCP_FIRST, DHCP_LAST = 100, 199
# Locally administered (QEMU's 52:54:00 range); the lab's LAN is private, so fixed MACs
# per machine number cannot clash with anything.
MAC_PREFIX = "52:54:00:b7:00"
# The daemon's stages that mean phase-1 has handed the machine over to its OS.
TARGET_STAGES = ("booting", "booted")
SYSTEM_LIBRARY = Path("/var/lib/boottorrent/oss")
# Built phase-1 images are kept here between runs (phase1.build(<this>) writes phase1/).
PHASE1_CACHE = Path("/var/cache/boottorrent/lab")
PHASE1_DIR = "phase1"
PHASE1_FILES = ("vmlinuz", "initrd.img")
DEFAULT_TIMEOUT = 300.0
POLL_S = 0.5


class LabError(Exception):
    """Why the lab could not be set up or run, in words a person can act on."""


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({result.returncode}): "
                       f"{(result.stderr or result.stdout).strip()}")
    return result


def missing_prerequisites() -> list[str]:
    """What keeps the lab from running here, each with its fix; empty when all is there."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (network namespaces, a bridge, tap devices): "
                        "run it with sudo")
    for program, package in ((QEMU, "qemu-system-x86"), ("dnsmasq", "dnsmasq-base"),
                             ("ip", "iproute2"), ("dbus-daemon", "dbus")):
        if shutil.which(program) is None:
            problems.append(f"{program} is missing: apt-get install {package}")
    if not Path("/dev/net/tun").exists():
        problems.append("/dev/net/tun is missing: load the tun module (modprobe tun)")
    return problems


@dataclass
class LabConfig:
    """The daemon's configuration for a lab run (the rest comes from the lab's network)."""

    seed_time: int = 5
    timeout: int = 0  # the client menu's; 0 boots default_os at once
    default_os: str | None = None
    display_oss: list[str] | None = None
    announce_interval: int = 5
    extra_cmdline: str = "console=ttyS0"
    # Further sections or keys, merged over the lab's (e.g. {"aria2": {...}}).
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def render(self, host_ip: str, dhcp_range: str) -> str:
        boot: dict[str, Any] = {"version": 0, "host_ip": host_ip, "timeout": self.timeout,
                                "seed_time": self.seed_time}
        if self.default_os:
            boot["default_os"] = self.default_os
        if self.display_oss is not None:
            boot["display_oss"] = self.display_oss
        doc: dict[str, dict[str, Any]] = {
            "boottorrent": boot,
            # The daemon runs as root in the lab; its helpers drop to nobody.
            "dnsmasq": {"interface": "eth0", "user": "nobody", "dhcp_range": dhcp_range},
            "tracker": {"announce_interval": self.announce_interval},
            "http": {"port": HTTP_PORT},
            "client": {"extra_cmdline": self.extra_cmdline},
        }
        for section, values in self.extra.items():
            doc.setdefault(section, {}).update(values)
        return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class VM:
    """One QEMU client machine and what the lab has seen of it."""

    index: int
    mac: str
    tap: str
    console: Path  # everything the machine wrote on its serial port
    socket: Path  # the serial port itself: connect to type into the machine's console
    process: subprocess.Popen | None = None
    started: float = 0.0  # time.monotonic() at power-on
    stage_times: dict[str, float] = field(default_factory=dict)  # first seen, since power-on
    record: dict[str, Any] = field(default_factory=dict)  # the daemon's client object
    peak_down: int = 0
    peak_up: int = 0
    marker_at: float | None = None  # seconds after power-on
    exit_code: int | None = None

    @property
    def name(self) -> str:
        return f"vm{self.index}"

    @property
    def stage(self) -> str:
        return str(self.record.get("stage") or "")

    def elapsed(self) -> float:
        return time.monotonic() - self.started if self.started else 0.0

    def console_text(self) -> str:
        try:
            return self.console.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def last_console_line(self) -> str:
        for line in reversed(self.console_text().splitlines()):
            text = "".join(ch for ch in line if ch.isprintable()).strip()
            if text:
                return text
        return ""

    def reached_target(self) -> bool:
        return any(stage in self.stage_times for stage in TARGET_STAGES)

    def describe_stage(self) -> str:
        if self.stage:
            return self.stage
        return "power-on (firmware; no DHCP request seen yet)"


class DaemonView:
    """One D-Bus connection to the lab's daemon, kept open for polling.

    A `boottorrentctl` process per poll costs ~0.25 s of CPU, which the QEMU machines
    (TCG, two cores) need more. The connection runs its own event loop in a thread so
    that the lab's code stays synchronous.
    """

    def __init__(self, address: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lab-dbus",
                                        daemon=True)
        self._thread.start()
        self._client: Client = self._run(self._connect(address))

    async def _connect(self, address: str) -> Client:
        return Client(await MessageBus(bus_address=address).connect())

    def _run(self, coro: Any, timeout: float = 20) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def clients(self) -> dict[str, dict[str, Any]]:
        """The daemon's client objects by MAC, as `boottorrentctl clients --json` shows."""
        objects = self._run(self._client.managed_objects())
        records = [client_record(ifaces[api.CLIENT_IFACE]) for ifaces in objects.values()
                   if api.CLIENT_IFACE in ifaces]
        return {r["mac"]: r for r in records}

    def manager(self) -> dict[str, Any]:
        return self._run(self._client.properties(api.MANAGER_PATH, api.MANAGER_IFACE))

    def seed_uploaded(self, os_name: str) -> int | None:
        """Bytes the server's seed uploaded of `os_name`, when the daemon reports it."""
        for seed in seed_records(self.manager()):
            if seed["name"] == os_name:
                return int(seed["uploaded_bytes"])
        return None

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.bus.disconnect()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)



@dataclass
class Outcome:
    ok: bool
    problems: list[str]
    seconds: float


class Lab:
    """The lab's network, daemon and machines. `with Lab() as lab:` tears it all down."""

    def __init__(self, config: LabConfig | None = None, *, memory_mb: int = 512,
                 workdir: Path | None = None, out: TextIO | None = None) -> None:
        self.config = config or LabConfig()
        self.memory_mb = memory_mb
        self.tag = secrets.token_hex(3)
        self.lan_ns = f"btlab-{self.tag}"
        self.srv_ns = f"btlab-{self.tag}-srv"
        a, b = 16 + secrets.randbelow(200), secrets.randbelow(250)
        self.subnet = ipaddress.IPv4Network(f"10.{a}.{b}.0/24")
        self.host_ip = str(self.subnet.network_address + SERVER_HOST)
        self.ula = ipaddress.IPv6Network(
            f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}::/64")
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"boottorrent-lab-{self.tag}-"))
        # transmission and dnsmasq drop to nobody and must read the library and TFTP root.
        self.workdir.chmod(0o755)
        self.state_dir = self.workdir / "state"
        self.out = out
        self.vms: list[VM] = []
        self.namespaces: list[str] = []
        self.ra: subprocess.Popen | None = None
        self.bus: PrivateBus | None = None
        self.daemon: DaemonProcess | None = None
        self.view: DaemonView | None = None
        self.closed = False

    # --- setup ---------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def say(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    @property
    def server(self) -> str:
        return f"{self.host_ip}:{HTTP_PORT}"

    @property
    def dhcp_range(self) -> str:
        first = self.subnet.network_address + DHCP_FIRST
        last = self.subnet.network_address + DHCP_LAST
        return f"{first},{last},1h"

    def start(self) -> None:
        """The network, the router advertisements, the bus and the daemon (no session)."""
        self._network()
        self._router_advertisements()
        self._daemon()

    def _network(self) -> None:
        for ns in (self.lan_ns, self.srv_ns):
            sh("ip", "netns", "add", ns)
            self.namespaces.append(ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        lan = ("ip", "-n", self.lan_ns)
        # No STP and no forwarding delay: a port forwards as soon as its machine is on.
        sh(*lan, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0")
        sh(*lan, "link", "set", "br0", "up")
        sh(*lan, "link", "add", "srv0", "type", "veth", "peer", "name", "eth0",
           "netns", self.srv_ns)
        sh(*lan, "link", "set", "srv0", "master", "br0", "up")
        sh("ip", "-n", self.srv_ns, "link", "set", "eth0", "up")
        # nodad: usable at once, and nothing else on this LAN could hold the address.
        sh(*lan, "-6", "addr", "add", f"{self.ula.network_address + 1}/64", "dev", "br0",
           "nodad")
        self.say(f"  network: namespaces {self.lan_ns} (bridge, taps) and {self.srv_ns} "
                 f"(server); IPv4 {self.subnet}, IPv6 {self.ula} (router advertisements)")

    def _router_advertisements(self) -> None:
        with open(self.workdir / "ra-dnsmasq.log", "w") as log:
            self.ra = subprocess.Popen(
                ["ip", "netns", "exec", self.lan_ns, "dnsmasq", "--keep-in-foreground",
                 "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
                 "--interface=br0", "--bind-interfaces", "--enable-ra",
                 "--dhcp-range=::,constructor:br0,ra-only",
                 f"--dhcp-leasefile={self.workdir / 'ra-dnsmasq.leases'}", "--pid-file=",
                 "--user=nobody", "--log-facility=-"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(0.2)
        if self.ra.poll() is not None:
            raise LabError("the router-advertisement dnsmasq exited at start: "
                           + (self.workdir / "ra-dnsmasq.log").read_text().strip())

    def _daemon(self) -> None:
        config = self.workdir / "boottorrent.yaml"
        config.write_text(self.config.render(self.host_ip, self.dhcp_range))
        # dbus-daemon warns on stderr that it may not raise its fd limit (harmless here);
        # into a log file with it, so that it does not clutter the lab's output.
        with _stderr_to(self.workdir / "dbus-daemon.log"):
            self.bus = PrivateBus().start()
        self.daemon = DaemonProcess(config, self.state_dir, self.workdir / "run")
        # setsid: Ctrl-C in the terminal reaches the lab, which stops the daemon in order.
        self.daemon.start(self.env, prefix=["setsid", "ip", "netns", "exec", self.srv_ns])
        self.view = DaemonView(self.bus.address)
        self.say(f"  boottorrentd: pid {self.daemon.process.pid if self.daemon.process else '?'}"
                 f" in {self.srv_ns}, private bus {self.bus.address}, state {self.state_dir}")

    @property
    def env(self) -> dict[str, str]:
        if self.bus is None:
            raise LabError("the lab's bus is not running")
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        env.pop("NOTIFY_SOCKET", None)
        return env

    def ctl(self, *args: str, check: bool = True,
            timeout: float = 300) -> subprocess.CompletedProcess:
        """boottorrentctl against the lab's daemon."""
        result = subprocess.run([venv_bin("boottorrentctl"), *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise LabError(f"boottorrentctl {' '.join(args)} failed: "
                           f"{(result.stderr or result.stdout).strip()}")
        return result

    def add_os(self, name: str, folder: Path, *, link: bool = False) -> None:
        """Add the OS in `folder`; link: serve the folder in place instead of a copy."""
        self.ctl("add-os", name, str(folder), *(["--link"] if link else []))

    def install_phase1(self, source: Path) -> None:
        """Serve the phase-1 image in `source` (vmlinuz, initrd.img[, manifest.json])."""
        missing = [n for n in PHASE1_FILES if not (source / n).is_file()]
        if missing:
            raise LabError(f"{source} is not a phase-1 image: {', '.join(missing)} missing")
        dest = self.state_dir / "phase1"
        dest.mkdir(parents=True, exist_ok=True)
        for item in source.iterdir():
            if item.is_file():
                target = dest / item.name
                target.unlink(missing_ok=True)
                try:
                    os.link(item, target)  # no copy of ~30 MB when on the same filesystem
                except OSError:
                    shutil.copyfile(item, target)

    def start_session(self) -> None:
        self.ctl("start")

    def status(self) -> dict[str, Any]:
        return json.loads(self.ctl("status", "--json").stdout)

    # --- machines ------------------------------------------------------------------------

    def add_vm(self) -> VM:
        """A machine's tap on the bridge and its MAC; power it on with power_on()."""
        index = len(self.vms) + 1
        if index > 255:
            raise LabError("the lab numbers at most 255 machines")
        vm = VM(index, f"{MAC_PREFIX}:{index:02x}", f"tap{index}",
                self.workdir / f"vm{index}-console.log", self.workdir / f"vm{index}.sock")
        lan = ("ip", "-n", self.lan_ns)
        sh(*lan, "tuntap", "add", "dev", vm.tap, "mode", "tap")
        sh(*lan, "link", "set", vm.tap, "master", "br0", "up")
        self.vms.append(vm)
        return vm

    def power_on(self, vm: VM) -> None:
        """Start the machine: PXE from its virtio NIC (iPXE ROM), console to a file."""
        qemu = shutil.which(QEMU) or QEMU
        vm.console.unlink(missing_ok=True)
        vm.socket.unlink(missing_ok=True)
        cmd = ["ip", "netns", "exec", self.lan_ns, qemu, "-name", vm.name,
               "-accel", "tcg", "-m", str(self.memory_mb), "-smp", "1",
               "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
               # A socket to type into (phase-1's rescue shell), logged to a file whether
               # or not anyone is connected.
               "-chardev", f"socket,id=serial0,path={vm.socket},server=on,wait=off,"
               f"logfile={vm.console},logappend=off",
               "-serial", "chardev:serial0",
               "-netdev", f"tap,id=net0,ifname={vm.tap},script=no,downscript=no",
               "-device", f"virtio-net-pci,netdev=net0,mac={vm.mac}",
               # A reset (phase-1 giving up, a kernel panic) ends the process: the lab
               # sees it rather than the machine PXE-booting again forever.
               "-boot", "n", "-no-reboot"]
        with open(self.workdir / f"{vm.name}-qemu.log", "w") as log:
            vm.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        vm.started = time.monotonic()
        vm.stage_times.clear()
        vm.record = {}
        vm.marker_at = None
        vm.exit_code = None
        vm.peak_down = vm.peak_up = 0

    def type_into(self, vm: VM, text: str) -> None:
        """Send `text` to the machine's serial console, as typed on its keyboard."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(str(vm.socket))
            sock.sendall(text.encode())
            # QEMU drops what arrives after the client is gone; give it time to take it.
            time.sleep(0.5)

    def boot(self, count: int = 1) -> list[VM]:
        vms = [self.add_vm() for _ in range(count)]
        for vm in vms:
            self.power_on(vm)
        return vms

    def power_off(self, vm: VM) -> None:
        proc = vm.process
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            vm.exit_code = proc.returncode

    # --- watching ------------------------------------------------------------------------

    def poll(self, marker: str = "") -> list[tuple[VM, str]]:
        """Refresh every powered-on machine from the daemon and its console.

        Returns the events since the last poll: (machine, what happened).
        """
        events: list[tuple[VM, str]] = []
        records = self.view.clients() if self.view else {}
        for vm in self.vms:
            if vm.process is None:
                continue
            record = records.get(vm.mac)
            if record is not None:
                before = vm.stage
                vm.record = record
                vm.peak_down = max(vm.peak_down, record["downloaded_bytes"])
                vm.peak_up = max(vm.peak_up, record["uploaded_bytes"])
                if record["stage"] and record["stage"] not in vm.stage_times:
                    vm.stage_times[record["stage"]] = vm.elapsed()
                if record["stage"] != before:
                    events.append((vm, _stage_event(record)))
            if marker and vm.marker_at is None and marker in vm.console_text():
                vm.marker_at = vm.elapsed()
                line = next((ln for ln in vm.console_text().splitlines() if marker in ln), "")
                events.append((vm, f"target OS up: {line.strip()}"))
            if vm.exit_code is None and vm.process.poll() is not None:
                vm.exit_code = vm.process.returncode
                events.append((vm, f"powered off (QEMU exit code {vm.exit_code})"))
        return events

    def done(self, vm: VM, marker: str) -> bool:
        return vm.reached_target() and (not marker or vm.marker_at is not None)

    def problem(self, vm: VM, marker: str) -> str | None:
        """Why `vm` cannot reach its target any more, or None while it still may."""
        if self.done(vm, marker):
            return None
        if vm.stage == "failed":
            return (f"{vm.name} ({vm.mac}) failed in phase-1: "
                    f"{vm.record.get('error') or 'no reason given'}")
        if vm.exit_code is not None:
            last = vm.last_console_line()
            qemu = self._qemu_error(vm) if vm.exit_code != 0 else ""
            return (f"{vm.name} ({vm.mac}) stopped (QEMU exit code {vm.exit_code}) at stage "
                    f"{vm.describe_stage()} before reaching its target"
                    + (f"; QEMU said: {qemu!r}" if qemu else "")
                    + (f"; last console line: {last!r}" if last else "")
                    + f"; console: {vm.console}")
        return None

    def wait(self, vms: list[VM] | None = None, *, marker: str = "",
             timeout: float = DEFAULT_TIMEOUT,
             on_poll: Callable[[list[tuple[VM, str]]], None] | None = None) -> Outcome:
        """Poll until every machine in `vms` reached its target, or one cannot, or timeout.

        Reached: the daemon saw the machine hand over to its OS (stage booting or booted)
        and, when `marker` is given, the OS printed it on the serial console.
        """
        vms = list(self.vms if vms is None else vms)
        start = time.monotonic()
        while True:
            events = self.poll(marker)
            if on_poll is not None:
                on_poll(events)
            problems = [p for vm in vms if (p := self.problem(vm, marker))]
            if problems:
                return Outcome(False, problems, time.monotonic() - start)
            if all(self.done(vm, marker) for vm in vms):
                return Outcome(True, [], time.monotonic() - start)
            if time.monotonic() - start > timeout:
                late = [vm for vm in vms if not self.done(vm, marker)]
                return Outcome(False, [self._late(vm, marker, timeout) for vm in late],
                               time.monotonic() - start)
            time.sleep(POLL_S)

    def wait_for(self, predicate: Callable[[], object], timeout: float, what: str) -> Any:
        """Poll the machines until `predicate()` is true; LabError naming `what` if not."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                states = "; ".join(f"{vm.name}: {vm.describe_stage()}" for vm in self.vms)
                raise LabError(f"timed out after {timeout:.0f} s waiting for {what} ({states})")
            time.sleep(POLL_S)

    def _qemu_error(self, vm: VM) -> str:
        try:
            lines = (self.workdir / f"{vm.name}-qemu.log").read_text().strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def _late(self, vm: VM, marker: str, timeout: float) -> str:
        since = max(vm.stage_times.values(), default=0.0)
        last = vm.last_console_line()
        wanted = f"its marker {marker!r}" if marker else "its OS"
        reached = " (it handed over; the marker never came)" if vm.reached_target() else ""
        return (f"{vm.name} ({vm.mac}) did not reach {wanted} within {timeout:.0f} s{reached}; "
                f"last stage: {vm.describe_stage()}"
                + (f" (since {since:.0f} s after power-on)" if vm.stage else "")
                + (f"; last console line: {last!r}" if last else "; console: empty")
                + f"; console: {vm.console}")

    # --- teardown ------------------------------------------------------------------------

    def close(self) -> list[str]:
        """Stop and remove everything the lab made; the problems met on the way."""
        if self.closed:
            return []
        self.closed = True
        problems: list[str] = []
        for vm in self.vms:
            with _collect(problems, f"stopping {vm.name}"):
                self.power_off(vm)
        if self.view is not None:
            with _collect(problems, "closing the D-Bus connection"):
                self.view.close()
            self.view = None
        if self.daemon is not None and self.daemon.process is not None:
            with _collect(problems, "stopping boottorrentd"):
                try:
                    self.daemon.stop()
                except subprocess.TimeoutExpired:
                    problems.append("boottorrentd did not stop within 20 s; killed it")
                    self.daemon.kill()
        if self.ra is not None:
            with _collect(problems, "stopping the router-advertisement dnsmasq"):
                self.ra.terminate()
                self.ra.wait(5)
        if self.bus is not None:
            with _collect(problems, "stopping the private bus"):
                self.bus.stop()
            self.bus = None
        for ns in reversed(self.namespaces):
            # What is still running in the lab's namespaces was started by the lab (the
            # daemon's children when the daemon was killed): end it, then the namespace.
            pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            result = sh("ip", "netns", "del", ns, check=False)
            if result.returncode != 0:
                problems.append(f"ip netns del {ns}: {result.stderr.strip()}")
        self.namespaces.clear()
        return problems

    def remove_files(self, *, keep_logs: bool) -> None:
        """Remove the work folder; with keep_logs, only the big files (state, images)."""
        if not keep_logs:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        for item in self.workdir.iterdir():
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)

    def teardown_script(self) -> str:
        """Shell commands that remove a lab left running with --keep."""
        pids = [str(vm.process.pid) for vm in self.vms
                if vm.process is not None and vm.process.poll() is None]
        for proc in (self.daemon.process if self.daemon else None, self.ra,
                     self.bus.process if self.bus else None):
            if proc is not None and proc.poll() is None:
                pids.append(str(proc.pid))
        lines = ["#!/bin/sh", "# Removes the BootTorrent lab " + self.tag,
                 f"kill {' '.join(pids)} 2>/dev/null; sleep 2"] if pids else ["#!/bin/sh"]
        for ns in reversed(self.namespaces):
            lines.append(f"for p in $(ip netns pids {ns}); do kill -9 $p; done; "
                         f"ip netns del {ns}")
        lines.append(f"rm -rf {self.workdir}" + (f" {self.bus.dir}" if self.bus else ""))
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    # Children started inside the block inherit the file as their stderr.
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def _collect(problems: list[str], what: str) -> Iterator[None]:
    # Teardown goes on after a failed step: the later steps still free their resources.
    try:
        yield
    except Exception as e:
        problems.append(f"{what}: {e}")


def _stage_event(record: dict[str, Any]) -> str:
    stage = record["stage"] or "?"
    if stage == "dhcp":
        return f"DHCP: {record['ip'] or 'no address yet'}"
    if stage == "menu":
        return "iPXE fetched its boot script"
    if stage == "phase1":
        return "loading the phase-1 kernel and initrd over HTTP"
    if stage == "downloading":
        return f"phase-1 is up; downloading {record['os'] or 'the OS'} over BitTorrent"
    if stage == "seeding":
        return f"has the whole OS ({_mb(record['downloaded_bytes'])}); seeding for others"
    if stage == "booting":
        return f"starting {record['os'] or 'the OS'}"
    if stage == "booted":
        return f"{record['os'] or 'the OS'} reports it is up"
    if stage == "failed":
        return f"FAILED: {record['error']}"
    return stage


def _mb(n: float) -> str:
    if n >= 100_000:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} kB" if n >= 1000 else f"{n:.0f} B"


# --- the command ----------------------------------------------------------------------------


class Screen:
    """Progress lines, and on a terminal a client table redrawn in place below them."""

    def __init__(self, out: TextIO, lab: Lab, marker: str) -> None:
        self.out = out
        self.lab = lab
        self.marker = marker
        self.live = out.isatty()
        self.drawn = 0
        self.t0 = time.monotonic()

    def update(self, events: list[tuple[VM, str]]) -> None:
        self._erase()
        for vm, text in events:
            print(f"[{vm.elapsed():6.1f}s] {vm.name} {vm.mac}  {text}", file=self.out)
        if self.live:
            lines = self.table()
            print("\n".join(lines), file=self.out)
            self.drawn = len(lines)
        self.out.flush()

    def _erase(self) -> None:
        if self.drawn:
            # Up to the table's first line, then clear to the end of the screen.
            self.out.write(f"\x1b[{self.drawn}F\x1b[J")
            self.drawn = 0

    def finish(self) -> None:
        self._erase()
        self.out.flush()

    def table(self) -> list[str]:
        rows = [f"  {'VM':<4} {'MAC':<17} {'IP':<15} {'STAGE':<11} {'PROGRESS':<16} "
                f"{'DOWN/s':>8} {'UP/s':>8} {'PEERS':>5} {'TIME':>6}  CONSOLE"]
        for vm in self.lab.vms:
            r = vm.record
            progress = float(r.get("progress") or 0.0)
            bar = "#" * int(progress * 10) + "." * (10 - int(progress * 10))
            stage = vm.stage or "firmware"
            if vm.marker_at is not None:
                stage = "TARGET UP"
            console = vm.last_console_line()[:40]
            rows.append(f"  {vm.name:<4} {vm.mac:<17} {r.get('ip') or '-':<15} {stage:<11} "
                        f"[{bar}] {progress:>4.0%} {_rate(r.get('down_rate', 0)):>8} "
                        f"{_rate(r.get('up_rate', 0)):>8} {r.get('peers', 0):>5} "
                        f"{vm.elapsed():>5.0f}s  {console}")
        return rows


def _rate(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 100_000 else f"{n / 1e3:.0f}k" if n else "-"


def summary(lab: Lab, os_name: str, marker: str) -> list[str]:
    """The run in numbers: per machine, when each step was first seen, and the bytes."""
    lines = ["", "Summary, in seconds after power-on (PHASE-1: iPXE fetched the phase-1 kernel; "
             "AGENT: phase-1 is up; HAS OS: downloaded and verified; TARGET: the OS is up):",
             f"  {'VM':<4} {'MAC':<17} {'IP':<15} {'PHASE-1':>7} {'AGENT':>6} {'HAS OS':>6} "
             f"{'TARGET':>6}  {'DOWNLOADED':>10} {'UPLOADED':>9}"]

    def at(t: float | None) -> str:
        return f"{t:.1f}" if t is not None else "-"

    for vm in lab.vms:
        first = vm.stage_times.get
        target = vm.marker_at if marker else min(
            (vm.stage_times[s] for s in TARGET_STAGES if s in vm.stage_times), default=None)
        has_os = first("seeding", first("booting"))
        lines.append(f"  {vm.name:<4} {vm.mac:<17} {vm.record.get('ip') or '-':<15} "
                     f"{at(first('phase1')):>7} {at(first('downloading')):>6} {at(has_os):>6} "
                     f"{at(target):>6}  {_mb(vm.peak_down):>10} {_mb(vm.peak_up):>9}")
    down = sum(vm.peak_down for vm in lab.vms)
    up = sum(vm.peak_up for vm in lab.vms)
    seed = None
    if lab.view is not None:
        with contextlib.suppress(Exception):
            seed = lab.view.seed_uploaded(os_name)
    lines.append("")
    size = _os_size(lab, os_name)
    if seed is not None and size:
        lines.append(f"  The server's seed sent {_mb(seed)}: {seed / size:.2f} x the OS "
                     f"({_mb(size)}) for {len(lab.vms)} machine(s). The machines downloaded "
                     f"{_mb(down)} and report {_mb(up)} uploaded to each other.")
    else:
        lines.append(f"  The machines downloaded {_mb(down)} and report {_mb(up)} uploaded "
                     "to each other.")
    return lines


def _os_size(lab: Lab, os_name: str) -> int:
    folder = lab.state_dir / "oss" / os_name
    try:
        return sum(f.stat().st_size for f in folder.resolve().rglob("*")
                   if f.is_file() and f.name != "config.yaml")
    except OSError:
        return 0


def resolve_os(spec: str) -> tuple[str, Path]:
    """--os: a folder with a config.yaml, or the name of an OS in the system's library."""
    path = Path(spec)
    if (path / "config.yaml").is_file():
        # A library name from the folder's: a-z, 0-9, '.', '_', '-'.
        name = re.sub(r"[^a-z0-9._-]+", "-", path.resolve().name.lower()).strip("._-")
        return name or "os", path.resolve()
    library = SYSTEM_LIBRARY / spec
    if (library / "config.yaml").is_file():
        return spec, library
    raise LabError(f"--os {spec}: neither a folder with a config.yaml nor an OS in "
                   f"{SYSTEM_LIBRARY} ('boottorrentctl list-os' lists the system's OSes)")


PHASE1_STAMP = "lab-inputs.json"


def _phase1_inputs() -> dict[str, str]:
    """What the cached phase-1 image depends on, besides Debian packages."""
    from boottorrentd.phase1 import build as phase1

    version, kernel = phase1.find_kernel()
    st = kernel.stat()
    digest = hashlib.sha256()
    for path in [*sorted(Path(phase1.__file__).parent.glob("*.py")),
                 *sorted(phase1.agent_dir().iterdir())]:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {"kernel": version, "kernel_file": f"{st.st_size}:{st.st_mtime_ns}",
            "sources": digest.hexdigest()}


def _phase1_stale(cache: Path) -> str | None:
    """Why the phase-1 image cached in `cache` is out of date, or None when it is current."""
    from boottorrentd.phase1 import build as phase1

    if not all((cache / PHASE1_DIR / n).is_file() for n in PHASE1_FILES):
        return "none is built yet"
    try:
        recorded = json.loads((cache / PHASE1_STAMP).read_text())
    except (OSError, ValueError):
        return "its inputs were not recorded"
    current = _phase1_inputs()
    if recorded.get("kernel") != current["kernel"]:
        return f"the newest kernel is now {current['kernel']}"
    if recorded != current:
        return "the kernel file, the builder or the phase-1 agent changed since"
    manifest = phase1.read_manifest(cache)
    if manifest is None:
        return "it has no manifest"
    packages = sorted(manifest.created_from)
    listed = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}\n", *packages],
                            capture_output=True, text=True).stdout
    installed = dict(line.split(" ", 1) for line in listed.splitlines() if " " in line)
    for name in packages:
        if installed.get(name) != manifest.created_from[name]:
            return (f"package {name} is now {installed.get(name, 'not installed')} "
                    f"(built with {manifest.created_from[name]})")
    return None


def ensure_phase1(rebuild: bool, out: TextIO) -> Path:
    """A current phase-1 folder: the one cached in PHASE1_CACHE, else built now there."""
    try:
        from boottorrentd.phase1 import build as phase1
    except ImportError as e:
        raise LabError(f"the phase-1 builder is not available ({e}); pass a built image "
                       "with --phase1 DIR") from e
    cached = PHASE1_CACHE / PHASE1_DIR
    why = "--rebuild-phase1" if rebuild else _phase1_stale(PHASE1_CACHE)
    if why is None:
        print(f"Phase-1 image: {cached} (cached; its kernel, agent and packages are "
              "unchanged)", file=out, flush=True)
        return cached
    print(f"Building the phase-1 image (kernel + initrd) into {cached} ({why}); this takes "
          "about a minute ...", file=out, flush=True)
    started = time.monotonic()
    last = [""]

    def progress(step: str, fraction: float) -> None:
        if step != last[0]:
            last[0] = step
            print(f"  {fraction:4.0%} {step}", file=out, flush=True)

    inputs = _phase1_inputs()
    manifest = phase1.build(PHASE1_CACHE, progress=progress)
    (PHASE1_CACHE / PHASE1_STAMP).write_text(json.dumps(inputs, indent=2) + "\n")
    sizes = manifest.vmlinuz["size"] + manifest.initrd["size"]
    print(f"  built in {time.monotonic() - started:.0f} s: kernel {manifest.kernel_version}, "
          f"vmlinuz + initrd = {sizes / 1e6:.1f} MB", file=out, flush=True)
    return cached


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clients", type=int, default=3, metavar="N",
                        help="QEMU machines to boot at once (default 3)")
    parser.add_argument("--os", metavar="NAME",
                        help="the OS to boot: a folder with a config.yaml, or an OS of the "
                        "system's library; default: a demo OS built from this host")
    parser.add_argument("--marker", metavar="TEXT",
                        help="text the OS prints on its serial console once it is up; the "
                        "demo OS prints one. Without it, a machine counts as booted when "
                        "phase-1 hands it over to the OS")
    parser.add_argument("--keep", action="store_true",
                        help="leave the lab running at the end (prints how to remove it)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"give up after this long (default {DEFAULT_TIMEOUT:.0f})")
    parser.add_argument("--memory", type=int, default=512, metavar="MB",
                        help="RAM per machine (default 512)")
    parser.add_argument("--seed-time", type=int, default=5, metavar="SECONDS",
                        help="seconds each client seeds before starting its OS (default 5)")
    parser.add_argument("--phase1", metavar="DIR", type=Path,
                        help="a built phase-1 image (vmlinuz, initrd.img) to serve instead "
                        f"of the one cached in {PHASE1_CACHE}")
    parser.add_argument("--rebuild-phase1", action="store_true",
                        help="build the phase-1 image again even when one is cached")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boottorrentctl lab",
        description="Boot QEMU machines over PXE from a private boottorrentd on a virtual "
        "LAN (network namespaces), and show them fetch the OS from each other.")
    add_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    """`boottorrentctl lab`: 0 when every machine reached its OS, 1 otherwise."""
    out = sys.stdout
    problems = missing_prerequisites()
    if args.clients < 1:
        problems.append("--clients must be at least 1")
    if problems:
        for p in problems:
            print(f"boottorrentctl lab: {p}", file=sys.stderr)
        return 1
    # SIGTERM (a CI timeout, `kill`) tears down like Ctrl-C does.
    previous_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    previous_int = signal.getsignal(signal.SIGINT)
    lab: Lab | None = None
    code = 1
    try:
        lab = Lab(LabConfig(seed_time=args.seed_time), memory_mb=args.memory, out=out)
        code = _run(lab, args, out)
    except LabError as e:
        print(f"boottorrentctl lab: {e}", file=sys.stderr)
    except CtlError as e:
        print(f"boottorrentctl lab: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nInterrupted.", file=sys.stderr)
        code = 130
    finally:
        if lab is not None:
            # A second Ctrl-C must not cut the teardown short.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                _finish(lab, args, code, out)
            finally:
                signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
    return code


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run(lab: Lab, args: argparse.Namespace, out: TextIO) -> int:
    from .demo import build_demo_os

    t0 = time.monotonic()
    if args.os:
        os_name, os_folder = resolve_os(args.os)
        marker = args.marker or ""
        print(f"OS: {os_name} from {os_folder}", file=out)
    else:
        print("Building the demo OS from this host (kernel + busybox initramfs) ...",
              file=out, flush=True)
        demo = build_demo_os(lab.workdir / "demo", report_port=HTTP_PORT)
        os_name, os_folder, marker = demo.name, demo.folder, args.marker or demo.marker
        print(f"  {demo.folder}: kernel {demo.kernel_version}, {demo.size_bytes / 1e6:.1f} MB; "
              f"it prints {demo.marker!r} on its console when it is up", file=out)
    phase1 = args.phase1 or ensure_phase1(args.rebuild_phase1, out)

    lab.config.default_os = os_name
    print(f"Starting the lab {lab.tag} ...", file=out, flush=True)
    lab.start()
    lab.install_phase1(phase1)
    # In place: the folder is the lab's own demo or an OS the system already keeps.
    lab.add_os(os_name, os_folder, link=True)
    lab.start_session()
    print(f"  boot session running: DHCP, TFTP, HTTP on {lab.server}, tracker, seed of "
          f"{os_name}", file=out)
    print(f"Powering on {args.clients} QEMU machine(s) (TCG, {args.memory} MB, PXE from a "
          f"virtio NIC) ...", file=out, flush=True)
    screen = Screen(out, lab, marker)
    lab.boot(args.clients)
    try:
        outcome = lab.wait(marker=marker, timeout=args.timeout, on_poll=screen.update)
    finally:
        screen.finish()
    for line in summary(lab, os_name, marker):
        print(line, file=out)
    if not outcome.ok:
        print("", file=out)
        for p in outcome.problems:
            print(f"boottorrentctl lab: {p}", file=sys.stderr)
        return 1
    print(f"\nAll {len(lab.vms)} machine(s) booted {os_name} from the swarm in "
          f"{outcome.seconds:.0f} s (lab total {time.monotonic() - t0:.0f} s).", file=out)
    return 0


def _finish(lab: Lab, args: argparse.Namespace, code: int, out: TextIO) -> None:
    if args.keep:
        script = lab.workdir / "teardown.sh"
        script.write_text(lab.teardown_script())
        script.chmod(0o755)
        print(f"\nThe lab keeps running (--keep). Talk to its daemon with:\n"
              f"  DBUS_SYSTEM_BUS_ADDRESS={lab.bus.address if lab.bus else '?'} "
              f"boottorrentctl clients\n"
              f"Consoles: {lab.workdir}/vm*-console.log (type into one through its socket, "
              f"vmN.sock, e.g. with socat). Remove it all with: sh {script}",
              file=out)
        return
    print("Tearing the lab down ...", file=out, flush=True)
    problems = lab.close()
    for p in problems:
        print(f"boottorrentctl lab: teardown: {p}", file=sys.stderr)
    keep_logs = code != 0
    lab.remove_files(keep_logs=keep_logs)
    if keep_logs:
        print(f"Logs (consoles, daemon) kept in {lab.workdir}", file=out)
    else:
        print("Lab removed.", file=out)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
