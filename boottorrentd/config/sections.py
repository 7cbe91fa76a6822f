"""The configuration's sections, key by key: their types, defaults and documentation.

The field order of `Config` is the file's section order, the seed's sections first; the
order of a section's fields is the order of its keys in the default file.
"""

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from boottorrentd.config.checks import (
    CONFIG_VERSION,
    MIN_PIECE_LENGTH,
    check_host_ip,
    check_interface,
    check_os_name,
    check_os_names,
    check_piece_length,
    check_single_line,
    check_tracker_urls,
    check_transmission_settings,
    check_user,
    check_version,
    refuse_dht,
)
from boottorrentd.config.dhcprange import DhcpRange, check_dhcp_range, parse_dhcp_range
from boottorrentd.config.schema import key, section_doc

_PORT: dict[str, Any] = {"minimum": 1, "maximum": 65535}


@dataclass(frozen=True)
class BootSection:
    version: int = key(
        CONFIG_VERSION,
        "Version of this file's format. Required; this daemon reads version 0.",
        required=True,
        check=check_version,
    )
    display_oss: tuple[str, ...] | None = key(
        None,
        "The OSes the client menu shows, by their folder name in the OS library, in menu "
        "order. null shows every OS in the library.",
        example=["debian12", "freedos"],
        check=check_os_names,
    )
    timeout: int = key(
        30,
        "Seconds the client menu waits for a choice before it boots default_os. 0 boots "
        "default_os at once; a negative number waits forever.",
        unit="seconds",
    )
    default_os: str | None = key(
        None,
        "The OS booted when the menu times out, by its folder name. null: no default; the "
        "session needs one when timeout is not negative.",
        example="debian12",
        check=check_os_name,
    )
    seed_time: int = key(
        30,
        "Seconds a client keeps seeding after its download, before it starts the OS, so "
        "that later clients can fetch from it. 0 or less starts the OS at once.",
        unit="seconds",
    )
    host_ip: str = key(
        "192.168.1.1",
        "IPv4 address of this server as the clients see it; the daemon puts it on the "
        "boot interface (dnsmasq.interface) with network.prefix_length.",
        check=check_host_ip,
    )


@dataclass(frozen=True)
class DnsmasqSection:
    enable_dhcp: bool = key(
        True,
        "Answer DHCP on the boot interface. false: another DHCP server on the network "
        "must point PXE clients at this server.",
    )
    interface: str = key(
        "eth0",
        "The network interface the clients boot through.",
        check=check_interface,
    )
    bind_interfaces: bool = key(
        True,
        "Bind dnsmasq to the boot interface only, so that it leaves other networks alone.",
    )
    dhcp_range: str = key(
        "192.168.1.50,192.168.1.150,12h",
        "Addresses handed to clients, in dnsmasq's form start,end[,netmask][,lease]; the "
        "lease is seconds, a number with s/m/h/d/w, or infinite. The addresses must lie "
        "in host_ip's subnet. With dhcp.mode proxy this only names the subnet (a single "
        "address is enough); dhcp.mode auto needs a full range, as it may serve full DHCP.",
        check=check_dhcp_range,
    )
    enable_tftp: bool = key(
        True,
        "Serve the first loader over TFTP to clients whose firmware does not run iPXE yet "
        "(iPXE; for UEFI shim and GRUB, with GRUB's config and phase-1).",
    )


@dataclass(frozen=True)
class OpentrackerSection:
    enable: bool = key(
        True,
        "Run a BitTorrent tracker for the boot swarm (the seed's name; the daemon's own "
        "tracker unless tracker.kind says otherwise). With tracker.kind auto, false here "
        "and hefur.enable false mean no tracker at all; aria2.bt_enable_lpd must then be "
        "true.",
    )
    port: int = key(
        10001,
        "Port of the tracker on host_ip, whichever tracker runs (hefur.port when "
        "hefur.enable chose hefur).",
        **_PORT,
    )


@dataclass(frozen=True)
class HefurSection:
    enable: bool = key(
        False,
        "Use the hefur tracker, on hefur.port (the seed's switch; tracker.kind hefur is "
        "the newer way). The session checks that hefur is installed.",
    )
    port: int = key(10001, "Port of hefur on host_ip when hefur.enable chose it.", **_PORT)


