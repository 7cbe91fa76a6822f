"""The daemon's configuration, /etc/boottorrent/boottorrent.yaml.

The file is a superset of the seed project's Boottorrent.yaml: every seed key keeps its
name and meaning, new settings live only in new sections. The nested frozen dataclasses
below are the single source of truth: the validator, the commented default file
(`default_config_text`) and the reference documentation all read their field types,
defaults and `metadata` (doc, required, range, choices, check), so none of them can drift
from the others.

Every problem is a `ConfigError` naming the dotted key, what is wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import re
import textwrap
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from boottorrentd.errors import ConfigError

DEFAULT_PATH = Path("/etc/boottorrent/boottorrent.yaml")
EXAMPLE_PATH = Path("/usr/share/doc/boottorrent/boottorrent.yaml")
DEFAULT_SOURCE = "boottorrent.yaml"
CONFIG_VERSION = 0

# A check gets an already type-checked value and returns what is wrong with it, including
# the fix, or None when the value is fine.
Check = Callable[[Any], str | None]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# --- shared helpers (osspec uses them too) ---------------------------------------------------


class _DuplicateKeyError(yaml.MarkedYAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """safe_load, except that a key given twice is an error.

    Plain YAML keeps the last of two equal keys, so a second `dnsmasq:` section would
    silently discard the first one's settings.
    """


def _construct_mapping_once(loader: _StrictLoader, node: yaml.MappingNode) -> dict:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            continue  # construct_mapping reports the unhashable key with its position
        if first is not None:
            raise _DuplicateKeyError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {key!r} a second time (first on line {first.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_once
)


def load_yaml(text: str, source: str) -> object:
    """Parse YAML like yaml.safe_load; syntax errors become ConfigErrors with line and column."""
    try:
        # _StrictLoader is a SafeLoader: no Python objects are built from the text.
        return yaml.load(text, Loader=_StrictLoader)
    except _DuplicateKeyError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(
            source, "", f"{where}{exc.problem}; keep only one of them (merge their keys)"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        what = f"{problem} ({context})" if context else problem
        raise ConfigError(
            source,
            "",
            f"{where}invalid YAML: {what}; fix the syntax there (indent keys under their "
            "section with spaces, not tabs, and quote values that contain ': ' or ' #')",
        ) from None


def did_you_mean(word: object, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest known word, or ''."""
    matches = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def describe(value: object) -> str:
    """A short description of a YAML value for 'got ...' in messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    return str(value)


_PLAIN = re.compile(r"[A-Za-z0-9_./][A-Za-z0-9_./:+@=-]*")


def yaml_scalar(value: object) -> str:
    """Render a value as YAML, quoting strings only when plain YAML would misread them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.fullmatch(text) and yaml.safe_load(text) == text:
        return text
    # A JSON string is a valid double-quoted YAML scalar.
    return json.dumps(text, ensure_ascii=False)


def comment(text: str, indent: str = "", width: int = 78) -> list[str]:
    """`# `-prefixed lines of `text`, wrapped to `width` columns.

    A blank line in `text` separates paragraphs, a single newline starts a new line.
    """
    lines: list[str] = []
    for paragraph in text.split("\n\n"):
        if lines:
            lines.append(f"{indent}#")
        for part in paragraph.split("\n"):
            wrapped = textwrap.wrap(" ".join(part.split()), width - len(indent) - 2)
            lines.extend(f"{indent}# {line}" for line in wrapped)
    return lines


# --- validators for single values ------------------------------------------------------------


def _key(
    default: Any,
    doc: str,
    *,
    required: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
    choices: tuple[str, ...] = (),
    unit: str = "",
    example: Any = None,
    check: Check | None = None,
) -> Any:
    """A config key: its default and everything the validator and the docs need."""
    meta = {
        "doc": doc,
        "required": required,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "unit": unit,
        "example": default if example is None else example,
        "check": check,
    }
    return field(default=default, metadata=meta)


