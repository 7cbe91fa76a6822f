"""dnsmasq as the boot network's DHCP (full or proxyDHCP) and TFTP server.

`Dnsmasq.prepare()` writes everything dnsmasq needs into the session's runtime folder and
returns the ChildSpec the supervisor runs; `Dnsmasq.lease_events()` yields the DHCP lease
changes as they happen.

How lease changes reach the daemon: `--dhcp-script`. dnsmasq runs a tiny generated
script per change (add, old, del); the script sends one datagram to a Unix socket in the
runtime folder, which the daemon bound in `prepare()`. Why this and not the others:

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
import pwd
import re
import shutil
import socket
import stat
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from boottorrentd.config import Config
from boottorrentd.errors import BootTorrentError, InvalidArgument
from boottorrentd.session.supervisor import ChildSpec
from boottorrentd.util.fs import write_atomic
from boottorrentd.util.programs import find_program

log = logging.getLogger(__name__)

IPXE_DIR = Path("/usr/lib/ipxe")
BIOS_LOADER = "undionly.kpxe"
# snponly.efi drives the NIC through the firmware's own UEFI driver, which is what the
# firmware just PXE-booted with; ipxe.efi brings iPXE's own drivers: a fallback only.
EFI_LOADERS = ("snponly.efi", "ipxe.efi")

CONF_NAME = "dnsmasq.conf"
LEASE_FILE = "dnsmasq.leases"
TFTP_DIR = "tftp"
HOOK_NAME = "lease-event"
SOCKET_NAME = "lease-events.sock"
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

# dnsmasq reads its config line by line, splits values at commas and treats '#' and
# quotes specially: paths written into it stay within these characters.
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./@+=-]+")
_MAC = re.compile(r"([0-9a-f]{2}-)?[0-9a-f]{2}(:[0-9a-f]{2})*")
_ACTIONS = ("add", "old", "del")


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
    def pxe(self) -> bool | None:
        """Whether PXE firmware or iPXE asked (both say "PXEClient" in option 60); None
        when the event does not carry the request's data."""
        if not self.from_request:
            return None
        return "ipxe" in self.tags or (self.vendor_class or "").startswith("PXEClient")


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


