"""Shaped links on a devkit LAN, and the host's ARP table sized for many namespaces.

Every link is shaped with `tc tbf` on the egress of both ends of its veth pair: the
namespace side limits the machine's upload, the bridge side (`Netns.peer`, in the LAN's
namespace) its download. The benchmark and the lab simulator shape their links here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .lan import Lan, Netns

# Queue of each shaped link: what a switch port buffers, in milliseconds at line rate.
QUEUE_MS = 50

# The kernel's ARP table is one for every namespace, 1024 entries by default: N machines
# that all talk to each other need about N * N, and beyond the limit packets are dropped
# ("No buffer space available"), which at N=64 starved half the benchmark's swarm. A real
# lab has a kernel per machine; a run sizes the host's table for itself and restores it.
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


def tbf(rate: int) -> list[str]:
    """tc arguments of a token bucket at `rate` bit/s with QUEUE_MS of queue.

    The bucket holds at least 64 KiB: veth hands tbf GSO packets of up to 64 KiB, and a
    smaller bucket would make tbf cut every one of them into segments.
    """
    burst = max(64 * 1024 + 1514, rate // 8 // 250)
    return ["tbf", "rate", f"{rate}bit", "burst", str(burst), "latency", f"{QUEUE_MS}ms"]


def shape(ns: Netns, up: int, down: int) -> None:
    """Limit what `ns` sends to `up` and what it receives to `down` bit/s."""
    ns.run("tc", "qdisc", "replace", "dev", ns.ifname, "root", *tbf(up))
    ns.lan.run("tc", "qdisc", "replace", "dev", ns.peer, "root", *tbf(down))


def bridge_side_counters(lan: Lan) -> dict[str, tuple[int, int]]:
    """(rx_bytes, tx_bytes) of every port of the bridge by name: one `ip` call in the LAN's
    namespace, cheap enough to ask every few hundred milliseconds. A port's rx is what its
    machine sent, its tx what the machine received."""
    ports = json.loads(lan.ip("-s", "-j", "link", "show", "master", lan.bridge).stdout)
    return {port["ifname"]: (port["stats64"]["rx"]["bytes"], port["stats64"]["tx"]["bytes"])
            for port in ports}