def _check_version(value: int) -> str | None:
    if value == CONFIG_VERSION:
        return None
    return (
        f"this daemon reads version {CONFIG_VERSION}, got {value}; the file was written for "
        f"another BootTorrent release: rewrite it for version {CONFIG_VERSION} (start from "
        '`boottorrentd --print-default-config`) and set "version: 0"'
    )


def _check_os_name(value: str) -> str | None:
    if not value or value in (".", "..") or "/" in value or _CONTROL.search(value):
        return (
            f"{value!r} is not an OS name; use the name of a folder in the OS library "
            "(no '/', not '.' or '..'), e.g. debian12"
        )
    return None


def _check_os_names(value: tuple[str, ...]) -> str | None:
    for name in value:
        problem = _check_os_name(name)
        if problem:
            return problem
    twice = sorted({name for name in value if value.count(name) > 1})
    if twice:
        return f"lists {', '.join(twice)} more than once; list each OS once"
    return None


def _check_host_ip(value: str) -> str | None:
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


def _check_interface(value: str) -> str | None:
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


def _check_user(value: str) -> str | None:
    if not value or re.search(r"[\s:/]", value) or _CONTROL.search(value):
        return (
            f"{value!r} is not a user name; write an existing system user, e.g. "
            '"user: nobody", or "user: null" for the daemon\'s own user'
        )
    return None


def check_single_line(value: str) -> str | None:
    """Refuse line breaks: values end up in iPXE scripts and command lines, one per line."""
    if _CONTROL.search(value):
        return "contains a line break or other control character; write it on one line"
    return None


def _refuse_dht(value: bool) -> str | None:
    if value:
        return (
            "DHT is refused: it would announce the boot swarm, and the machines in it, "
            "beyond the lab; write false (peers find each other through the tracker and "
            "local peer discovery)"
        )
    return None


_LEASE = re.compile(r"(\d+[smhdw]?|infinite)", re.IGNORECASE)
_RANGE_FORM = '"start,end[,netmask][,lease]"'
_RANGE_EXAMPLE = "write e.g. 'dhcp_range: \"192.168.1.50,192.168.1.150,12h\"'"


@dataclass(frozen=True)
class DhcpRange:
    """dnsmasq's dhcp-range value, as far as BootTorrent uses it.

    `end` is None only for a proxyDHCP range, which names just the subnet.
    """

    start: ipaddress.IPv4Address
    end: ipaddress.IPv4Address | None = None
    netmask: ipaddress.IPv4Address | None = None
    lease: str | None = None


def parse_dhcp_range(text: str) -> DhcpRange:
    """Parse dnsmasq's `start,end[,netmask][,lease]` (or a lone subnet address for proxyDHCP).

    Raises ValueError with a message that says what is wrong and how to write it.
    """
    parts = [part.strip() for part in text.split(",")]
    if parts and parts[-1].lower() == "proxy":
        # dnsmasq's own proxyDHCP form; the daemon adds that keyword itself.
        parts.pop()

    def bad(why: str) -> ValueError:
        return ValueError(
            f"expected dnsmasq's form {_RANGE_FORM}, got {text!r}: {why}; {_RANGE_EXAMPLE}"
        )

    def address(part: str, what: str) -> ipaddress.IPv4Address:
        try:
            return ipaddress.IPv4Address(part)
        except ValueError:
            raise bad(f"the {what} {part!r} is not an IPv4 address") from None

    if not parts or not parts[0]:
        raise bad("no start address")
    if parts[0].startswith(("tag:", "set:")):
        raise bad("tags are not supported here")
    start = address(parts[0], "start address")
    rest = parts[1:]
    lease = None
    # Addresses have dots, lease times never do.
    if rest and "." not in rest[-1]:
        lease = rest.pop()
        if not _LEASE.fullmatch(lease):
            raise bad(
                f"the lease time {lease!r} is not a number of seconds, a number with "
                "s/m/h/d/w, or 'infinite'"
            )
    if len(rest) > 2:
        raise bad("too many addresses")
    end = address(rest[0], "end address") if rest else None
    netmask = address(rest[1], "netmask") if len(rest) > 1 else None
    if end is not None and end < start:
        raise bad(f"the start {start} is after the end {end}")
    if netmask is not None:
        try:
            ipaddress.IPv4Network(f"0.0.0.0/{netmask}")
        except ValueError:
            raise bad(f"{netmask} is not a netmask") from None
    if end is None and lease is not None:
        raise bad("a lease time needs an end address")
    return DhcpRange(start, end, netmask, lease)


