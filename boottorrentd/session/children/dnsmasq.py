"""dnsmasq as the boot network's DHCP (full or proxyDHCP) and TFTP server.

`Dnsmasq.prepare()` writes everything dnsmasq needs into the session's runtime folder and
returns the ChildSpec the supervisor runs; `Dnsmasq.lease_events()` yields the DHCP lease
changes as they happen (how they come, and why that way: leases.py).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from boottorrentd.boot.loaders import GRUB_CONFIG, IPXE_DIR, PHASE1_FOLDER, Loaders, loaders
from boottorrentd.config import Config
from boottorrentd.errors import BootTorrentError, InvalidArgument
from boottorrentd.phase1.manifest import BOOT_FILES
from boottorrentd.phase1.qemu import QEMU_IMAGE, qemu_image
from boottorrentd.session.children.leases import LeaseEvent, LeaseSocket, hook_script
from boottorrentd.session.supervisor import ChildSpec
from boottorrentd.util.fs import write_atomic
from boottorrentd.util.programs import find_program

CONF_NAME = "dnsmasq.conf"
LEASE_FILE = "dnsmasq.leases"
TFTP_DIR = "tftp"
HOOK_NAME = "lease-event"
SOCKET_NAME = "lease-events.sock"
# dnsmasq reads its config line by line, splits values at commas and treats '#' and
# quotes specially: paths written into it stay within these characters.
_SAFE_PATH = re.compile(r"[A-Za-z0-9_./@+=-]+")


class Dnsmasq:
    """dnsmasq for one boot session, with everything it writes inside `runtime_dir`.

    Use it like this (all in the daemon's event loop thread):

        dns = Dnsmasq(cfg, runtime / "dnsmasq")
        spec = dns.prepare()           # files + the lease socket; again before a restart
        task = asyncio.create_task(consume(dns.lease_events()))   # before the child runs
        ... supervisor runs spec ...
        dns.close()                    # after the child stopped: ends lease_events()

    `dhcp_mode` is full or proxy, as the session decided (dhcp.mode auto leaves it to the
    session's probe); `ignore_mac` is the session's own DHCP probe, which must get no
    offer from this server. `user` overrides `children.user`; with neither, dnsmasq keeps
    the daemon's own user.
    `bus_address` is accepted for callers that pass the bus along and is not used: the
    lease events come through the script (see leases.py), not D-Bus. With
    boot.uefi_loader shim, the owner writes GRUB's config with write_grub_config() after
    prepare() and whenever a boot plan may have changed; `phase1_dir`'s kernel and
    initrd, and QEMU's initramfs beside it, are served in phase1/ for GRUB.
    """

    def __init__(
        self,
        cfg: Config,
        runtime_dir: Path,
        *,
        dhcp_mode: str = "full",
        ignore_mac: str | None = None,
        user: str | None = None,
        bus_address: str | None = None,
        ipxe_dir: Path = IPXE_DIR,
        phase1_dir: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.runtime_dir = Path(runtime_dir).absolute()
        if not _SAFE_PATH.fullmatch(str(self.runtime_dir)):
            raise ValueError(
                f"dnsmasq's runtime folder {self.runtime_dir} has characters dnsmasq's config "
                "cannot carry (commas, spaces, '#', quotes); use a plain path such as "
                "/run/boottorrent/dnsmasq"
            )
        if dhcp_mode not in ("full", "proxy"):
            raise ValueError(f"dnsmasq serves DHCP full or proxy, not {dhcp_mode!r}")
        self.dhcp_mode = dhcp_mode
        self.ignore_mac = ignore_mac
        self.user = user or cfg.children.user or pwd.getpwuid(os.geteuid()).pw_name
        self.bus_address = bus_address
        self.ipxe_dir = ipxe_dir
        # GRUB (the signed UEFI chain) loads phase-1 from here over TFTP.
        self.phase1_dir = phase1_dir
        self._leases = LeaseSocket(self.socket_path)

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
    def http_server(self) -> str:
        """host:port of the boot HTTP server as the clients reach it."""
        return f"{self.cfg.boottorrent.host_ip}:{self.cfg.http.port}"

    @property
    def boot_url(self) -> str:
        """What clients already running iPXE load instead of an iPXE binary."""
        return f"http://{self.http_server}/boot.ipxe"

    @property
    def served(self) -> Loaders:
        """The first loaders for this configuration (boot.uefi_loader, boot.grub_image)."""
        boot = self.cfg.boot
        return loaders(boot.uefi_loader, ipxe_dir=self.ipxe_dir, grub=boot.grub_image)

    @property
    def efi_loader(self) -> str:
        """The UEFI x86-64 loader served: shimx64.efi, or snponly.efi (ipxe.efi where it
        is missing) with boot.uefi_loader ipxe."""
        return self.served.uefi

    def loaders(self) -> dict[str, Path]:
        """TFTP name → source file of every loader served."""
        return self.served.files

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
        return [
            "log-dhcp",
            f"dhcp-leasefile={self.lease_file}",
            f"dhcp-script={self.hook_path}",
            # Renewals become "old" events: the daemon sees clients that stay alive.
            "script-on-renewal",
            *self._range_lines(),
            # Client architecture (option 93): 7 and 9 are x86-64 UEFI, 0 or none BIOS.
            "dhcp-match=set:efi64,option:client-arch,7",
            "dhcp-match=set:efi64,option:client-arch,9",
            # iPXE says so in its user class, and sends its feature list (option 175).
            "dhcp-userclass=set:ipxe,iPXE",
            "dhcp-match=set:ipxe,175",
            # iPXE's no-pxedhcp: it stops waiting ~3 s for ProxyDHCP offers.
            "dhcp-option-force=tag:ipxe,encap:175,176,1",
            # UEFI HTTP Boot says HTTPClient in its vendor class (option 60).
            "dhcp-vendorclass=set:httpboot,HTTPClient",
            *self._boot_lines(),
        ]

    def _range_lines(self) -> list[str]:
        cfg = self.cfg
        if self.dhcp_mode == "proxy":
            # The site's server hands out addresses; we only answer PXE clients.
            net = cfg.boot_network.network
            return [f"dhcp-range={net.network_address},proxy,{net.netmask}"]
        rng = cfg.dhcp_range
        parts = [str(rng.start), str(rng.end)]
        if rng.netmask is not None:
            parts.append(str(rng.netmask))
        if rng.lease is not None:
            parts.append(rng.lease)
        ignore = [f"dhcp-host={self.ignore_mac},ignore"] if self.ignore_mac else []
        return [
            f"dhcp-range={','.join(parts)}",
            # The session's probe looks for other servers; our own offer would be noise.
            *ignore,
            # dnsmasq pings every address before its first offer and answers no
            # other DHCP client for up to 3 s meanwhile: a lab booting at once would
            # queue behind it. The range is the admin's boot range, not a shared one.
            "no-ping",
        ]

    def _boot_lines(self) -> list[str]:
        """What each kind of client boots: iPXE the script, PXE ROMs an iPXE binary."""
        cfg = self.cfg
        # A client that runs iPXE already gets the script, not iPXE again (which would
        # loop). The explicit server address matters in proxy mode: iPXE ignores a
        # ProxyDHCP offer without one.
        lines = [f"dhcp-boot=tag:ipxe,{self.boot_url},,{cfg.boottorrent.host_ip}"]
        efi = self.efi_loader
        # UEFI HTTP Boot takes a URL as its boot file, and only from an answer that
        # names HTTPClient as its vendor class too.
        lines += [f"dhcp-boot=tag:httpboot,tag:!ipxe,"
                  f"http://{self.http_server}/uefi/{self.served.http_boot}",
                  "dhcp-option-force=tag:httpboot,60,HTTPClient"]
        if self.dhcp_mode == "proxy":
            # PXE ROMs learn their file from the PXE options (a boot menu of one item,
            # and no pxe-prompt: it boots at once). UEFI ROMs fetch it from port 4011.
            # iPXE must not see the menu (it would run it and load iPXE again); with
            # no pxe-service for it, dnsmasq puts the dhcp-boot line into the offer.
            lines += [
                f'pxe-service=tag:!ipxe,x86PC,"BootTorrent",{self.served.bios}',
                f'pxe-service=tag:!ipxe,BC_EFI,"BootTorrent",{efi}',
                f'pxe-service=tag:!ipxe,x86-64_EFI,"BootTorrent",{efi}',
            ]
        else:
            # Exclusive tag sets, so that the order of the lines cannot matter.
            lines += [
                f"dhcp-boot=tag:!ipxe,tag:efi64,{efi}",
                f"dhcp-boot=tag:!ipxe,tag:!efi64,tag:!httpboot,{self.served.bios}",
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
        self._leases.open()
        if self.cfg.dnsmasq.enable_dhcp:
            write_atomic(self.hook_path, hook_script(self.socket_path), 0o755)
        if self.cfg.dnsmasq.enable_tftp:
            self._fill_tftp_root()
        write_atomic(self.config_path, self.render_config(), 0o644)
        return ChildSpec("dnsmasq", [binary, f"--conf-file={self.config_path}"])

    def _fill_tftp_root(self) -> None:
        served = self.served
        missing = served.missing()
        if missing:
            raise BootTorrentError(f"{missing}; or set dnsmasq.enable_tftp: false")
        root = self.tftp_root
        root.mkdir(mode=0o755, exist_ok=True)
        root.chmod(0o755)
        for name, src in served.files.items():
            # Copies, not links: /run and /usr are different file systems (no hard
            # links), and a copy keeps serving the same loader when a package upgrade
            # replaces the original during a session.
            _install(root / name, src.read_bytes())
        keep = set(served.files)
        if self.cfg.boot.uefi_loader == "shim":
            (root / GRUB_CONFIG).parent.mkdir(mode=0o755, exist_ok=True)
            keep.add(GRUB_CONFIG.split("/")[0])
            if self.phase1_dir is not None:
                self._link_phase1(root / PHASE1_FOLDER, self.phase1_dir)
                keep.add(PHASE1_FOLDER)
        for path in root.iterdir():
            if path.name not in keep:
                # Left from another configuration (e.g. the other EFI loader).
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()

    @staticmethod
    def _link_phase1(folder: Path, phase1_dir: Path) -> None:
        """`folder` holds links to phase-1's kernel and initrd and to QEMU's initramfs:
        links, since they are ~25 MB and a rebuilt one is served at once (a build swaps
        its folder; a link follows the name). One not built yet is a dangling link,
        which GRUB's config does not name."""
        if folder.is_symlink():
            # Earlier versions linked the phase-1 folder itself.
            folder.unlink()
        folder.mkdir(mode=0o755, exist_ok=True)
        folder.chmod(0o755)
        targets = {name: phase1_dir / name for name in BOOT_FILES}
        targets[QEMU_IMAGE] = qemu_image(phase1_dir.parent)
        for name, target in targets.items():
            link = folder / name
            if not link.is_symlink() or link.readlink() != target:
                link.unlink(missing_ok=True)
                link.symlink_to(target)

    def write_grub_config(self, text: str) -> None:
        """GRUB's config (boot.grub.render_grub), read by UEFI machines at their next boot."""
        write_atomic(self.tftp_root / GRUB_CONFIG, text, 0o644)

    # --- lease events --------------------------------------------------------------------

    def close(self) -> None:
        """Close the lease socket and remove it; a running lease_events() ends."""
        self._leases.close()

    def lease_events(self) -> AsyncIterator[LeaseEvent]:
        """Every lease change dnsmasq reports, until close(): LeaseSocket.events().

        Call prepare() first, and start iterating before the child starts, so that
        dnsmasq's replay of known leases ("old") finds room in the socket's queue.
        """
        return self._leases.events()


def _install(dst: Path, data: bytes) -> None:
    """`dst` holds `data`, world-readable; left alone when it already did."""
    try:
        if dst.read_bytes() == data:
            return
    except FileNotFoundError:
        pass
    write_atomic(dst, data, 0o644)
