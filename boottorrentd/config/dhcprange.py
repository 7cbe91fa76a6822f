"""dnsmasq's dhcp-range value: parsed once, so that the config's rules and the dnsmasq
child read the same addresses."""

import ipaddress
import re
from dataclasses import dataclass

_LEASE = re.compile(r"(\d+[smhdw]?|infinite)", re.IGNORECASE)
_RANGE_FORM = '"start,end[,netmask][,lease]"'
RANGE_EXAMPLE = "write e.g. 'dhcp_range: \"192.168.1.50,192.168.1.150,12h\"'"


@dataclass(frozen=True)
class DhcpRange:
    """dnsmasq's dhcp-range value, as far as BootTorrent uses it.

    `end` is None only for a proxyDHCP range, which names just the subnet.
    """

    start: ipaddress.IPv4Address
    end: ipaddress.IPv4Address | None = None
    netmask: ipaddress.IPv4Address | None = None
    lease: str | None = None


class _Bad(ValueError):
    """What is wrong with one dhcp_range text; str() is the whole message with the fix."""

    def __init__(self, text: str, why: str) -> None:
        super().__init__(
            f"expected dnsmasq's form {_RANGE_FORM}, got {text!r}: {why}; {RANGE_EXAMPLE}"
        )


def _address(text: str, part: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(part)
    except ValueError:
        raise _Bad(text, f"the {what} {part!r} is not an IPv4 address") from None


def _addresses(text: str) -> list[str]:
    """The comma-separated parts of a range text, without dnsmasq's own 'proxy' keyword."""
    parts = [part.strip() for part in text.split(",")]
    if parts and parts[-1].lower() == "proxy":
        # dnsmasq's own proxyDHCP form; the daemon adds that keyword itself.
        parts.pop()
    if not parts or not parts[0]:
        raise _Bad(text, "no start address")
    if parts[0].startswith(("tag:", "set:")):
        raise _Bad(text, "tags are not supported here")
    return parts


def _take_lease(text: str, rest: list[str]) -> str | None:
    """Remove the lease time from the parts after the start address, and return it."""
    # Addresses have dots, lease times never do.
    if not rest or "." in rest[-1]:
        return None
    lease = rest.pop()
    if not _LEASE.fullmatch(lease):
        raise _Bad(
            text,
            f"the lease time {lease!r} is not a number of seconds, a number with "
            "s/m/h/d/w, or 'infinite'",
        )
    return lease


def parse_dhcp_range(text: str) -> DhcpRange:
    """Parse dnsmasq's `start,end[,netmask][,lease]` (or a lone subnet address for proxyDHCP).

    Raises ValueError with a message that says what is wrong and how to write it.
    """
    parts = _addresses(text)
    start = _address(text, parts[0], "start address")
    rest = parts[1:]
    lease = _take_lease(text, rest)
    if len(rest) > 2:
        raise _Bad(text, "too many addresses")
    end = _address(text, rest[0], "end address") if rest else None
    netmask = _address(text, rest[1], "netmask") if len(rest) > 1 else None
    if end is not None and end < start:
        raise _Bad(text, f"the start {start} is after the end {end}")
    if netmask is not None:
        try:
            ipaddress.IPv4Network(f"0.0.0.0/{netmask}")
        except ValueError:
            raise _Bad(text, f"{netmask} is not a netmask") from None
    if end is None and lease is not None:
        raise _Bad(text, "a lease time needs an end address")
    return DhcpRange(start, end, netmask, lease)


def check_dhcp_range(value: str) -> str | None:
    try:
        parse_dhcp_range(value)
    except ValueError as exc:
        return str(exc)
    return None