def _check_dhcp_range(value: str) -> str | None:
    try:
        parse_dhcp_range(value)
    except ValueError as exc:
        return str(exc)
    return None


# --- the sections ----------------------------------------------------------------------------

_PORT = {"minimum": 1, "maximum": 65535}


@dataclass(frozen=True)
class BootSection:
    version: int = _key(
        CONFIG_VERSION,
        "Version of this file's format. Required; this daemon reads version 0.",
        required=True,
        check=_check_version,
    )
    display_oss: tuple[str, ...] | None = _key(
        None,
        "The OSes the client menu shows, by their folder name in the OS library, in menu "
        "order. null shows every OS in the library.",
        example=["debian12", "freedos"],
        check=_check_os_names,
    )
    timeout: int = _key(
        30,
        "Seconds the client menu waits for a choice before it boots default_os. 0 boots "
        "default_os at once; a negative number waits forever.",
        unit="seconds",
    )
    default_os: str | None = _key(
        None,
        "The OS booted when the menu times out, by its folder name. null: no default; the "
        "session needs one when timeout is not negative.",
        example="debian12",
        check=_check_os_name,
    )
    seed_time: int = _key(
        30,
        "Seconds a client keeps seeding after its download, before it starts the OS, so "
        "that later clients can fetch from it. 0 or less starts the OS at once.",
        unit="seconds",
    )
    host_ip: str = _key(
        "192.168.1.1",
        "IPv4 address of this server as the clients see it; the daemon puts it on the "
        "boot interface (dnsmasq.interface) with network.prefix_length.",
        check=_check_host_ip,
    )


@dataclass(frozen=True)
class DnsmasqSection:
    enable_dhcp: bool = _key(
        True,
        "Answer DHCP on the boot interface. false: another DHCP server on the network "
        "must point PXE clients at this server.",
    )
    user: str | None = _key(
        None,
        "The user dnsmasq drops to after start. null: the daemon's own system user.",
        example="nobody",
        check=_check_user,
    )
    interface: str = _key(
        "eth0",
        "The network interface the clients boot through.",
        check=_check_interface,
    )
    bind_interfaces: bool = _key(
        True,
        "Bind dnsmasq to the boot interface only, so that it leaves other networks alone.",
    )
    dhcp_range: str = _key(
        "192.168.1.50,192.168.1.150,12h",
        "Addresses handed to clients, in dnsmasq's form start,end[,netmask][,lease]; the "
        "lease is seconds, a number with s/m/h/d/w, or infinite. The addresses must lie "
        "in host_ip's subnet. With dhcp.mode proxy this only names the subnet (a single "
        "address is enough).",
        check=_check_dhcp_range,
    )
    enable_tftp: bool = _key(
        True,
        "Serve the iPXE loader over TFTP to clients whose firmware does not run iPXE yet.",
    )


@dataclass(frozen=True)
class OpentrackerSection:
    enable: bool = _key(
        True,
        "Run a BitTorrent tracker for the boot swarm. With tracker.kind auto, false here "
        "and hefur.enable false mean no tracker at all; aria2.bt_enable_lpd must then be "
        "true.",
    )
    port: int = _key(
        10001,
        "Port of the tracker on host_ip (also used by hefur unless hefur.enable chose it).",
        **_PORT,
    )


