"""A LAN on one machine: a bridge, and network namespaces plugged into it by veth pairs.

Every name carries a random tag and every LAN gets its own random 10.x.y.0/24, so
several tests (or several developers' runs) can build LANs at once without clashing.
Only addresses inside that subnet are ever used.
"""

import contextlib
import ipaddress
import os
import secrets
import signal
import subprocess
from dataclasses import dataclass, field


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


@dataclass
class Netns:
    lan: "Lan"
    name: str
    ifname: str = "eth0"
    processes: list[subprocess.Popen] = field(default_factory=list)

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
    def __init__(self) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"btbr{self.tag}"
        a, b = 16 + secrets.randbelow(200), secrets.randbelow(250)
        self.subnet = ipaddress.IPv4Network(f"10.{a}.{b}.0/24")
        self.namespaces: list[Netns] = []
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        # No STP delay: ports forward at once.
        sh("ip", "link", "set", self.bridge, "type", "bridge", "forward_delay", "0")
        sh("ip", "link", "set", self.bridge, "up")

    def address(self, host: int) -> str:
        return str(self.subnet.network_address + host)

    def add(self, role: str) -> Netns:
        """A namespace `role` with eth0 on the bridge (up, no address) and lo up."""
        index = len(self.namespaces)
        ns = Netns(self, f"bt-{self.tag}-{role}")
        host_end, ns_end = f"bv{self.tag}{index}", f"bn{self.tag}{index}"
        sh("ip", "netns", "add", ns.name)
        sh("ip", "link", "add", host_end, "type", "veth", "peer", "name", ns_end)
        sh("ip", "link", "set", ns_end, "netns", ns.name)
        sh("ip", "link", "set", host_end, "master", self.bridge, "up")
        ns.run("ip", "link", "set", ns_end, "name", ns.ifname)
        ns.run("ip", "link", "set", ns.ifname, "up")
        ns.run("ip", "link", "set", "lo", "up")
        self.namespaces.append(ns)
        return ns

    def close(self) -> None:
        for ns in self.namespaces:
            for proc in ns.processes:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            # Anything a test left running in the namespace dies with it.
            for pid in sh("ip", "netns", "pids", ns.name, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            sh("ip", "netns", "del", ns.name, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
