"""Rules that involve more than one key; each raises a ConfigError naming the key to change."""

from boottorrentd.config.dhcprange import RANGE_EXAMPLE
from boottorrentd.config.sections import Config
from boottorrentd.errors import ConfigError


def check_rules(cfg: Config, source: str) -> None:
    for rule in (_default_os_is_shown, _trackers_agree, _peers_can_meet, _host_ip_is_a_host,
                 _dhcp_range_fits, _ports_differ):
        rule(cfg, source)


def _default_os_is_shown(cfg: Config, source: str) -> None:
    boot = cfg.boottorrent
    if (
        boot.display_oss is not None
        and boot.default_os is not None
        and boot.default_os not in boot.display_oss
    ):
        raise ConfigError(
            source,
            "boottorrent.default_os",
            f"{boot.default_os!r} is not in boottorrent.display_oss "
            f"({', '.join(boot.display_oss) or 'empty'}); add it there or pick one of those",
        )


def _trackers_agree(cfg: Config, source: str) -> None:
    kind = cfg.tracker.kind
    if cfg.hefur.enable and kind in ("builtin", "opentracker", "none"):
        raise ConfigError(
            source,
            "hefur.enable",
            f'true contradicts tracker.kind: {kind}; set "hefur.enable: false" or '
            '"tracker.kind: hefur"',
        )


def _peers_can_meet(cfg: Config, source: str) -> None:
    if cfg.tracker_kind != "none" or cfg.aria2.bt_enable_lpd:
        return
    if cfg.tracker.kind == "none":
        key, off, tracker_on = "tracker.kind", "tracker.kind is none", "tracker.kind: auto"
    else:
        key, off = "opentracker.enable", "opentracker.enable and hefur.enable are false"
        tracker_on = "opentracker.enable: true"
    raise ConfigError(
        source,
        key,
        f"no peer discovery at all: {off} and aria2.bt_enable_lpd is false, so the "
        f'clients could not find each other; set "{tracker_on}" (a tracker) or '
        '"aria2.bt_enable_lpd: true" (local peer discovery)',
    )


def _host_ip_is_a_host(cfg: Config, source: str) -> None:
    net = cfg.boot_network
    if net.ip in (net.network.network_address, net.network.broadcast_address):
        raise ConfigError(
            source,
            "boottorrent.host_ip",
            f"{net.ip} is the {'network' if net.ip == net.network.network_address else 'broadcast'}"
            f" address of its subnet {net.network} (network.prefix_length "
            f"{net.network.prefixlen}); pick a host address in it, e.g. "
            f"{net.network.network_address + 1}",
        )


def _dhcp_range_fits(cfg: Config, source: str) -> None:
    net, rng = cfg.boot_network, cfg.dhcp_range
    if cfg.dhcp.mode != "proxy" and rng.end is None:
        raise ConfigError(
            source,
            "dnsmasq.dhcp_range",
            f"{cfg.dnsmasq.dhcp_range!r} has no end address, which only proxyDHCP allows "
            f"(dhcp.mode {cfg.dhcp.mode} may serve full DHCP); "
            f'{RANGE_EXAMPLE}, or set "dhcp.mode: proxy"',
        )
    outside = [ip for ip in (rng.start, rng.end) if ip is not None and ip not in net.network]
    if outside:
        raise ConfigError(
            source,
            "dnsmasq.dhcp_range",
            f"{outside[0]} is outside {net.network}, the boot subnet of boottorrent.host_ip "
            f"{net.ip} with network.prefix_length {net.network.prefixlen}; move the range "
            "into that subnet, or change host_ip or prefix_length",
        )


def _ports_differ(cfg: Config, source: str) -> None:
    ports = [("http.port", cfg.http.port), ("seeder.peer_port", cfg.seeder.peer_port)]
    if cfg.tracker_kind != "none":
        hefur_port = cfg.hefur.enable and cfg.tracker_kind == "hefur"
        ports.insert(0, ("hefur.port" if hefur_port else "opentracker.port", cfg.tracker_port))
    for i, (key, port) in enumerate(ports):
        for other, other_port in ports[:i]:
            if port == other_port:
                raise ConfigError(
                    source,
                    key,
                    f"{port} is also {other}; every server on host_ip needs its own port: "
                    "pick another one",
                )