@dataclass(frozen=True)
class HefurSection:
    enable: bool = _key(
        False,
        "Use the hefur tracker, on hefur.port (the seed's switch; tracker.kind hefur is "
        "the newer way). The session checks that hefur is installed.",
    )
    port: int = _key(10001, "Port of hefur on host_ip when hefur.enable chose it.", **_PORT)


@dataclass(frozen=True)
class TransmissionSection:
    rpc_port: int = _key(
        9091,
        "Accepted for compatibility and ignored: the daemon runs its seeder with a random "
        "RPC port on localhost.",
        **_PORT,
    )
    dht_enabled: bool = _key(
        False,
        "DHT in the server's seeder. Must stay false: DHT would announce the boot swarm "
        "beyond the lab.",
        check=_refuse_dht,
    )
    lpd_enabled: bool = _key(
        False, "Local peer discovery in the server's seeder (announces on the boot LAN)."
    )


@dataclass(frozen=True)
class Aria2Section:
    bt_enable_lpd: bool = _key(
        False,
        "Local peer discovery between clients on the boot LAN. Needed when there is no tracker.",
    )
    enable_peer_exchange: bool = _key(
        True, "Peer exchange: clients tell each other about further peers."
    )
    console_log_level: str = _key(
        "notice",
        "How much aria2 prints on the client's console.",
        choices=("debug", "info", "notice", "warn", "error"),
    )
    enable_dht: bool = _key(
        False,
        "IPv4 DHT on the clients. Must stay false: DHT would announce the boot swarm "
        "beyond the lab.",
        check=_refuse_dht,
    )
    enable_dht6: bool = _key(
        False, "IPv6 DHT on the clients. Must stay false, as enable_dht.", check=_refuse_dht
    )
    check_integrity: bool = _key(
        True, "Verify every downloaded piece against the torrent's hashes."
    )


@dataclass(frozen=True)
class NetworkSection:
    prefix_length: int = _key(
        24,
        "Prefix length of host_ip on the boot interface: 24 means netmask 255.255.255.0.",
        minimum=8,
        maximum=30,
    )


@dataclass(frozen=True)
class DhcpSection:
    mode: str = _key(
        "full",
        "full: dnsmasq hands out addresses from dnsmasq.dhcp_range. proxy: proxyDHCP beside "
        "an existing DHCP server, which keeps handing out the addresses; dhcp_range then "
        "only names the subnet.",
        choices=("full", "proxy"),
    )


@dataclass(frozen=True)
class TrackerSection:
    kind: str = _key(
        "auto",
        "Which tracker runs. auto: hefur when hefur.enable is true or hefur is installed, "
        "else opentracker (none when opentracker.enable and hefur.enable are both false). "
        "none: clients find peers by local peer discovery only (needs aria2.bt_enable_lpd). "
        "The tracker listens on opentracker.port, or hefur.port when hefur.enable chose it.",
        choices=("auto", "hefur", "opentracker", "none"),
    )
    announce_interval: int = _key(
        15,
        "Seconds between a client's announces to the tracker: lower finds new peers "
        "sooner, at the cost of more tracker traffic.",
        minimum=5,
        unit="seconds",
    )


@dataclass(frozen=True)
class SeederSection:
    # Not transmission's own 51413: Debian's transmission-daemon service may hold it.
    peer_port: int = _key(51420, "BitTorrent port of the server's seeder on host_ip.", **_PORT)
    upload_limit_kbps: int = _key(
        0, "Upload limit of the server's seeder in kB/s; 0 is unlimited.", minimum=0
    )
    upload_slots: int = _key(
        14,
        "How many clients the server's seeder sends to at once (plus one it tries out); "
        "the others get the OS from those clients.",
        minimum=1,
        maximum=1000,
    )


@dataclass(frozen=True)
class HttpSection:
    port: int = _key(
        8080,
        "Port of the boot HTTP server on host_ip (iPXE scripts, phase-1 images, torrents, "
        "progress reports).",
        **_PORT,
    )