@dataclass(frozen=True)
class TransmissionSection:
    rpc_port: int = key(
        9091,
        "Accepted for compatibility and ignored: the daemon runs its seeder with a random "
        "RPC port on localhost.",
        **_PORT,
    )
    dht_enabled: bool = key(
        False,
        "DHT in the server's seeder. Must stay false: DHT would announce the boot swarm "
        "beyond the lab.",
        check=refuse_dht,
    )
    lpd_enabled: bool = key(
        False,
        "Local peer discovery in the server's seeder (announces on the boot LAN), with "
        "either seeder.engine.",
    )
    settings: Mapping[str, Any] | None = key(
        None,
        "More settings.json keys for the server's transmission-daemon, merged over the "
        "ones the daemon writes; see transmission's documentation for the keys. Keys the "
        "seeder sets itself (rpc-*, peer-port, bind addresses, download-dir, ...) are "
        "refused; set their own keys here instead where there are some. null: none.",
        example={"cache-size-mb": 64},
        check=check_transmission_settings,
    )


@dataclass(frozen=True)
class Aria2Section:
    bt_enable_lpd: bool = key(
        False,
        "Local peer discovery between clients on the boot LAN. Needed when there is no tracker.",
    )
    console_log_level: str = key(
        "notice",
        "How much aria2 prints on the client's console.",
        choices=("debug", "info", "notice", "warn", "error"),
    )
    enable_dht: bool = key(
        False,
        "IPv4 DHT on the clients. Must stay false: DHT would announce the boot swarm "
        "beyond the lab.",
        check=refuse_dht,
    )
    enable_dht6: bool = key(
        False, "IPv6 DHT on the clients. Must stay false, as enable_dht.", check=refuse_dht
    )
    check_integrity: bool = key(
        True, "Verify every downloaded piece against the torrent's hashes."
    )


@dataclass(frozen=True)
class NetworkSection:
    prefix_length: int = key(
        24,
        "Prefix length of host_ip on the boot interface: 24 means netmask 255.255.255.0.",
        minimum=8,
        maximum=30,
    )


@dataclass(frozen=True)
class DhcpSection:
    mode: str = key(
        "auto",
        "auto: before it starts, the session looks for another DHCP server on the boot "
        "interface (one DHCPDISCOVER, no lease taken); with none it serves full DHCP, beside "
        "one it serves proxyDHCP, and the session's status names that server. full: dnsmasq "
        "hands out addresses from dnsmasq.dhcp_range; the session refuses to start when "
        "another DHCP server answers. proxy: proxyDHCP beside an existing DHCP server, which "
        "keeps handing out the addresses (dhcp_range then only names the subnet); no probe. "
        "While it serves full DHCP, the session keeps probing and turns degraded when "
        "another server appears.",
        choices=("auto", "full", "proxy"),
    )
    probe_seconds: int = key(
        4,
        "How long a probe for other DHCP servers listens for their offers. Servers may "
        "first ping the address they offer (dnsmasq for 3 s, ISC dhcpd for 1 s), so a "
        "shorter time can miss them; every session start in mode auto or full waits this "
        "long.",
        minimum=1,
        maximum=60,
        unit="seconds",
    )
    watch_seconds: int = key(
        15,
        "While the session serves full DHCP, seconds between two probes for other DHCP "
        "servers. A server seen makes the session degraded; it counts as gone after two "
        "probes without it.",
        minimum=1,
        unit="seconds",
    )


@dataclass(frozen=True)
class TrackerSection:
    kind: str = key(
        "auto",
        "Which tracker runs. auto: the daemon's own tracker (boottorrentd-tracker), or "
        "hefur when hefur.enable is true (none when opentracker.enable and hefur.enable "
        "are both false). builtin: the daemon's own tracker. opentracker, hefur: those "
        "programs, when installed. none: clients find peers by local peer discovery only "
        "(needs aria2.bt_enable_lpd). The tracker listens on opentracker.port, or "
        "hefur.port when hefur.enable chose it.",
        choices=("auto", "builtin", "hefur", "opentracker", "none"),
    )
    announce_interval: int = key(
        15,
        "Seconds between a client's announces to the tracker: lower finds new peers "
        "sooner, at the cost of more tracker traffic.",
        minimum=5,
        unit="seconds",
    )