class Dnsmasq:
    """dnsmasq for one boot session, with everything it writes inside `runtime_dir`.

    Use it like this (all in the daemon's event loop thread):

        dns = Dnsmasq(cfg, runtime / "dnsmasq")
        spec = dns.prepare()           # files + the lease socket; again before a restart
        task = asyncio.create_task(consume(dns.lease_events()))   # before the child runs
        ... supervisor runs spec ...
        dns.close()                    # after the child stopped: ends lease_events()

    `user` overrides `children.user`; with neither, dnsmasq keeps the daemon's own user.
    `bus_address` is accepted for callers that pass the bus along and is not used: the
    lease events come through the script (see the module's docstring), not D-Bus.
    """

    def __init__(
        self,
        cfg: Config,
        runtime_dir: Path,
        *,
        user: str | None = None,
        bus_address: str | None = None,
        ipxe_dir: Path = IPXE_DIR,
    ) -> None:
        self.cfg = cfg
        self.runtime_dir = Path(runtime_dir).absolute()
        if not _SAFE_PATH.fullmatch(str(self.runtime_dir)):
            raise ValueError(
                f"dnsmasq's runtime folder {self.runtime_dir} has characters dnsmasq's config "
                "cannot carry (commas, spaces, '#', quotes); use a plain path such as "
                "/run/boottorrent/dnsmasq"
            )
        self.user = user or cfg.children.user or pwd.getpwuid(os.geteuid()).pw_name
        self.bus_address = bus_address
        self.ipxe_dir = ipxe_dir
        self._sock: socket.socket | None = None
        self._sock_inode = 0
        # The socket lease_events() waits on; only lease_events() closes it once replaced.
        self._reading: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None

    # --- paths ---------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.runtime_dir / CONF_NAME

    @property
    def lease_file(self) -> Path:
        return self.runtime_dir / LEASE_FILE

    @property
    def tftp_root(self) -> Path:
        return self.runtime_dir / TFTP_DIR

    @property
    def hook_path(self) -> Path:
        return self.runtime_dir / HOOK_NAME

    @property
    def socket_path(self) -> Path:
        return self.runtime_dir / SOCKET_NAME

    @property
    def boot_url(self) -> str:
        """What clients already running iPXE load instead of an iPXE binary."""
        return f"http://{self.cfg.boottorrent.host_ip}:{self.cfg.http.port}/boot.ipxe"

    @property
    def efi_loader(self) -> str:
        """The UEFI x86-64 loader served: snponly.efi, or ipxe.efi where it is missing."""
        for name in EFI_LOADERS:
            if (self.ipxe_dir / name).exists():
                return name
        return EFI_LOADERS[0]

    def loaders(self) -> dict[str, Path]:
        """TFTP name → source file of every iPXE binary served."""
        return {name: self.ipxe_dir / name for name in (BIOS_LOADER, self.efi_loader)}

    # --- the config ----------------------------------------------------------------------

    def render_config(self) -> str:
        """The text of dnsmasq.conf for this configuration (no side effects)."""
        cfg = self.cfg
        dns = cfg.dnsmasq
        lines = [
            "# Written by boottorrentd for one boot session; rewritten at every start.",
            "# DNS off: the site's resolvers stay in charge, and no port 53 is taken.",
            "port=0",
            "no-resolv",
            "no-hosts",
            f"interface={dns.interface}",
        ]
        if dns.bind_interfaces:
            # Only sockets on this interface: other DHCP/DNS servers keep the others.
            lines.append("bind-interfaces")
        lines += [
            # The supervisor owns the process and sends stderr to the journal.
            "keep-in-foreground",
            "log-facility=-",
            "pid-file=",
            f"user={self.user}",
        ]
        if dns.enable_dhcp:
            lines += self._dhcp_lines()
        if dns.enable_tftp:
            # No tftp-secure: it serves only files owned by dnsmasq's user, who could
            # then rewrite the loader every client runs. Instead the root is a folder
            # holding nothing but root-owned, world-readable copies of the loaders.
            lines += ["enable-tftp", f"tftp-root={self.tftp_root}"]
        return "\n".join(lines) + "\n"

    def _dhcp_lines(self) -> list[str]:
        cfg = self.cfg
        net = cfg.boot_network.network
        lines = [
            "log-dhcp",
            f"dhcp-leasefile={self.lease_file}",
            f"dhcp-script={self.hook_path}",
            # Renewals become "old" events: the daemon sees clients that stay alive.
            "script-on-renewal",
        ]
        if cfg.dhcp.mode == "proxy":
            # The site's server hands out addresses; we only answer PXE clients.
            lines.append(f"dhcp-range={net.network_address},proxy,{net.netmask}")
        else:
            rng = cfg.dhcp_range
            parts = [str(rng.start), str(rng.end)]
            if rng.netmask is not None:
                parts.append(str(rng.netmask))
            if rng.lease is not None:
                parts.append(rng.lease)
            lines += [
                f"dhcp-range={','.join(parts)}",
                # dnsmasq pings every address before its first offer and answers no
                # other DHCP client for up to 3 s meanwhile: a lab booting at once would
                # queue behind it. The range is the admin's boot range, not a shared one.
                "no-ping",
            ]
        lines += [
            # Client architecture (option 93): 7 and 9 are x86-64 UEFI, 0 or none BIOS.
            "dhcp-match=set:efi64,option:client-arch,7",
            "dhcp-match=set:efi64,option:client-arch,9",
            # iPXE says so in its user class, and sends its feature list (option 175).
            "dhcp-userclass=set:ipxe,iPXE",
            "dhcp-match=set:ipxe,175",
            # iPXE's no-pxedhcp: it stops waiting ~3 s for ProxyDHCP offers.
            "dhcp-option-force=tag:ipxe,encap:175,176,1",
        ]
        # A client that runs iPXE already gets the script, not iPXE again (which would
        # loop). The explicit server address matters in proxy mode: iPXE ignores a
        # ProxyDHCP offer without one.
        lines.append(f"dhcp-boot=tag:ipxe,{self.boot_url},,{cfg.boottorrent.host_ip}")
        efi = self.efi_loader
        if cfg.dhcp.mode == "proxy":
            # PXE ROMs learn their file from the PXE options (a boot menu of one item,
            # and no pxe-prompt: it boots at once). UEFI ROMs fetch it from port 4011.
            # iPXE must not see the menu (it would run it and load iPXE again); with
            # no pxe-service for it, dnsmasq puts the dhcp-boot line into the offer.
            lines += [
                f'pxe-service=tag:!ipxe,x86PC,"BootTorrent",{BIOS_LOADER}',
                f'pxe-service=tag:!ipxe,BC_EFI,"BootTorrent",{efi}',
                f'pxe-service=tag:!ipxe,x86-64_EFI,"BootTorrent",{efi}',
            ]
        else:
            # Exclusive tag sets, so that the order of the lines cannot matter.
            lines += [
                f"dhcp-boot=tag:!ipxe,tag:efi64,{efi}",
                f"dhcp-boot=tag:!ipxe,tag:!efi64,{BIOS_LOADER}",
            ]
        return lines

    # --- files and the child -------------------------------------------------------------

    def prepare(self) -> ChildSpec:
        """Write the config, the lease hook and the TFTP root, open the lease socket, and
        return the child to run. Safe to call again (after a crash or before a restart):
        the lease file and a working socket are kept.

        Blocking file I/O (copies ~250 KB): from async code, run it in a thread
        (asyncio.to_thread); lease_events() copes with that.
        """
        binary = find_program("dnsmasq", "dnsmasq-base")
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            # dnsmasq would only say so in the journal, at every restart.
            raise InvalidArgument(
                f"children.user {self.user!r} (dnsmasq.user in a seed project) does not exist "
                f"here; create it (e.g. 'adduser --system {self.user}') or set children.user "
                "to an existing user, e.g. nobody"
            ) from None
        # dnsmasq's dropped user must reach the TFTP root through this folder.
        self.runtime_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.runtime_dir.chmod(0o755)
        # Also without DHCP (no events then): lease_events() works the same either way.
        self._open_socket()
        if self.cfg.dnsmasq.enable_dhcp:
            write_atomic(
                self.hook_path,
                HOOK_TEMPLATE.format(
                    python=sys.executable or "/usr/bin/python3",
                    socket=str(self.socket_path),
                    timeout=SEND_TIMEOUT,
                ),
                0o755,
            )
        if self.cfg.dnsmasq.enable_tftp:
            self._fill_tftp_root()
        write_atomic(self.config_path, self.render_config(), 0o644)
        return ChildSpec("dnsmasq", [binary, f"--conf-file={self.config_path}"])

    def _fill_tftp_root(self) -> None:
        loaders = self.loaders()
        missing = [str(src) for src in loaders.values() if not src.exists()]
        if missing:
            raise BootTorrentError(
                f"the iPXE loader {', '.join(missing)} is missing; install it with "
                "'apt install ipxe', or set dnsmasq.enable_tftp: false"
            )
        root = self.tftp_root
        root.mkdir(mode=0o755, exist_ok=True)
        root.chmod(0o755)
        for name, src in loaders.items():
            dst = root / name
            # Copies, not links: /run and /usr are different file systems (no hard
            # links), and a copy keeps serving the same loader when a package upgrade
            # replaces the original during a session.
            if not _same_content(src, dst):
                tmp = root / f".{name}.tmp"
                shutil.copyfile(src, tmp)
                tmp.chmod(0o644)
                os.replace(tmp, dst)
        for path in root.iterdir():
            if path.name not in loaders:
                # Left from another configuration (e.g. the other EFI loader).
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()

    # --- lease events --------------------------------------------------------------------

    def _open_socket(self) -> None:
        """Bind the socket the hook sends to, unless it is bound and still in place."""
        if self._sock is not None and self._socket_in_place():
            return
        path = str(self.socket_path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by an earlier run; nobody receives on it any more
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(path)
        # Sending needs write permission on the file: only root (the hook) may.
        os.chmod(path, 0o600)
        self._sock_inode = os.stat(path).st_ino
        # Replace first, then retire: a woken lease_events() must already see the new one.
        old, self._sock = self._sock, sock
        self._retire(old)

    def _retire(self, sock: socket.socket | None) -> None:
        """Stop using `sock`: close it now, or let lease_events() close it once it has
        drained it when it is the socket lease_events() waits on."""
        if sock is None:
            return
        if sock is self._reading and self._loop is not None and self._wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                self._loop.call_soon_threadsafe(self._wakeup.set)
                return
        sock.close()

    def _socket_in_place(self) -> bool:
        """Whether the socket file is still the one bound (not removed or replaced)."""
        try:
            st = self.socket_path.stat()
        except FileNotFoundError:
            return False
        return stat.S_ISSOCK(st.st_mode) and st.st_ino == self._sock_inode

    def close(self) -> None:
        """Close the lease socket and remove it; a running lease_events() ends."""
        sock, self._sock = self._sock, None
        if sock is not None and self._socket_in_place():
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
        self._retire(sock)

    async def lease_events(self) -> AsyncIterator[LeaseEvent]:
        """Yield every lease change dnsmasq reports, until close().

        One consumer at a time, in its own task (`async for`): like any async generator
        it ends when a wait on it is cancelled (e.g. asyncio.wait_for(anext(...))).
        Call prepare() first, and start iterating before the child starts, so that
        dnsmasq's replay of known leases ("old") finds room in the socket's queue.
        After close(), the events already received are still yielded, then it ends.
        Malformed datagrams are logged and skipped.
        """
        if self._loop is not None:
            raise RuntimeError("lease_events() already has a consumer")
        if self._sock is None:
            raise RuntimeError("call prepare() before lease_events()")
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
                # Replaced by prepare() or closed: nothing new arrives here any more.
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


def _same_content(src: Path, dst: Path) -> bool:
    try:
        if src.stat().st_size != dst.stat().st_size:
            return False
    except FileNotFoundError:
        return False
    return src.read_bytes() == dst.read_bytes()
