"""DHCP lease changes from dnsmasq, as they happen: the hook script and the socket it sends to.

How lease changes reach the daemon: `--dhcp-script`. dnsmasq runs a tiny generated
script per change (add, old, del); the script sends one datagram to a Unix socket in the
runtime folder, which the daemon bound in `Dnsmasq.prepare()`. Why this and not the others:

- Privileges: dnsmasq forks its script helper before it drops to its user, so the script
  always runs as root, whatever `children.user` says, and reaches the root-only socket.
  D-Bus only works as root by luck of timing (measured with 2.90): dnsmasq connects as
  root when the bus is up at its start, but a connection made later (bus not up yet, or
  restarted) is the dropped user's, which a root-only policy refuses; dnsmasq then runs
  on without the name and no event arrives, with one log line to show for it.
- Data: the script gets the request's tags and vendor class (PXE firmware or iPXE or an
  installed OS, BIOS or UEFI); the D-Bus signals carry only address, MAC and hostname,
  the lease file not even the client's kind.
- Privacy and moving parts: D-Bus signals go to every local user who adds a match rule
  (MACs, addresses, hostnames); the socket is root's. No bus name or policy, and DHCP
  does not depend on the bus. The lease file is rewritten in place (a reader can see
  half of it) and needs watching (no inotify in the standard library; polling adds
  latency). The socket lives and dies with this object, beside dnsmasq's other files.
- Semantics: dnsmasq itself says add, old and del (release or expiry), replays every
  known lease as "old" when it starts (so a restarted dnsmasq resynchronises the
  daemon), and with `script-on-renewal` reports renewals. The lease file only shows
  states: a release and an expiry look alike, and a renewal is just a changed number.
- Latency: one Python start per event (tens of milliseconds), off dnsmasq's DHCP path:
  dnsmasq queues events while the script runs and answers clients meanwhile.
- Failure: a datagram to a missing or full socket fails or times out within seconds;
  the script then logs through dnsmasq (its stderr goes to dnsmasq's log) and exits.
  It never blocks dnsmasq. Events sent while no one iterates wait in the socket's buffer
  (net.unix.max_dgram_qlen datagrams, 10 by default; further senders wait up to
  SEND_TIMEOUT seconds each), so start consuming before the child starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import socket
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from boottorrentd.clients.registry import Asker

log = logging.getLogger(__name__)

# What phase-1's DHCP client sends as its vendor class (udhcpc -V in phase1/agent/init).
PHASE1_VENDOR_CLASS = "boottorrent-phase1"

# Seconds the hook waits for room in the socket's queue before it gives up on the event.
SEND_TIMEOUT = 5

# The script dnsmasq runs per lease change. -I: no environment variables or user site
# steer the interpreter (it runs as root); -S: only the standard library is needed, and
# skipping site makes each start faster.
HOOK_TEMPLATE = """\
#!{python} -IS
# Written by boottorrentd; dnsmasq runs it per DHCP lease change (as root). It passes
# the change on to boottorrentd as one datagram and exits; it never waits for long.
import json
import os
import socket
import sys

SOCKET = {socket!r}
args = sys.argv[1:]
# Other actions (tftp, arp-*, init, relay-snoop) and DHCPv6 leases are not lease events.
if len(args) < 3 or args[0] not in ("add", "old", "del") or "DNSMASQ_IAID" in os.environ:
    sys.exit(0)
event = {{
    "action": args[0],
    "mac": args[1],
    "ip": args[2],
    "hostname": args[3] if len(args) > 3 and args[3] else None,
    "tags": os.environ.get("DNSMASQ_TAGS", "").split(),
    "vendor_class": os.environ.get("DNSMASQ_VENDOR_CLASS"),
    "from_request": "DNSMASQ_DATA_MISSING" not in os.environ,
}}
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
    sock.settimeout({timeout})
    try:
        sock.sendto(json.dumps(event).encode(), SOCKET)
    except OSError as e:
        print(f"lease event {{args[0]}} {{args[1]}} {{args[2]}} not delivered to "
              f"boottorrentd at {{SOCKET}}: {{e}}", file=sys.stderr)
        sys.exit(1)