@dataclass(frozen=True)
class SeederSection:
    engine: str = key(
        "libtorrent",
        "The program that seeds the library to the clients. libtorrent: "
        "libtorrent-rasterbar (python3-libtorrent) in the daemon's own child program "
        "boottorrentd-ltseed; one machine alone gets the OS about as fast as over HTTP, and "
        "sixteen faster than with transmission (bench/README.md). transmission: "
        "transmission-daemon (its own keys are in the transmission section). Both verify "
        "every OS before they seed it and never write into the library.",
        choices=("libtorrent", "transmission"),
    )
    # Not transmission's own 51413: Debian's transmission-daemon service may hold it.
    peer_port: int = key(51420, "BitTorrent port of the server's seeder on host_ip.", **_PORT)
    upload_limit_kbps: int = key(
        0, "Upload limit of the server's seeder in kB/s; 0 is unlimited.", minimum=0
    )
    upload_slots: int = key(
        14,
        "How many clients the server's seeder sends to at once (plus one it tries out); "
        "the others get the OS from those clients.",
        minimum=1,
        maximum=1000,
    )


@dataclass(frozen=True)
class HttpSection:
    port: int = key(
        8080,
        "Port of the boot HTTP server on host_ip (iPXE scripts, phase-1 images, torrents, "
        "progress reports).",
        **_PORT,
    )


@dataclass(frozen=True)
class ClientSection:
    extra_cmdline: str = key(
        "",
        "Appended to the phase-1 kernel command line, e.g. console=ttyS0 for a serial console.",
        example="console=ttyS0",
        check=check_single_line,
    )
    report_interval: int = key(
        1,
        "Seconds between a client's progress reports to the daemon.",
        minimum=1,
        unit="seconds",
    )
    allow_disk_writes: bool = key(
        False,
        "Let clients write OSes of method image over their disks (re-imaging). false: "
        "such an OS cannot be assigned, and a client that boots it stops before it "
        "writes anything and reports why.",
    )


@dataclass(frozen=True)
class LoaderSection:
    uefi_loader: str = key(
        "shim",
        "The first loader UEFI x86-64 machines get from their firmware's PXE or HTTP boot. "
        "shim: Debian's signed chain (shim, then GRUB, then the Debian-signed phase-1 "
        "kernel), which boots with Secure Boot on or off. ipxe: iPXE (snponly.efi), which "
        "a machine with Secure Boot on refuses. UEFI HTTP Boot gets shim too when GRUB "
        "boots by HTTP (Debian 13's GRUB does, Debian 12's does not), else iPXE.",
        choices=("shim", "ipxe"),
    )
    grub_image: str | None = key(
        None,
        "The signed GRUB network image served after shim, as a file path. null: Debian's "
        "(/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed). On a Debian 12 server, "
        "Debian 13's image (from its grub-efi-amd64-signed package) lets Secure Boot "
        "machines boot by UEFI HTTP Boot too.",
        example="/srv/grub/grubnetx64.efi.signed",
    )


@dataclass(frozen=True)
class ChildrenSection:
    user: str | None = key(
        None,
        "The user the daemon's children (dnsmasq, the tracker, the seeder) run as; it "
        "must be able to read the OS library. null: the package's system user "
        "boottorrent, or the daemon's own user where that does not exist. Under the "
        "packaged unit the daemon must be in this user's group (SupplementaryGroups=; "
        "the unit names boottorrent's) to share the seed engine's folder with it. A "
        "seed file's dnsmasq.user is read as this key.",
        example="nobody",
        check=check_user,
    )


@dataclass(frozen=True)
class SwarmSection:
    peer_exchange: bool = key(
        True,
        "Peer exchange (PEX) in the boot swarm, in the server's seeder and in the clients: "
        "peers tell each other about further peers. A seed file's "
        "aria2.enable_peer_exchange is read as this key.",
    )
    role: str = key(
        "full",
        "What this server does in the boot swarm. full: DHCP, TFTP, the boot HTTP server, "
        "the tracker and the seed. seed: only the tracker and the seed, beside a full "
        "server that boots the machines (several servers, one swarm): it needs the same "
        "OSes in its library (same files give the same torrents) and the full server's "
        "tracker in swarm.other_trackers.",
        choices=("full", "seed"),
    )
    other_trackers: tuple[str, ...] = key(
        (),
        "The announce URLs of the other boot servers' trackers on this LAN, e.g. "
        "http://10.0.0.2:10001/announce. The torrents this server hands out list them after "
        "its own tracker (BEP 12 announce-list: a client moves on to the next one when a "
        "tracker stops answering), and its seed announces to every one, so that machines "
        "find the seeds of all servers.",
        check=check_tracker_urls,
        example=["http://10.0.0.2:10001/announce"],
    )