@dataclass(frozen=True)
class ClientSection:
    extra_cmdline: str = _key(
        "",
        "Appended to the phase-1 kernel command line, e.g. console=ttyS0 for a serial console.",
        example="console=ttyS0",
        check=check_single_line,
    )
    report_interval: int = _key(
        1,
        "Seconds between a client's progress reports to the daemon.",
        minimum=1,
        unit="seconds",
    )


def _doc(doc: str, *, required: bool = False) -> dict[str, Any]:
    return {"doc": doc, "required": required}


@dataclass(frozen=True)
class Config:
    """The whole daemon configuration; its field order is the file's section order."""

    boottorrent: BootSection = field(
        metadata=_doc(
            "The boot session: which OSes the clients' menu offers and how the clients "
            "reach this server. Required, with version: 0.",
            required=True,
        )
    )
    dnsmasq: DnsmasqSection = field(
        default_factory=DnsmasqSection,
        metadata=_doc("DHCP and TFTP for the PXE clients, served by dnsmasq."),
    )
    opentracker: OpentrackerSection = field(
        default_factory=OpentrackerSection,
        metadata=_doc("The BitTorrent tracker that introduces the clients to each other."),
    )
    aria2: Aria2Section = field(
        default_factory=Aria2Section,
        metadata=_doc("BitTorrent options of the clients, which download with aria2."),
    )
    hefur: HefurSection = field(
        default_factory=HefurSection,
        metadata=_doc("The hefur tracker, an alternative to opentracker."),
    )
    transmission: TransmissionSection = field(
        default_factory=TransmissionSection,
        metadata=_doc("The server's seeder, transmission-daemon."),
    )
    network: NetworkSection = field(
        default_factory=NetworkSection,
        metadata=_doc("The boot interface's address."),
    )
    dhcp: DhcpSection = field(
        default_factory=DhcpSection,
        metadata=_doc("How this server takes part in DHCP."),
    )
    tracker: TrackerSection = field(
        default_factory=TrackerSection,
        metadata=_doc("Tracker choice and timing."),
    )
    seeder: SeederSection = field(
        default_factory=SeederSection,
        metadata=_doc("The server's seeder."),
    )
    http: HttpSection = field(
        default_factory=HttpSection,
        metadata=_doc("The boot HTTP server."),
    )
    client: ClientSection = field(
        default_factory=ClientSection,
        metadata=_doc("The phase-1 client environment."),
    )

    @property
    def tracker_kind(self) -> str:
        """The effective tracker: "auto" (decided by what is installed), "hefur",
        "opentracker" or "none"."""
        kind = self.tracker.kind
        if kind in ("hefur", "none"):
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


# --- parsing ---------------------------------------------------------------------------------


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return args[0], len(args) < len(typing.get_args(tp))
    return tp, False


def _expected(base: Any, meta: dict[str, Any]) -> str:
    if base is bool:
        return "true or false"
    if base is int:
        text = "a whole number" + (f" of {meta['unit']}" if meta["unit"] else "")
        low, high = meta["minimum"], meta["maximum"]
        if low is not None and high is not None:
            text += f" from {low} to {high}"
        elif low is not None:
            text += f", at least {low}"
        return text
    if typing.get_origin(base) is tuple:
        return "a list of OS names"
    if meta["choices"]:
        return "one of " + ", ".join(meta["choices"])
    return "a string"


def write_eg(line: str) -> str:
    """'write e.g. "key: value"', quoted so that quotes inside the line stay readable."""
    return f"write e.g. '{line}'" if '"' in line else f'write e.g. "{line}"'


def _example(name: str, meta: dict[str, Any]) -> str:
    return write_eg(f"{name}: {yaml_scalar(meta['example'])}")


