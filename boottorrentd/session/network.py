"""The session's claim on the boot interface: the server address on it, and the link up.

A claim records exactly what it changed, so that stopping the session undoes exactly that
and leaves the rest of the host as it found it: an address that was already there stays,
and so does a link that was already up. The claim is plain data, persisted by the session,
so that a daemon restarted mid-session can still undo it.

pyroute2's IPRoute is blocking netlink; the daemon calls claim() and release() in a thread.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Interface
from socket import AF_INET
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP

from boottorrentd.config import DEFAULT_PATH
from boottorrentd.errors import BootTorrentError, InvalidArgument

log = logging.getLogger(__name__)

IFA_F_SECONDARY = 0x01
IFNAMSIZ = 16

# The keys of the configuration that decide the claim, for messages that say what to change.
KEY_INTERFACE = "dnsmasq.interface"
KEY_HOST_IP = "boottorrent.host_ip"
KEY_PREFIX = "network.prefix_length"


@dataclass
class NetworkClaim:
    interface: str
    address: IPv4Interface
    added_address: bool
    set_up: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "interface": self.interface,
            "address": str(self.address),
            "added_address": self.added_address,
            "set_up": self.set_up,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetworkClaim:
        # The dict comes from a state file on disk; a damaged one must fail here, clearly,
        # rather than half-way through undoing the claim.
        if not isinstance(d, dict):
            raise InvalidArgument(f"network claim: expected an object, got {d!r}")
        missing = [k for k in ("interface", "address", "added_address", "set_up") if k not in d]
        if missing:
            raise InvalidArgument(f"network claim: missing {', '.join(missing)} in {d!r}")
        interface, address = d["interface"], d["address"]
        if not isinstance(interface, str) or not _valid_ifname(interface):
            raise InvalidArgument(f"network claim: bad interface name {interface!r}")
        # IPv4Interface("10.0.0.1") would quietly mean /32; a claim always names its prefix.
        if not isinstance(address, str) or "/" not in address:
            raise InvalidArgument(f"network claim: {address!r} is not an IPv4 address/prefix")
        try:
            iface = IPv4Interface(address)
        except ValueError:
            raise InvalidArgument(
                f"network claim: {address!r} is not an IPv4 address/prefix"
            ) from None
        flags = d["added_address"], d["set_up"]
        if not all(isinstance(f, bool) for f in flags):
            raise InvalidArgument(
                f"network claim: added_address and set_up must be true or false in {d!r}"
            )
        return cls(interface, iface, *flags)


def interface_exists(name: str) -> bool:
    if not _valid_ifname(name):
        return False
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def claim(interface: str, address: IPv4Interface) -> NetworkClaim:
    """Put `address` on `interface` and bring the link up; return what was changed.

    Every check runs before the first change, so an error leaves the host untouched.
    """
    if not isinstance(address, IPv4Interface):
        raise InvalidArgument(f"{address!r} is not an IPv4 address with a prefix length")
    with IPRoute() as ipr:
        index, names = _lookup(ipr, interface)
        if index is None:
            raise InvalidArgument(
                f"interface {interface!r} does not exist (interfaces here: "
                f"{', '.join(names.values())}); set {KEY_INTERFACE} in {DEFAULT_PATH}"
            )
        present = _check_clashes(ipr, index, interface, address, names)
        link = ipr.link("get", index=index)[0]
        was_up = bool(link["flags"] & IFF_UP)

        if present:
            log.info("%s already has %s; leaving it there", interface, address)
        else:
            # As `ip addr add ... brd +` and network managers do: clients' subnet
            # broadcasts must reach us. /31 and /32 have no broadcast address.
            brd = {"broadcast": True} if address.network.prefixlen < 31 else {}
            try:
                ipr.addr("add", index=index, address=str(address.ip),
                         prefixlen=address.network.prefixlen, **brd)
            except NetlinkError as e:
                raise BootTorrentError(
                    f"cannot add {address} to {interface}: {_strerror(e)}"
                ) from e
            log.info("added %s to %s", address, interface)

        if was_up:
            log.info("%s is already up; leaving it up", interface)
        else:
            try:
                ipr.link("set", index=index, state="up")
            except NetlinkError as e:
                # Half a claim would be recorded nowhere: take back the address first.
                if not present:
                    _del_addr(ipr, index, interface, address)
                raise BootTorrentError(f"cannot bring {interface} up: {_strerror(e)}") from e
            log.info("brought %s up", interface)

    return NetworkClaim(interface, address, added_address=not present, set_up=not was_up)


def release(claim: NetworkClaim) -> None:
    """Undo exactly what `claim` changed. Undoing what is already undone is no error."""
    if not claim.added_address and not claim.set_up:
        log.info("nothing to undo on %s: %s and its link state were there before",
                 claim.interface, claim.address)
        return
    with IPRoute() as ipr:
        # By name, not index: after a daemon restart or a re-plugged NIC the index may differ.
        index, _ = _lookup(ipr, claim.interface)
        if index is None:
            log.info("%s is gone; nothing to undo on it", claim.interface)
            return
        if claim.added_address:
            if _has_address(ipr, index, claim.address):
                _warn_secondaries(ipr, index, claim)
                _del_addr(ipr, index, claim.interface, claim.address)
            else:
                log.info("%s is no longer on %s; nothing to remove",
                         claim.address, claim.interface)
        if claim.set_up:
            _set_down(ipr, index, claim.interface)


def _set_down(ipr: IPRoute, index: int, interface: str) -> None:
    try:
        if not ipr.link("get", index=index)[0]["flags"] & IFF_UP:
            log.info("%s is already down; nothing to set down", interface)
            return
        ipr.link("set", index=index, state="down")
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise BootTorrentError(f"cannot set {interface} down: {_strerror(e)}") from e
        log.info("%s is gone; nothing to set down", interface)
        return
    log.info("set %s down, as it was before the session", interface)


def _valid_ifname(name: str) -> bool:
    return 0 < len(name) < IFNAMSIZ and "/" not in name and not any(c.isspace() for c in name)


def _lookup(ipr: IPRoute, name: str) -> tuple[int | None, dict[int, str]]:
    """The index of link `name` (None when missing), and every link's name by index."""
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    for index, ifname in names.items():
        if ifname == name:
            return index, names
    return None, names


