"""The lab's network: a devkit LAN (bridge and namespaces) with every link shaped.

Every link is shaped with `tc tbf` on the egress of both ends of its veth pair: the
namespace side limits the machine's upload, the bridge side its download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bench.bounds import Links
from boottorrentlab.devkit.lan import Lan, Netns, sh

SERVER_HOST = 1
FIRST_CLIENT_HOST = 10
# Queue of each shaped link: what a switch port buffers, in milliseconds at line rate.
QUEUE_MS = 50


def iface_counters(ns: Netns) -> tuple[int, int]:
    """(rx_bytes, tx_bytes) of the namespace's eth0, read in the namespace."""
    out = sh("ip", "-n", ns.name, "-s", "-j", "link", "show", "dev", ns.ifname).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["rx"]["bytes"], stats["tx"]["bytes"]


def peer_name(ns: Netns) -> str:
    """The bridge-side end of the namespace's veth pair, by the link index eth0 names."""
    link = json.loads(sh("ip", "-n", ns.name, "-j", "link", "show", "dev", ns.ifname).stdout)[0]
    index = link["link_index"]
    for entry in json.loads(sh("ip", "-j", "link", "show").stdout):
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
        sh("tc", "qdisc", "replace", "dev", self.peer, "root", *tbf(self.down))

    def sent_bytes_bridge_side(self) -> int:
        """What this machine has sent, as its link partner counts it (a file read, cheap)."""
        return int(Path(f"/sys/class/net/{self.peer}/statistics/rx_bytes").read_text())

    def received_bytes_bridge_side(self) -> int:
        return int(Path(f"/sys/class/net/{self.peer}/statistics/tx_bytes").read_text())


@dataclass
class ShapedLan:
    """The bridge, the server namespace and the client namespaces, every link shaped."""

    links: Links
    lan: Lan = field(default_factory=Lan)
    server: Machine | None = None
    clients: list[Machine] = field(default_factory=list)

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
        while len(self.clients) < clients:
            i = len(self.clients)
            self.clients.append(self._machine(f"c{i}", FIRST_CLIENT_HOST + i,
                                              self.links.client_up, self.links.client_down,
                                              address=True))

    def close(self) -> None:
        self.lan.close()
