"""The tracker's state: who is in which torrent's swarm. Pure: no sockets, no clock of
its own (every call is given `now`), so that it is tested without a network."""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field

# The events of BEP 3's announce; "" is a regular announce.
EVENTS = ("started", "completed", "stopped", "")
# Clients do not all keep to the interval a tracker asks for: libtorrent (the server's
# seed) announces at most every 300 s by default (settings_pack::min_announce_interval).
# A peer is only forgotten after twice that; a leaving aria2c says "stopped" anyway.
MIN_PEER_TTL_S = 600.0


def peer_ttl(interval: int, intervals: int) -> float:
    """Seconds of silence after which a peer has left: `intervals` announce intervals, but
    never less than MIN_PEER_TTL_S."""
    return max(float(interval * intervals), MIN_PEER_TTL_S)


@dataclass
class Peer:
    peer_id: bytes
    ip: str
    port: int
    seeding: bool
    seen: float

    def compact(self) -> bytes:
        """BEP 23: four address bytes and two port bytes, network order."""
        return ipaddress.IPv4Address(self.ip).packed + self.port.to_bytes(2, "big")


@dataclass
class Swarm:
    peers: dict[bytes, Peer] = field(default_factory=dict)  # by peer id
    downloaded: int = 0  # "completed" events seen

    def counts(self) -> tuple[int, int, int]:
        """(complete, incomplete, downloaded), as announce and scrape replies carry them."""
        seeds = sum(p.seeding for p in self.peers.values())
        return seeds, len(self.peers) - seeds, self.downloaded


@dataclass(frozen=True)
class Announce:
    infohash: bytes  # 20 bytes
    peer_id: bytes
    ip: str
    port: int
    left: int
    event: str = ""
    numwant: int | None = None


class Swarms:
    """Every tracked torrent's swarm. `max_peers` is a reply's peer list's size (when the
    swarm is that big) whatever numwant a client sends, except 0; a peer not heard of for
    `peer_ttl` seconds has left."""

    def __init__(self, *, max_peers: int, peer_ttl: float,
                 rng: random.Random | None = None) -> None:
        self.max_peers = max_peers
        self.peer_ttl = peer_ttl
        self.allowed: frozenset[bytes] = frozenset()
        self.swarms: dict[bytes, Swarm] = {}
        self._rng = rng or random.Random()

    def allow(self, infohashes: frozenset[bytes]) -> None:
        """Track exactly these torrents from now on; the swarms of others are dropped."""
        self.allowed = infohashes
        for gone in set(self.swarms) - infohashes:
            del self.swarms[gone]

    def announce(self, a: Announce, now: float) -> tuple[list[Peer], Swarm]:
        """Record the announce; return the peers for its reply (never the announcing
        peer itself) and its swarm. KeyError when the torrent is not tracked."""
        if a.infohash not in self.allowed:
            raise KeyError(a.infohash)
        swarm = self.swarms.setdefault(a.infohash, Swarm())
        self._expire(swarm, now)
        if a.event == "stopped":
            swarm.peers.pop(a.peer_id, None)
            return [], swarm
        if a.event == "completed":
            swarm.downloaded += 1
        swarm.peers[a.peer_id] = Peer(a.peer_id, a.ip, a.port, a.left == 0, now)
        # A lab boots at once: every client should learn the whole swarm from its first
        # announce, and aria2c always asks for 50. So any numwant but 0 (no peers, e.g. a
        # probe) gets up to max_peers.
        wanted = 0 if a.numwant == 0 else self.max_peers
        others = [p for p in swarm.peers.values() if p.peer_id != a.peer_id]
        if a.left == 0:
            # A seed has nothing to fetch from other seeds.
            others = [p for p in others if not p.seeding]
        if len(others) > wanted:
            others = self._rng.sample(others, wanted)
        return others, swarm

    def scrape(self, infohashes: list[bytes], now: float) -> dict[bytes, tuple[int, int, int]]:
        """Counts of the named tracked torrents, or of every one when none is named."""
        names = infohashes or sorted(self.allowed)
        out = {}
        for h in names:
            if h in self.allowed:
                swarm = self.swarms.setdefault(h, Swarm())
                self._expire(swarm, now)
                out[h] = swarm.counts()
        return out

    def _expire(self, swarm: Swarm, now: float) -> None:
        for pid in [pid for pid, p in swarm.peers.items() if now - p.seen > self.peer_ttl]:
            del swarm.peers[pid]