def _convert(value: object, f: dataclasses.Field, tp: Any, path: str, source: str) -> Any:
    meta = f.metadata
    base, optional = _unwrap_optional(tp)

    def wrong(extra: str = "") -> ConfigError:
        return ConfigError(
            source,
            path,
            f"expected {_expected(base, meta)}, got {describe(value)}{extra}; "
            f"{_example(f.name, meta)}",
        )

    if value is None:
        if optional:
            return None
        raise wrong()
    if base is bool:
        if not isinstance(value, bool):
            raise wrong()
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong()
        low, high = meta["minimum"], meta["maximum"]
        if (low is not None and value < low) or (high is not None and value > high):
            raise wrong()
    elif base is str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            # YAML read an unquoted number; say how to make it a string.
            raise ConfigError(
                source,
                path,
                f"expected {_expected(base, meta)}, got the number {value}; quote it: "
                f"write '{f.name}: \"{value}\"'",
            )
        if not isinstance(value, str):
            raise wrong()
        if meta["choices"] and value not in meta["choices"]:
            raise wrong(did_you_mean(value, meta["choices"]))
    elif typing.get_origin(base) is tuple:
        if not isinstance(value, list):
            raise wrong()
        for item in value:
            if not isinstance(item, str):
                raise ConfigError(
                    source,
                    path,
                    f"expected a list of OS names, got the item {describe(item)}; write each "
                    f"name as a string, e.g. '{f.name}: [debian12, \"2024\"]'",
                )
        value = tuple(value)
    check = meta["check"]
    problem = check(value) if check else None
    if problem:
        raise ConfigError(source, path, problem)
    return value


def _unknown(
    key: object, known: list[str], path: str, what: tuple[str, str], source: str
) -> ConfigError:
    """`what` names the key's kind and its section, e.g. ("key", "section dnsmasq")."""
    return ConfigError(
        source,
        path,
        f"unknown {what[0]} {str(key)!r}{did_you_mean(key, known)}; {what[1]} knows: "
        f"{', '.join(known)}; fix the spelling or remove it",
    )


