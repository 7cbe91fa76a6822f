"""A LAN on one machine: a bridge, namespaces plugged into it by veth pairs, taps for QEMU.

Every name carries a random tag and every LAN gets its own random 10.x.y.0/24, so
several tests (or several developers' runs) can build LANs at once without clashing.
Only addresses inside that subnet are ever used.

The bridge lives in a namespace of its own (`bt-<tag>-lan`) with the bridge-side ends of
the veths, the taps and what runs on them (QEMU); whatever acts on them (tc, counters,
QEMU) runs there through `Lan.run`, `Lan.ip` and `Lan.popen`. Nothing is made on the host,
and deleting the namespaces removes every interface.

Teardown ends what was started in the namespaces by PID, kills what is left in them, and
deletes the namespaces.
"""

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field

from .shell import sh

__all__ = ["Lan", "Netns", "sh"]


def stop_processes(processes: list[subprocess.Popen], grace: float = 5) -> None:
    """SIGTERM each process still running, SIGKILL it after `grace` seconds."""
    for proc in processes:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def kill_namespace(name: str) -> str | None:
    """SIGKILL what still runs in namespace `name`, delete it; why not, if it could not be."""
    for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    result = sh("ip", "netns", "del", name, check=False)
    return None if result.returncode == 0 else f"ip netns del {name}: {result.stderr.strip()}"


@dataclass
class Netns:
    """A machine on the LAN: a namespace whose `ifname` is one port of the bridge."""

    lan: "Lan"
    name: str
    ifname: str = "eth0"
    processes: list[subprocess.Popen] = field(default_factory=list)
    peer: str = ""  # the bridge-side end of the veth, where the bridge lives (Lan.run)

    def run(self, *cmd: str, check: bool = True, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, *cmd], check=check,
                              capture_output=True, text=True, timeout=timeout, env=env)

    def popen(self, *cmd: str, **kw) -> subprocess.Popen:
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kw)
        self.processes.append(proc)
        return proc

    def add_address(self, host: int) -> str:
        """Give eth0 the subnet's address number `host`; return it (without prefix)."""
        addr = self.lan.address(host)
        self.run("ip", "addr", "add", f"{addr}/{self.lan.subnet.prefixlen}", "dev", self.ifname)
        return addr

    def addresses(self) -> list[str]:
        out = self.run("ip", "-4", "-o", "addr", "show", "dev", self.ifname).stdout
        return [line.split()[3] for line in out.splitlines()]


class Lan:
    """`Lan()`, then `.add(role)` per machine and `.add_tap()` per QEMU NIC; `.close()`."""

    def __init__(self, *, tag: str | None = None) -> None:
        self.tag = tag or secrets.token_hex(3)
        self.bridge = f"btbr{self.tag}"
        a, b = 16 + secrets.randbelow(200), secrets.randbelow(250)
        self.subnet = ipaddress.IPv4Network(f"10.{a}.{b}.0/24")
        self.netns = f"bt-{self.tag}-lan"  # where the bridge lives
        self.namespaces: list[Netns] = []
        self.taps: list[str] = []
        self.processes: list[subprocess.Popen] = []  # started where the bridge lives
        try:
            sh("ip", "netns", "add", self.netns)
            self.ip("link", "set", "lo", "up")
            # No STP and no forwarding delay: a port forwards as soon as it is up.
            self.ip("link", "add", self.bridge, "type", "bridge", "forward_delay", "0",
                    "stp_state", "0")
            self.ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def address(self, host: int) -> str:
        return str(self.subnet.network_address + host)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`ip ARGS` where the bridge lives."""
        return sh("ip", "-n", self.netns, *args, check=check)

    def _exec(self, cmd: tuple[str, ...]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *cmd]

    def run(self, *cmd: str, check: bool = True, timeout: float = 60
            ) -> subprocess.CompletedProcess:
        """A command where the bridge lives (e.g. tc on a Netns.peer)."""
        return sh(*self._exec(cmd), check=check, timeout=timeout)

    def popen(self, *cmd: str, **kw) -> subprocess.Popen:
        """A process where the bridge lives (QEMU on a tap); stopped by close()."""
        proc = subprocess.Popen(self._exec(cmd), **kw)
        self.processes.append(proc)
        return proc

    def add(self, role: str) -> Netns:
        """A namespace `role` with eth0 on the bridge (up, no address) and lo up."""
        index = len(self.namespaces)
        ns = Netns(self, f"bt-{self.tag}-{role}", peer=f"bv{self.tag}{index}")
        sh("ip", "netns", "add", ns.name)
        self.namespaces.append(ns)
        # The namespace's end is made in the namespace: its name clashes with nothing there.
        self.ip("link", "add", ns.peer, "type", "veth", "peer", "name", ns.ifname,
                "netns", ns.name)
        self.ip("link", "set", ns.peer, "master", self.bridge, "up")
        ns.run("ip", "link", "set", ns.ifname, "up")
        ns.run("ip", "link", "set", "lo", "up")
        return ns

    def add_tap(self) -> str:
        """A tap device on the bridge, up, for a QEMU NIC (`-netdev tap,ifname=...`)."""
        tap = f"bt{self.tag}t{len(self.taps)}"
        self.ip("tuntap", "add", "dev", tap, "mode", "tap")
        self.taps.append(tap)
        self.ip("link", "set", tap, "master", self.bridge, "up")
        return tap

    def close(self) -> list[str]:
        """Stop and delete everything the LAN made; what could not be deleted."""
        stop_processes(self.processes)
        problems = []
        for ns in self.namespaces:
            stop_processes(ns.processes)
            # Anything a test left running in the namespace dies with it.
            problems.append(kill_namespace(ns.name))
        self.namespaces.clear()
        # The bridge and the taps go with the LAN's namespace.
        problems.append(kill_namespace(self.netns))
        self.taps.clear()
        return [p for p in problems if p]

    def teardown_commands(self) -> list[str]:
        """Shell lines that remove this LAN, for one left running on purpose (lab --keep)."""
        return [f"for p in $(ip netns pids {name}); do kill -9 $p; done; ip netns del {name}"
                for name in [ns.name for ns in self.namespaces] + [self.netns]]
