"""The lab's network: a devkit LAN (bridge and namespaces) with every link shaped.

Every link is shaped as boottorrentlab.devkit.shaping does it (both ends of the veth);
the bridge-side ends live in the LAN's namespace: they are shaped and counted there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from bench.bounds import Links
from boottorrentlab.devkit.lan import Lan, Netns, sh
from boottorrentlab.devkit.shaping import ArpTable, bridge_side_counters, shape

SERVER_HOST = 1
FIRST_CLIENT_HOST = 10


def iface_counters(ns: Netns) -> tuple[int, int]:
    """(rx_bytes, tx_bytes) of the namespace's eth0, read in the namespace."""
    out = sh("ip", "-n", ns.name, "-s", "-j", "link", "show", "dev", ns.ifname).stdout
    stats = json.loads(out)[0]["stats64"]
    return stats["rx"]["bytes"], stats["tx"]["bytes"]


@dataclass
class Machine:
    ns: Netns  # ns.peer, the bridge-side veth end: its egress is this machine's download
    address: str
    up: int
    down: int

    def shape(self) -> None:
        shape(self.ns, self.up, self.down)


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