def _addresses(ipr: IPRoute, index: int | None = None) -> Iterator[tuple[int, int, IPv4Interface]]:
    """(link index, flags, local address/prefix) of every IPv4 address, or one link's."""
    kwargs = {} if index is None else {"index": index}
    for msg in ipr.get_addr(family=AF_INET, **kwargs):
        # IFA_LOCAL is this host's own address; IFA_ADDRESS is the peer on point-to-point.
        local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
        if local is None:
            continue
        flags = msg.get_attr("IFA_FLAGS") or msg["flags"]
        yield msg["index"], flags, IPv4Interface(f"{local}/{msg['prefixlen']}")


def _has_address(ipr: IPRoute, index: int, address: IPv4Interface) -> bool:
    return any(a == address for _, _, a in _addresses(ipr, index))


def _check_clashes(ipr: IPRoute, index: int, interface: str, address: IPv4Interface,
                   names: dict[int, str]) -> bool:
    """Raise if `address` cannot go on link `index`; return whether it is already there."""
    present = False
    fix = f"set {KEY_HOST_IP} and {KEY_PREFIX} in {DEFAULT_PATH}"
    others = []
    for where, _, other in _addresses(ipr):
        if where == index:
            if other == address:
                present = True
            elif other.ip == address.ip:
                raise InvalidArgument(
                    f"{interface} already has {other}, not /{address.network.prefixlen}; "
                    f"set {KEY_PREFIX} to {other.network.prefixlen} in {DEFAULT_PATH}, or "
                    f"remove it (ip addr del {other} dev {interface})"
                )
        else:
            others.append((names.get(where, f"#{where}"), other))
    # The same IP first: it is the more specific report of the two.
    for name, other in others:
        if other.ip == address.ip:
            raise InvalidArgument(
                f"{address.ip} is already on interface {name!r} ({other}), so {interface} "
                f"cannot have it too; {fix} to a free address, or set {KEY_INTERFACE} "
                f"to {name}"
            )
    for name, other in others:
        if other.network.overlaps(address.network):
            raise InvalidArgument(
                f"{address} overlaps {other} on interface {name!r}: a second route to the "
                f"same network would send replies to the clients out of the wrong interface; "
                f"{fix} to a subnet no other interface uses, or set {KEY_INTERFACE} to {name}"
            )
    return present


def _warn_secondaries(ipr: IPRoute, index: int, claim: NetworkClaim) -> None:
    # Without net.ipv4.conf.*.promote_secondaries the kernel deletes the secondaries of a
    # primary address along with it. Ours is primary only if nothing of its subnet and
    # prefix was there before us, so any such secondary was added during the session.
    mine = [f for _, f, a in _addresses(ipr, index) if a == claim.address]
    if not mine or mine[0] & IFA_F_SECONDARY:
        return
    riders = [str(a) for _, f, a in _addresses(ipr, index)
              if f & IFA_F_SECONDARY and a.network == claim.address.network]
    if riders:
        log.warning("removing %s from %s may take %s with it (added during the session, "
                    "secondary to it); add them back if they are still wanted",
                    claim.address, claim.interface, ", ".join(riders))


def _del_addr(ipr: IPRoute, index: int, interface: str, address: IPv4Interface) -> None:
    try:
        ipr.addr("del", index=index, address=str(address.ip),
                 prefixlen=address.network.prefixlen)
    except NetlinkError as e:
        # Gone between our look and the delete (or with its link): already undone.
        if e.code not in (errno.EADDRNOTAVAIL, errno.ENODEV, errno.ENOENT):
            raise BootTorrentError(
                f"cannot remove {address} from {interface}: {_strerror(e)}"
            ) from e
        log.info("%s is no longer on %s; nothing to remove", address, interface)
        return
    log.info("removed %s from %s", address, interface)


def _strerror(e: NetlinkError) -> str:
    text = os.strerror(e.code)
    if e.code == errno.EPERM:
        return f"{text} (changing interfaces needs root or CAP_NET_ADMIN)"
    return text