"""

_MAC = re.compile(r"([0-9a-f]{2}-)?[0-9a-f]{2}(:[0-9a-f]{2})*")
_ACTIONS = ("add", "old", "del")


def hook_script(socket_path: Path) -> str:
    """The text of the --dhcp-script that sends each lease change to `socket_path`."""
    return HOOK_TEMPLATE.format(
        python=sys.executable or "/usr/bin/python3",
        socket=str(socket_path),
        timeout=SEND_TIMEOUT,
    )


@dataclass(frozen=True)
class LeaseEvent:
    """One DHCP lease change, as dnsmasq reports it.

    action: "add" (new lease), "old" (an existing lease: renewed, changed, or replayed
    when dnsmasq starts) or "del" (released or expired). "old" states how a lease is, it
    is not a change: the same "old" may come twice (dnsmasq 2.90 does at a restart).
    mac is lower-case "aa:bb:cc:dd:ee:ff" (dnsmasq prefixes the hardware type, "06-...",
    for non-Ethernet). hostname is the client's, if it sent one.

    from_request: dnsmasq passed the data of the client's request: `tags` (dnsmasq's,
    e.g. "ipxe", "efi64" and the interface name) and `vendor_class` (option 60). True
    for "add"; False for renewals, releases and the replay at start, which only have
    what the lease file holds (tags empty, vendor_class None).
    """

    action: str
    mac: str
    ip: str
    hostname: str | None
    tags: frozenset[str] = frozenset()
    vendor_class: str | None = None
    from_request: bool = False

    @property
    def asker(self) -> Asker:
        """Who asked, by the request's vendor class (option 60) and tags: PXE ROMs and
        iPXE say "PXEClient" (iPXE also gets the "ipxe" tag), UEFI HTTP Boot
        "HTTPClient", phase-1's udhcpc PHASE1_VENDOR_CLASS (its -V); any other asker is
        the machine's own OS. UNKNOWN when the event does not carry the request's data."""
        if not self.from_request:
            return Asker.UNKNOWN
        vendor_class = self.vendor_class or ""
        if "ipxe" in self.tags or vendor_class.startswith(("PXEClient", "HTTPClient")):
            return Asker.FIRMWARE
        if vendor_class == PHASE1_VENDOR_CLASS:
            return Asker.PHASE1
        return Asker.SYSTEM


def parse_lease_event(data: bytes) -> LeaseEvent:
    """A LeaseEvent from one of the hook's datagrams; ValueError if it is not one."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not JSON: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    action, mac, ip, hostname = (raw.get(k) for k in ("action", "mac", "ip", "hostname"))
    tags, vendor_class = raw.get("tags", []), raw.get("vendor_class")
    from_request = raw.get("from_request", False)
    if action not in _ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if not isinstance(mac, str) or not _MAC.fullmatch(mac.lower()):
        raise ValueError(f"bad MAC address {mac!r}")
    try:
        ip = str(ipaddress.IPv4Address(ip))
    except ValueError:
        raise ValueError(f"bad IPv4 address {ip!r}") from None
    if hostname is not None and not isinstance(hostname, str):
        raise ValueError(f"bad hostname {hostname!r}")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError(f"bad tags {tags!r}")
    if vendor_class is not None and not isinstance(vendor_class, str):
        raise ValueError(f"bad vendor class {vendor_class!r}")
    if not isinstance(from_request, bool):
        raise ValueError(f"bad from_request {from_request!r}")
    return LeaseEvent(
        action, mac.lower(), ip, hostname or None, frozenset(tags), vendor_class, from_request
    )


class LeaseSocket:
    """The Unix socket at `path` the hook sends to, and the events read from it.

    Everything runs in the daemon's event loop thread, except open() and close(), which
    may also run in a worker thread (Dnsmasq.prepare() does): they wake events() through
    the loop when they retire the socket it waits on.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock: socket.socket | None = None
        self._sock_inode = 0
        # The socket events() waits on; only events() closes it once replaced.
        self._reading: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None

    def open(self) -> None:
        """Bind the socket the hook sends to, unless it is bound and still in place."""
        if self._sock is not None and self._in_place():
            return
        path = str(self.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by an earlier run; nobody receives on it any more
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(path)
        # Sending needs write permission on the file: only root (the hook) may.
        os.chmod(path, 0o600)
        self._sock_inode = os.stat(path).st_ino
        # Replace first, then retire: a woken events() must already see the new one.
        old, self._sock = self._sock, sock
        self._retire(old)

    def _retire(self, sock: socket.socket | None) -> None:
        """Stop using `sock`: close it now, or let events() close it once it has drained
        it when it is the socket events() waits on."""
        if sock is None:
            return
        if sock is self._reading and self._loop is not None and self._wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._wakeup.set)
                return
        sock.close()

    def _in_place(self) -> bool:
        """Whether the socket file is still the one bound (not removed or replaced)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return False
        return stat.S_ISSOCK(st.st_mode) and st.st_ino == self._sock_inode

    def close(self) -> None:
        """Close the socket and remove it; a running events() ends."""
        sock, self._sock = self._sock, None
        if sock is not None and self._in_place():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._retire(sock)

    async def events(self) -> AsyncIterator[LeaseEvent]:
        """Yield every lease change dnsmasq reports, until close().

        One consumer at a time, in its own task (`async for`): like any async generator
        it ends when a wait on it is cancelled (e.g. asyncio.wait_for(anext(...))).
        Call open() first, and start iterating before the child starts, so that
        dnsmasq's replay of known leases ("old") finds room in the socket's queue.
        After close(), the events already received are still yielded, then it ends.
        Malformed datagrams are logged and skipped.
        """
        if self._loop is not None:
            raise RuntimeError("the lease events already have a consumer")
        if self._sock is None:
            raise RuntimeError("open the lease socket (Dnsmasq.prepare()) before reading events")
        loop = asyncio.get_running_loop()
        self._loop, self._wakeup = loop, asyncio.Event()
        try:
            while (sock := self._sock) is not None:
                self._reading = sock
                while sock is self._sock:
                    for event in _drain(sock):
                        yield event
                    if sock is self._sock:
                        await self._readable(loop, sock)
                # Replaced by open() or closed: nothing new arrives here any more.
                for event in _drain(sock):
                    yield event
                sock.close()
        finally:
            if self._reading is not None and self._reading is not self._sock:
                self._reading.close()
            self._reading = None
            self._loop = self._wakeup = None

    async def _readable(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        """Wait until `sock` has data or _retire() wakes us."""
        assert self._wakeup is not None
        fd = sock.fileno()
        loop.add_reader(fd, self._wakeup.set)
        try:
            await self._wakeup.wait()
        finally:
            loop.remove_reader(fd)
            # _retire() changes the socket before it wakes us, and the caller looks at
            # the socket after this: clearing here cannot lose a replacement.
            self._wakeup.clear()


def _drain(sock: socket.socket) -> list[LeaseEvent]:
    """Every event waiting in `sock`, without blocking."""
    events: list[LeaseEvent] = []
    while True:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return events
        try:
            events.append(parse_lease_event(data))
        except ValueError as e:
            log.warning("ignoring a malformed lease event from dnsmasq's hook: %s", e)