def _parse_section(cls: type, data: object, name: str, source: str) -> Any:
    if data is None:
        # A section header whose keys are all commented out: take the defaults.
        data = {}
    if not isinstance(data, dict):
        first = dataclasses.fields(cls)[0]
        raise ConfigError(
            source,
            name,
            f"expected a mapping of keys, got {describe(data)}; indent its keys under it, "
            f'e.g. "{name}:" then "  {first.name}: {yaml_scalar(first.default)}"',
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            raise _unknown(key, list(fields), f"{name}.{key}", ("key", f"section {name}"), source)
    hints = _hints(cls)
    values = {}
    for key, f in fields.items():
        path = f"{name}.{key}"
        if key not in data:
            if f.metadata["required"]:
                raise ConfigError(
                    source, path, f"missing; it is required: {_example(key, f.metadata)}"
                )
            continue
        values[key] = _convert(data[key], f, hints[key], path, source)
    return cls(**values)


def parse_config(data: object, source: str = DEFAULT_SOURCE) -> Config:
    """Validate a safe_load'ed configuration and build the Config; ConfigError if wrong."""
    if data is None:
        raise ConfigError(
            source,
            "",
            'the file is empty; it needs at least "boottorrent:" with "version: 0" under '
            "it (see `boottorrentd --print-default-config`)",
        )
    if not isinstance(data, dict):
        raise ConfigError(
            source,
            "",
            f"expected a mapping of sections (boottorrent:, dnsmasq:, ...), got {describe(data)}; "
            "start from `boottorrentd --print-default-config`",
        )
    sections = {f.name: f for f in dataclasses.fields(Config)}
    for key in data:
        if key not in sections:
            raise _unknown(key, list(sections), str(key), ("section", "the file"), source)
    hints = _hints(Config)
    values = {}
    for name, f in sections.items():
        if name not in data:
            if f.metadata["required"]:
                raise ConfigError(
                    source,
                    name,
                    'missing; every config needs it: write "boottorrent:" and under it '
                    '"  version: 0"',
                )
            continue
        values[name] = _parse_section(hints[name], data[name], name, source)
    cfg = Config(**values)
    _check_together(cfg, source)
    return cfg


def _check_together(cfg: Config, source: str) -> None:
    """Rules that involve more than one key."""
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

    kind = cfg.tracker.kind
    if cfg.hefur.enable and kind in ("opentracker", "none"):
        raise ConfigError(
            source,
            "hefur.enable",
            f'true contradicts tracker.kind: {kind}; set "hefur.enable: false" or '
            '"tracker.kind: hefur"',
        )
    if cfg.tracker_kind == "none" and not cfg.aria2.bt_enable_lpd:
        if kind == "none":
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
    rng = cfg.dhcp_range
    if cfg.dhcp.mode == "full" and rng.end is None:
        raise ConfigError(
            source,
            "dnsmasq.dhcp_range",
            f"{cfg.dnsmasq.dhcp_range!r} has no end address, which only proxyDHCP allows; "
            f'{_RANGE_EXAMPLE}, or set "dhcp.mode: proxy"',
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


def read_yaml_file(path: Path, missing_hint: str) -> object:
    """Read and safe-load a YAML file; every failure is a ConfigError with its fix
    (`missing_hint` says what to do when the file does not exist)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", f"no such file; {missing_hint}") from None
    except IsADirectoryError:
        raise ConfigError(source, "", "is a directory; give the path of the YAML file") from None
    except PermissionError:
        raise ConfigError(
            source, "", "cannot read it: permission denied; make it readable by the daemon"
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source, "", f"not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None
    return load_yaml(text, source)


def load_config(path: Path) -> Config:
    """Read and validate a configuration file."""
    source = str(path)
    data = read_yaml_file(
        path,
        f"create it, e.g. `cp {EXAMPLE_PATH} {source}` or "
        f"`boottorrentd --print-default-config > {source}`, and adjust it",
    )
    return parse_config(data, source)


# --- writing ---------------------------------------------------------------------------------


def config_to_dict(cfg: Config) -> dict:
    """The configuration as plain data, shaped like the YAML file."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(cfg):
        values = getattr(cfg, section.name)
        out[section.name] = {
            f.name: list(v) if isinstance(v := getattr(values, f.name), tuple) else v
            for f in dataclasses.fields(values)
        }
    return out


def _key_comment(f: dataclasses.Field, tp: Any) -> str:
    meta = f.metadata
    doc = meta["doc"]
    base, _optional = _unwrap_optional(tp)
    if meta["choices"]:
        doc += " One of: " + ", ".join(meta["choices"]) + "."
    elif base is int and (meta["minimum"] is not None or meta["maximum"] is not None):
        doc += " " + _expected(base, meta)[0].upper() + _expected(base, meta)[1:] + "."
    if f.default is None:
        doc += f"\nExample: {f.name}: {yaml_scalar(meta['example'])}"
    return doc


_HEADER = f"""\
BootTorrent daemon configuration ({DEFAULT_PATH}).

boottorrentd reads this file when it starts. It is a superset of the original BootTorrent
project's Boottorrent.yaml: such a file works here unchanged. Every key below is shown with
its default value; a key or a whole section left out takes that default, except
boottorrent.version, which is required. Booleans are true or false.

Print this text again with `boottorrentd --print-default-config`."""


def default_config_text() -> str:
    """The commented default configuration file, generated from the dataclasses."""
    lines = comment(_HEADER)
    hints = _hints(Config)
    for section in dataclasses.fields(Config):
        cls = hints[section.name]
        lines.append("")
        lines.extend(comment(section.metadata["doc"]))
        lines.append(f"{section.name}:")
        key_hints = _hints(cls)
        for i, f in enumerate(dataclasses.fields(cls)):
            if i:
                lines.append("")
            lines.extend(comment(_key_comment(f, key_hints[f.name]), indent="  "))
            lines.append(f"  {f.name}: {yaml_scalar(f.default)}")
    return "\n".join(lines) + "\n"

