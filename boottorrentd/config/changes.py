"""What a changed configuration file means for a running boot session.

`diff(old, new)` sorts the keys that differ into those a running session takes at once
and those that need the session restarted, by one table (`APPLY`) with a row for every
key: nothing else decides it. `apply_live(running, new)` is the configuration a running
session goes on with: `new`'s live keys over `running`'s, so that it never claims
settings the session does not use.

A key is live when only the boot HTTP server reads it per request (the menu, the
client's options in boot.json) or when no part of the session reads it at all; it needs
a restart when a child's command line or configuration file, the boot address or a
listening socket was made from it. A key that a rule of rules.py ties to a restart key
needs a restart too, so that a live change can never pair with the running session's
older value into a combination the file check would refuse.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum

from boottorrentd.config.sections import Config


class Apply(StrEnum):
    LIVE = "live"  # the next boot request uses it
    RESTART = "restart"  # the session uses it from its next start


L, R = Apply.LIVE, Apply.RESTART

APPLY: dict[str, Apply] = {
    "boottorrent.version": L,
    "boottorrent.display_oss": L,
    "boottorrent.timeout": L,
    "boottorrent.default_os": L,
    "boottorrent.seed_time": L,
    "boottorrent.host_ip": R,  # the boot address, every listener, dnsmasq's boot URL
    "dnsmasq.enable_dhcp": R,
    "dnsmasq.interface": R,
    "dnsmasq.bind_interfaces": R,
    "dnsmasq.dhcp_range": R,
    "dnsmasq.enable_tftp": R,
    "opentracker.enable": R,
    "opentracker.port": R,
    # The clients' option, but rules.py pairs it with the tracker choice.
    "aria2.bt_enable_lpd": R,
    "aria2.console_log_level": L,
    "aria2.enable_dht": L,
    "aria2.enable_dht6": L,
    "aria2.check_integrity": L,
    "hefur.enable": R,
    "hefur.port": R,
    "transmission.rpc_port": R,
    "transmission.dht_enabled": R,
    "transmission.lpd_enabled": R,
    "transmission.settings": R,
    "network.prefix_length": R,
    "dhcp.mode": R,
    "boot.uefi_loader": R,  # dnsmasq hands the loader out
    "boot.grub_image": R,  # dnsmasq serves it over TFTP
    "dhcp.probe_seconds": R,  # the probe runs at the start only
    "dhcp.watch_seconds": R,
    "tracker.kind": R,
    # The tracker's own reply carries it as well as the clients' options.
    "tracker.announce_interval": R,
    "seeder.engine": R,
    "seeder.peer_port": R,
    "seeder.upload_limit_kbps": R,
    "seeder.upload_slots": R,
    "http.port": R,
    "client.extra_cmdline": L,
    "client.report_interval": L,
    "client.allow_disk_writes": L,
    "children.user": R,
    "swarm.peer_exchange": R,  # the seed engine's command line
    "swarm.role": R,  # which children the session starts
    "swarm.other_trackers": R,  # the served torrents and the seed's
    "library.piece_length": L,  # read by add-os, not by the session
}


def keys(cfg: Config) -> dict[str, object]:
    """Every key of `cfg` by its dotted name."""
    return {
        f"{section.name}.{f.name}": getattr(getattr(cfg, section.name), f.name)
        for section in dataclasses.fields(cfg)
        for f in dataclasses.fields(getattr(cfg, section.name))
    }


@dataclass(frozen=True)
class Changes:
    """The dotted keys that differ, by when they apply, each in the file's order."""

    live: tuple[str, ...] = ()
    restart: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.live or self.restart)


def diff(old: Config, new: Config) -> Changes:
    before, after = keys(old), keys(new)
    changed = [k for k in after if before[k] != after[k]]
    return Changes(live=tuple(k for k in changed if APPLY[k] is Apply.LIVE),
                   restart=tuple(k for k in changed if APPLY[k] is Apply.RESTART))


def apply_live(running: Config, new: Config) -> Config:
    """`running` with `new`'s value of every live key."""
    sections = {}
    for section in dataclasses.fields(running):
        old_part, new_part = getattr(running, section.name), getattr(new, section.name)
        live = {f.name: getattr(new_part, f.name) for f in dataclasses.fields(new_part)
                if APPLY[f"{section.name}.{f.name}"] is Apply.LIVE}
        sections[section.name] = dataclasses.replace(old_part, **live)
    return Config(**sections)
