"""The lab's network: a devkit LAN (bridge and namespaces) with every link shaped.

Every link is shaped with `tc tbf` on the egress of both ends of its veth pair: the
namespace side limits the machine's upload, the bridge side its download. The bridge-side
ends live in the LAN's namespace: they are shaped and counted there (`Lan.run`, `Lan.ip`).
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


# The kernel's ARP table is one for every namespace, 1024 entries by default: N clients
# that all talk to each other need about N * N, and beyond the limit packets are dropped
# ("No buffer space available"), which at N=64 starved half the swarm. A real lab has a
# kernel per machine; the benchmark sizes the host's table for the run and restores it.
_NEIGH = Path("/proc/sys/net/ipv4/neigh/default")


@dataclass
class ArpTable:
    saved: dict[str, str] = field(default_factory=dict)

    def size_for(self, machines: int) -> None:
        needed = 2 * machines * machines + 1024
        current = int((_NEIGH / "gc_thresh3").read_text())
        if current >= needed:
            return
        for name, value in (("gc_thresh3", needed), ("gc_thresh2", needed // 2)):
            self.saved.setdefault(name, (_NEIGH / name).read_text().strip())
            (_NEIGH / name).write_text(str(value))

    def restore(self) -> None:
        # gc_thresh2 must stay below gc_thresh3: lower it first.
        for name in ("gc_thresh2", "gc_thresh3"):
            if name in self.saved:
                (_NEIGH / name).write_text(self.saved.pop(name))


def iface_counters(ns: Netns) -> tuple[int, int]:
    """(rx_bytes, tx_bytes) of the namespace's eth0, read in the namespace."""
    out = sh("ip", "-n", ns.name, "-s", "-j", "link", "show", "dev", ns.ifname).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["rx"]["bytes"], stats["tx"]["bytes"]


def bridge_side_counters(lan: Lan) -> dict[str, tuple[int, int]]:
    """(rx_bytes, tx_bytes) of every port of the bridge by name: one `ip` call in the LAN's
    namespace, cheap enough for the sampler to ask every few hundred milliseconds."""
    ports = json.loads(lan.ip("-s", "-j", "link", "show", "master", lan.bridge).stdout)
    return {port["ifname"]: (port["stats64"]["rx"]["bytes"], port["stats64"]["tx"]["bytes"])
            for port in ports}


def tbf(rate: int) -> list[str]:
    """tc arguments of a token bucket at `rate` bit/s with QUEUE_MS of queue.

    The bucket holds at least 64 KiB: veth hands tbf GSO packets of up to 64 KiB, and a
    smaller bucket would make tbf cut every one of them into segments.
    """
    burst = max(64 * 1024 + 1514, rate // 8 // 250)
    return ["tbf", "rate", f"{rate}bit", "burst", str(burst), "latency", f"{QUEUE_MS}ms"]


@dataclass
class Machine:
    ns: Netns  # ns.peer, the bridge-side veth end: its egress is this machine's download
    address: str
    up: int
    down: int

    def shape(self) -> None:
        self.ns.run("tc", "qdisc", "replace", "dev", self.ns.ifname, "root", *tbf(self.up))
        self.ns.lan.run("tc", "qdisc", "replace", "dev", self.ns.peer, "root", *tbf(self.down))


@dataclass
class ShapedLan:
    """The bridge, the server namespace and the client namespaces, every link shaped."""

    links: Links
    lan: Lan = field(default_factory=Lan)
    server: Machine | None = None
    clients: list[Machine] = field(default_factory=list)
    arp: ArpTable = field(default_factory=ArpTable)

    def _machine(self, role: str, host: int, up: int, down: int, address: bool) -> Machine:
        ns = self.lan.add(role)
        addr = self.lan.address(host)
        if address:
            # With its broadcast address: udpcast's receivers send their hello there.
            ns.run("ip", "addr", "add", f"{addr}/{self.lan.subnet.prefixlen}", "brd", "+",
                   "dev", ns.ifname)
        machine = Machine(ns, addr, up, down)
        machine.shape()
        return machine

    def build(self, clients: int) -> None:
        self.arp.size_for(clients + 1)
        # The daemon puts host_ip on the server's eth0 itself when the session starts.
        self.server = self._machine("srv", SERVER_HOST, self.links.server_up,
                                    self.links.server_down, address=False)
        while len(self.clients) < clients:
            i = len(self.clients)
            self.clients.append(self._machine(f"c{i}", FIRST_CLIENT_HOST + i,
                                              self.links.client_up, self.links.client_down,
                                              address=True))

    def bridge_side_traffic(self, clients: list[Machine]) -> tuple[int, int]:
        """(bytes the server sent, bytes `clients` received), as their link partners count
        them."""
        assert self.server is not None
        counters = bridge_side_counters(self.lan)
        return (counters[self.server.ns.peer][0],
                sum(counters[c.ns.peer][1] for c in clients))

    def close(self) -> None:
        self.lan.close()
        self.arp.restore()