@dataclass(frozen=True)
class LibrarySection:
    piece_length: int | str = key(
        "auto",
        "Piece length of the torrents the library makes when an OS is added, in bytes: a "
        "power of two. auto: the smallest power of two from 128 KiB that gives at most "
        "2000 pieces, at most 16 MiB. Torrents made before keep theirs.",
        choices=("auto",),
        minimum=MIN_PIECE_LENGTH,
        unit="bytes",
        example=1048576,
        check=check_piece_length,
    )

    @property
    def fixed_piece_length(self) -> int | None:
        """piece_length in bytes, or None when the library chooses it by size (auto)."""
        return self.piece_length if isinstance(self.piece_length, int) else None


@dataclass(frozen=True)
class Config:
    """The whole daemon configuration; its field order is the file's section order."""

    boottorrent: BootSection = field(
        metadata=section_doc(
            "The boot session: which OSes the clients' menu offers and how the clients "
            "reach this server. Required, with version: 0.",
            required=True,
        )
    )
    dnsmasq: DnsmasqSection = field(
        default_factory=DnsmasqSection,
        metadata=section_doc("DHCP and TFTP for the PXE clients, served by dnsmasq."),
    )
    opentracker: OpentrackerSection = field(
        default_factory=OpentrackerSection,
        metadata=section_doc("The BitTorrent tracker that introduces the clients to each "
                             "other (the seed's section name; tracker.kind chooses which)."),
    )
    aria2: Aria2Section = field(
        default_factory=Aria2Section,
        metadata=section_doc("BitTorrent options of the clients, which download with aria2."),
    )
    hefur: HefurSection = field(
        default_factory=HefurSection,
        metadata=section_doc("The hefur tracker, an alternative to the daemon's own."),
    )
    transmission: TransmissionSection = field(
        default_factory=TransmissionSection,
        metadata=section_doc("The server's seeder, transmission-daemon."),
    )
    network: NetworkSection = field(
        default_factory=NetworkSection,
        metadata=section_doc("The boot interface's address."),
    )
    dhcp: DhcpSection = field(
        default_factory=DhcpSection,
        metadata=section_doc("How this server takes part in DHCP."),
    )
    tracker: TrackerSection = field(
        default_factory=TrackerSection,
        metadata=section_doc("Tracker choice and timing."),
    )
    seeder: SeederSection = field(
        default_factory=SeederSection,
        metadata=section_doc("The server's seeder."),
    )
    http: HttpSection = field(
        default_factory=HttpSection,
        metadata=section_doc("The boot HTTP server."),
    )
    client: ClientSection = field(
        default_factory=ClientSection,
        metadata=section_doc("The phase-1 client environment."),
    )
    boot: LoaderSection = field(
        default_factory=LoaderSection,
        metadata=section_doc("What the machines' firmware loads first."),
    )
    children: ChildrenSection = field(
        default_factory=ChildrenSection,
        metadata=section_doc("The programs the daemon runs for a boot session."),
    )
    swarm: SwarmSection = field(
        default_factory=SwarmSection,
        metadata=section_doc("BitTorrent behaviour of the whole boot swarm."),
    )
    library: LibrarySection = field(
        default_factory=LibrarySection,
        metadata=section_doc("The OS library."),
    )

    @property
    def tracker_kind(self) -> str:
        """The effective tracker: "auto" (the daemon's own), "builtin", "hefur",
        "opentracker" or "none"."""
        kind = self.tracker.kind
        if kind in ("builtin", "hefur", "none"):
            return kind
        if self.hefur.enable:
            # parse_config refuses hefur.enable beside tracker.kind opentracker.
            return "hefur"
        if not self.opentracker.enable:
            return "none"
        return kind

    @property
    def tracker_port(self) -> int:
        """The tracker's port: hefur.port when hefur.enable chose hefur, else opentracker.port."""
        if self.hefur.enable and self.tracker_kind == "hefur":
            return self.hefur.port
        return self.opentracker.port

    @property
    def dhcp_range(self) -> DhcpRange:
        """dnsmasq.dhcp_range, parsed."""
        return parse_dhcp_range(self.dnsmasq.dhcp_range)

    @property
    def boot_network(self) -> ipaddress.IPv4Interface:
        """host_ip with network.prefix_length, as it goes on the boot interface."""
        return ipaddress.IPv4Interface(f"{self.boottorrent.host_ip}/{self.network.prefix_length}")
