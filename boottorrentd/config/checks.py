"""Checks of single values, beyond their type.

A check gets an already type-checked value and returns what is wrong with it, including
the fix, or None when the value is fine.
"""

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from boottorrentd.names import name_fix

Check = Callable[[Any], str | None]

CONFIG_VERSION = 0
MIN_PIECE_LENGTH = 16 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_version(value: int) -> str | None:
    if value == CONFIG_VERSION:
        return None
    return (
        f"this daemon reads version {CONFIG_VERSION}, got {value}; the file was written for "
        f"another BootTorrent release: rewrite it for version {CONFIG_VERSION} (start from "
        '`boottorrentd --print-default-config`) and set "version: 0"'
    )


def check_os_name(value: str) -> str | None:
    # The library's own rule: a name it would refuse could never be booted.
    fix = name_fix(value)
    if fix:
        return f"{value!r} is not an OS name; name a folder in the OS library: {fix}"
    return None


def check_os_names(value: tuple[str, ...]) -> str | None:
    for name in value:
        problem = check_os_name(name)
        if problem:
            return problem
    twice = sorted({name for name in value if value.count(name) > 1})
    if twice:
        return f"lists {', '.join(twice)} more than once; list each OS once"
    return None


def check_host_ip(value: str) -> str | None:
    try:
        ip = ipaddress.IPv4Address(value)
    except ValueError:
        return f'expected an IPv4 address, got {value!r}; write e.g. "host_ip: 192.168.1.1"'
    bad = None
    if ip.is_unspecified:
        bad = "the unspecified address"
    elif ip == ipaddress.IPv4Address("255.255.255.255"):
        bad = "the broadcast address"
    elif ip.is_multicast:
        bad = "a multicast address"
    elif ip.is_loopback:
        bad = "a loopback address, which clients cannot reach"
    if bad:
        return (
            f"{value} is {bad}; give the unicast address the clients reach this server at "
            'on the boot network, e.g. "host_ip: 192.168.1.1"'
        )
    return None


def check_interface(value: str) -> str | None:
    # The kernel's own rule (dev_valid_name), plus ':', which would make an alias label.
    if (
        not 1 <= len(value) <= 15
        or value in (".", "..")
        or re.search(r"[/:\s]", value)
        or _CONTROL.search(value)
    ):
        return (
            f"{value!r} is not a network interface name (1 to 15 characters, no '/', ':' or "
            'spaces); see `ip link` for the names here and write e.g. "interface: eth0"'
        )
    return None


def check_user(value: str) -> str | None:
    if not value or re.search(r"[\s:/]", value) or _CONTROL.search(value):
        return (
            f"{value!r} is not a user name; write an existing system user, e.g. "
            '"user: nobody", or "user: null" for the default user'
        )
    return None


def check_single_line(value: str) -> str | None:
    """Refuse line breaks: values end up in iPXE scripts and command lines, one per line."""
    if _CONTROL.search(value):
        return "contains a line break or other control character; write it on one line"
    return None


def refuse_dht(value: bool) -> str | None:
    if value:
        return (
            "DHT is refused: it would announce the boot swarm, and the machines in it, "
            "beyond the lab; write false (peers find each other through the tracker and "
            "local peer discovery)"
        )
    return None


def check_tracker_urls(value: tuple[str, ...]) -> str | None:
    for url in value:
        if not re.fullmatch(r"http://[^/\s:]+(:\d{1,5})?/\S*", url):
            return (f"{url!r} is not a tracker's announce URL; write it as "
                    "http://HOST:PORT/announce, the other server's host_ip and tracker port")
    return None


def check_piece_length(value: int | str) -> str | None:
    # The type check let through only "auto" or a whole number of at least 16 KiB.
    if isinstance(value, int) and value & (value - 1):
        lower = 1 << (value.bit_length() - 1)
        return (
            f"{value} is not a power of two; BitTorrent pieces are, e.g. {lower} or "
            f"{lower * 2}, or write \"piece_length: auto\""
        )
    return None


# settings.json keys the seeder sets itself, and what to do instead of setting them.
_SEEDER_OWNS = {
    "peer-port": "set seeder.peer_port instead",
    "peer-port-random-on-start": "the seeder listens on seeder.peer_port",
    "bind-address-ipv4": "the seeder binds boottorrent.host_ip",
    "bind-address-ipv6": "the seeder stays off IPv6 networks",
    "download-dir": "the seeder serves the OS library",
    "incomplete-dir": "the seeder serves the OS library",
    "incomplete-dir-enabled": "the seeder serves the OS library",
    "watch-dir": "the daemon adds the library's torrents itself",
    "watch-dir-enabled": "the daemon adds the library's torrents itself",
    "start-added-torrents": "the daemon starts a torrent only once its files are checked",
    "dht-enabled": "DHT would announce the boot swarm beyond the lab",
    "lpd-enabled": "set transmission.lpd_enabled instead",
    "pex-enabled": "set swarm.peer_exchange instead",
    "upload-slots-per-torrent": "set seeder.upload_slots instead",
    "speed-limit-up": "set seeder.upload_limit_kbps instead",
    "speed-limit-up-enabled": "set seeder.upload_limit_kbps instead",
}


def _seeder_owns(key: str) -> str | None:
    if key.startswith("rpc-"):
        return "the daemon's private RPC channel to the seeder is new every session"
    return _SEEDER_OWNS.get(key)


def check_transmission_settings(value: Mapping[str, Any]) -> str | None:
    for key, setting in value.items():
        why = _seeder_owns(key)
        if why:
            return f"{key!r} is the seeder's own setting ({why}); remove it from here"
        if setting is None or isinstance(setting, dict | list):
            return (
                f"{key!r}: expected a number, a string or true/false as in transmission's "
                f'settings.json, got {setting!r}; write e.g. "{key}: 1"'
            )
    return None
