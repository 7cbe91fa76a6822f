"""Looking for other DHCP servers on the boot network, so that BootTorrent never becomes
a second (rogue) one on a site's LAN.

A probe is one DHCPDISCOVER, as a new machine would send it, and the DHCPOFFERs that
come back within a short window. It never sends a DHCPREQUEST, so no server commits a
lease to it. The probe's MAC is its own (locally administered, derived from the host's
machine id and the interface, so that it stays the same across restarts and a site's
server sees one client, not a new one every time), and the broadcast flag is set: a
server must then broadcast its offer, which an ordinary UDP socket on port 68 receives
without owning the offered address or the MAC.

The packet side is pure functions (build_discover, parse_offer); the decision the session
takes from what was seen is `decide`; `Watch` is the state of the periodic probe while
the session serves full DHCP. `DhcpProbe` is the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import cast

from boottorrentd.errors import BootTorrentError

log = logging.getLogger(__name__)

SERVER_PORT = 67
CLIENT_PORT = 68
MAGIC_COOKIE = bytes.fromhex("63825363")
BROADCAST_FLAG = 0x8000
DHCPDISCOVER, DHCPOFFER = 1, 2
OPT_PAD, OPT_END = 0, 255
OPT_MESSAGE_TYPE, OPT_SERVER_ID, OPT_PARAMS, OPT_CLIENT_ID = 53, 54, 55, 61
# op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr,
# sname, file: the fixed BOOTP header (RFC 2131, section 2), then the magic cookie.
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
_FIXED_LEN = _HEADER.size + len(MAGIC_COOKIE)
# A site's server may wait before its first offer: ISC dhcpd pings the address for 1 s;
# dnsmasq drops the DISCOVER while it pings and answers the client's next one. So the
# DISCOVER is sent again every RESEND_S within the window, as a client retransmits.
RESEND_S = 1.0
# Offers missed in this many probes in a row before another server counts as gone: one
# lost offer must not flip the session's state back and forth.
MISSES_TO_CLEAR = 2
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


@dataclass(frozen=True)
class Offer:
    """A DHCPOFFER: who made it (its server identifier, else the sender) and for what."""

    server: IPv4Address
    offered: IPv4Address


class DhcpConflict(BootTorrentError):
    """Another DHCP server answers on the boot interface and dhcp.mode is full."""


# --- packets --------------------------------------------------------------------------------


def probe_mac(seed: bytes, interface: str) -> bytes:
    """The probe's MAC: stable for (host, interface), locally administered, unicast."""
    digest = bytearray(hashlib.sha256(b"boottorrent-dhcp-probe\0" + seed + b"\0"
                                      + interface.encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02  # bit 1: locally administered; bit 0: unicast
    return bytes(digest)


def host_probe_mac(interface: str) -> bytes:
    """`probe_mac` seeded with this host's machine id (its hostname where there is none)."""
    for path in MACHINE_ID_FILES:
        with contextlib.suppress(OSError):
            seed = path.read_bytes().strip()
            if seed:
                return probe_mac(seed, interface)
    return probe_mac(socket.gethostname().encode(), interface)


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _option(code: int, data: bytes) -> bytes:
    return bytes([code, len(data)]) + data


def build_discover(mac: bytes, xid: int) -> bytes:
    """A DHCPDISCOVER from `mac` asking for a broadcast reply."""
    header = _HEADER.pack(1, 1, len(mac), 0, xid, 0, BROADCAST_FLAG, bytes(4), bytes(4),
                          bytes(4), bytes(4), mac.ljust(16, b"\0"), b"", b"")
    options = (_option(OPT_MESSAGE_TYPE, bytes([DHCPDISCOVER]))
               + _option(OPT_CLIENT_ID, b"\x01" + mac)
               # subnet mask, router, server identifier: what a plain client asks for.
               + _option(OPT_PARAMS, bytes([1, 3, OPT_SERVER_ID]))
               + bytes([OPT_END]))
    # Some relays and old servers drop BOOTP messages shorter than 300 bytes.
    return (header + MAGIC_COOKIE + options).ljust(300, b"\0")


def parse_options(data: bytes) -> dict[int, bytes] | None:
    """The options after the magic cookie; None when they run past the end."""
    options: dict[int, bytes] = {}
    i = 0
    while i < len(data):
        code = data[i]
        if code == OPT_END:
            return options
        if code == OPT_PAD:
            i += 1
            continue
        if i + 1 >= len(data) or i + 2 + data[i + 1] > len(data):
            return None
        # A repeated option continues the first (RFC 3396).
        options[code] = options.get(code, b"") + data[i + 2:i + 2 + data[i + 1]]
        i += 2 + data[i + 1]
    return options


def parse_offer(data: bytes, sender: str, *, xid: int, mac: bytes) -> Offer | None:
    """The offer `data` (from `sender`) makes to the probe (xid, mac); None for anything
    else: other clients' traffic, other message types, malformed packets."""
    if len(data) < _FIXED_LEN or data[_HEADER.size:_FIXED_LEN] != MAGIC_COOKIE:
        return None
    op, _, hlen, _, got_xid, _, _, _, yiaddr, _, _, chaddr, _, _ = _HEADER.unpack_from(data)
    if op != 2 or got_xid != xid or hlen != len(mac) or chaddr[:hlen] != mac:
        return None
    options = parse_options(data[_FIXED_LEN:])
    if options is None or options.get(OPT_MESSAGE_TYPE) != bytes([DHCPOFFER]):
        return None
    server_id = options.get(OPT_SERVER_ID, b"")
    server = IPv4Address(server_id) if len(server_id) == 4 else IPv4Address(sender)
    return Offer(server=server, offered=IPv4Address(yiaddr))


# --- what the session makes of it -----------------------------------------------------------


def servers(offers: Iterable[Offer], *, own: IPv4Address) -> list[IPv4Address]:
    """The other DHCP servers that made `offers`, ours (`own`) left out, in order."""
    return sorted({o.server for o in offers if o.server != own})


def describe(others: list[IPv4Address]) -> str:
    """'the DHCP server at A answers', or 'the DHCP servers at A, B answer'."""
    names = ", ".join(str(s) for s in others)
    if len(others) > 1:
        return f"the DHCP servers at {names} answer"
    return f"the DHCP server at {names} answers"


@dataclass(frozen=True)
class DhcpDecision:
    """What dnsmasq does (full or proxy) and why, as the session's status says it."""

    mode: str
    reason: str = ""


def decide(configured: str, others: list[IPv4Address], interface: str) -> DhcpDecision:
    """The DHCP mode for dhcp.mode `configured` (auto or full, the modes that probe) after
    a probe on `interface` found `others`. Full beside another server is refused."""
    if not others:
        return DhcpDecision("full")
    if configured == "auto":
        return DhcpDecision(
            "proxy", f"proxyDHCP with dhcp.mode auto: {describe(others)} on {interface}")
    raise DhcpConflict(
        f"{describe(others)} DHCP on {interface} already: a second server would "
        "hand out addresses to every machine on that network. Set dhcp.mode: proxy (or "
        "auto) to boot clients beside it, or move the boot network to an interface of its "
        "own (dnsmasq.interface)")


class Watch:
    """Other DHCP servers seen by the periodic probe while the session serves full DHCP.

    A server counts as present from the first probe that sees it, and as gone only after
    MISSES_TO_CLEAR probes in a row without it: a lost offer must not make the state flap.
    """

    def __init__(self) -> None:
        self.present: list[IPv4Address] = []
        self._misses: dict[IPv4Address, int] = {}

    def update(self, seen: list[IPv4Address]) -> bool:
        """Record one probe's result; whether `present` changed."""
        for server in seen:
            self._misses[server] = 0
        for server in list(self._misses):
            if server not in seen:
                self._misses[server] += 1
                if self._misses[server] >= MISSES_TO_CLEAR:
                    del self._misses[server]
        present = sorted(self._misses)
        changed = present != self.present
        self.present = present
        return changed

    @property
    def reason(self) -> str:
        if not self.present:
            return ""
        return (f"{describe(self.present)} DHCP on the boot network too; clients may "
                "get their address from either. Stop that server, or set dhcp.mode: auto or "
                "proxy and restart the session")


# --- the socket -----------------------------------------------------------------------------


class DhcpProbe:
    """A DHCP client socket on `interface` that sends DISCOVERs and collects the offers.

    Open it (or use it as a context manager) after the interface is up with its address:
    the DISCOVER goes out from it. One probe at a time.
    """

    def __init__(self, interface: str, mac: bytes | None = None) -> None:
        self.interface = interface
        self.mac = mac if mac is not None else host_probe_mac(interface)
        self._sock: socket.socket | None = None

    def open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # DHCP clients on other interfaces (dhclient, systemd-networkd) may hold port
            # 68 too; broadcasts reach every socket bound to it.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, self.interface.encode())
            sock.bind(("0.0.0.0", CLIENT_PORT))
        except OSError as e:
            sock.close()
            raise BootTorrentError(
                f"cannot listen for DHCP offers on {self.interface} (UDP port {CLIENT_PORT}): "
                f"{e.strerror}; a DHCP client that holds that port without sharing it must "
                "stop, or set dhcp.mode: proxy, which does not look for other servers") from e
        sock.setblocking(False)
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> DhcpProbe:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def discover(self, seconds: float) -> list[Offer]:
        """Send a DISCOVER and return the offers that come back within `seconds`."""
        sock = self._sock
        assert sock is not None, "open() the probe first"
        loop = asyncio.get_running_loop()
        xid = int.from_bytes(os.urandom(4), "big")
        packet = build_discover(self.mac, xid)
        offers: list[Offer] = []
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                await loop.sock_sendto(sock, packet, ("255.255.255.255", SERVER_PORT))
            except OSError as e:
                # No carrier, or the link went away: nothing can answer now either.
                log.warning("could not send the DHCP probe on %s: %s", self.interface, e)
            until = loop.time() + min(RESEND_S, left)
            while (left := until - loop.time()) > 0:
                try:
                    async with asyncio.timeout(left):
                        received = await loop.sock_recvfrom(sock, 4096)
                except TimeoutError:
                    break
                # Debian 12's typeshed calls the result bytes; it is (data, address).
                data, sender = cast(tuple[bytes, tuple[str, int]], received)
                self._take(offers, data, sender[0], xid)
        # What came in time but found the event loop busy counts too.
        while True:
            try:
                late, (late_sender, _) = sock.recvfrom(4096)
            except BlockingIOError:
                return offers
            self._take(offers, late, late_sender, xid)

    def _take(self, offers: list[Offer], data: bytes, sender: str, xid: int) -> None:
        offer = parse_offer(data, sender, xid=xid, mac=self.mac)
        if offer is not None and offer not in offers:
            offers.append(offer)
