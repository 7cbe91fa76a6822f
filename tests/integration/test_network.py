"""boottorrentd.session.network on real netlink, inside the network namespaces of a test LAN.

network.py always works on the namespace of the process that calls it, so every call runs
in a small Python child started with `ip netns exec`: the host's own interfaces are never
within reach. A claim crosses from one child to the next as JSON, exactly as a restarted
daemon reads it back from its state file.
"""

import ipaddress
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from boottorrentd import errors
from boottorrentd.session.network import NetworkClaim
from boottorrentlab.devkit.lan import Lan, Netns

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

# Runs inside the namespace: one operation from argv, its result (or error) as JSON on
# stdout, with what the module logged, so that the tests can check what it said it did.
DRIVER = """
import ipaddress, json, logging, sys
from boottorrentd.session import network

records = []
handler = logging.Handler()
handler.emit = lambda r: records.append(r.getMessage())
logging.getLogger("boottorrentd.session.network").addHandler(handler)
logging.getLogger("boottorrentd.session.network").setLevel(logging.INFO)

op, args = json.loads(sys.argv[1])
try:
    if op == "claim":
        value = network.claim(args[0], ipaddress.IPv4Interface(args[1])).to_dict()
    elif op == "release":
        value = network.release(network.NetworkClaim.from_dict(args[0]))
    elif op == "exists":
        value = network.interface_exists(args[0])
    elif op == "cycle":
        value = []
        for _ in range(args[2]):
            claim = network.claim(args[0], ipaddress.IPv4Interface(args[1]))
            network.release(claim)
            value.append(claim.to_dict())
    out = {"value": value}
except Exception as e:
    out = {"error": type(e).__name__, "message": str(e)}
print(json.dumps({**out, "log": records}))
"""


@dataclass
class Remote:
    """boottorrentd.session.network's API, called inside `ns`."""

    ns: Netns
    log: list[str] = field(default_factory=list)

    def _call(self, op: str, *args: Any) -> Any:
        proc = self.ns.run(sys.executable, "-c", DRIVER, json.dumps([op, args]), check=False)
        if proc.returncode != 0:
            raise AssertionError(f"driver failed ({proc.returncode}): {proc.stderr}")
        out = json.loads(proc.stdout)
        self.log = out["log"]
        if "error" in out:
            cls = getattr(errors, out["error"], None)
            if cls is None:
                raise AssertionError(f"{out['error']}: {out['message']}")
            raise cls(out["message"])
        return out["value"]

    def claim(self, interface: str, address: str) -> NetworkClaim:
        return NetworkClaim.from_dict(self._call("claim", interface, address))

    def release(self, claim: NetworkClaim) -> None:
        self._call("release", claim.to_dict())

    def interface_exists(self, name: str) -> bool:
        return self._call("exists", name)

    def cycle(self, interface: str, address: str, times: int) -> list[NetworkClaim]:
        return [NetworkClaim.from_dict(d) for d in self._call("cycle", interface, address, times)]


def state(ns: Netns) -> dict[str, Any]:
    """Every link with its flags and addresses, and the IPv4 routes, as `ip -j` shows them.

    IPv6 link-local addresses are left out: the kernel adds them whenever a link comes up.
    So is the qdisc: the kernel attaches the default one when a link first comes up, and
    it stays when the link goes down again ("noop" before, "noqueue" after, on a bridge).
    """
    links = json.loads(ns.run("ip", "-j", "addr", "show").stdout)
    for link in links:
        link.pop("qdisc", None)
        link["addr_info"] = [a for a in link.get("addr_info", [])
                             if not (a["family"] == "inet6" and a.get("scope") == "link")]
    routes = json.loads(ns.run("ip", "-4", "-j", "route", "show", "table", "all").stdout)
    return {"links": links, "routes": routes}


def addresses(ns: Netns, ifname: str) -> list[str]:
    out = ns.run("ip", "-4", "-o", "addr", "show", "dev", ifname).stdout
    return [line.split()[3] for line in out.splitlines()]


def is_up(ns: Netns, ifname: str) -> bool:
    (link,) = json.loads(ns.run("ip", "-j", "link", "show", "dev", ifname).stdout)
    return "UP" in link["flags"]


def other_subnet(lan: Lan) -> ipaddress.IPv4Network:
    """A 10.x /24 next to the LAN's; only ever put on links inside a test namespace."""
    return ipaddress.IPv4Network(f"{lan.subnet.network_address + 256}/24")


@pytest.fixture
def srv(lan: Lan) -> Netns:
    """The server's namespace: eth0 on the LAN (up, no address), and d0, a spare link, down."""
    ns = lan.add("srv")
    # Some kernels are built without the dummy driver; a bridge without ports serves too.
    if ns.run("ip", "link", "add", "d0", "type", "dummy", check=False).returncode != 0:
        ns.run("ip", "link", "add", "d0", "type", "bridge")
    return ns


@pytest.fixture
def remote(srv: Netns) -> Remote:
    return Remote(srv)


def cidr(lan: Lan, host: int, prefix: int = 24) -> str:
    return f"{lan.address(host)}/{prefix}"


def test_claim_adds_the_address_and_brings_a_down_link_up(lan, srv, remote):
    mine = cidr(lan, 1)
    neighbour = f"{other_subnet(lan).network_address + 1}/24"
    # Already on d0 before the session: another address of the same subnet, and one of
    # another subnet; on eth0, an address of a subnet that does not overlap ours.
    srv.run("ip", "addr", "add", cidr(lan, 50), "dev", "d0")
    srv.run("ip", "addr", "add", neighbour, "dev", "d0")
    srv.run("ip", "addr", "add", f"{other_subnet(lan).network_address + 256 + 1}/24",
            "dev", "eth0")

    claim = remote.claim("d0", mine)

    assert claim == NetworkClaim("d0", ipaddress.IPv4Interface(mine), added_address=True,
                                 set_up=True)
    assert sorted(addresses(srv, "d0")) == sorted([cidr(lan, 50), neighbour, mine])
    assert is_up(srv, "d0")
    assert f"added {mine} to d0" in remote.log
    assert "brought d0 up" in remote.log


def test_release_removes_exactly_what_the_claim_added_and_sets_the_link_down(lan, srv, remote):
    neighbour = f"{other_subnet(lan).network_address + 1}/24"
    srv.run("ip", "addr", "add", cidr(lan, 50), "dev", "d0")
    srv.run("ip", "addr", "add", neighbour, "dev", "d0")
    before = state(srv)

    remote.release(remote.claim("d0", cidr(lan, 1)))

    assert state(srv) == before
    assert sorted(addresses(srv, "d0")) == sorted([cidr(lan, 50), neighbour])
    assert not is_up(srv, "d0")
    assert f"removed {cidr(lan, 1)} from d0" in remote.log
    assert any(line.startswith("set d0 down") for line in remote.log)


def test_an_address_already_there_with_the_same_prefix_is_kept_on_release(lan, srv, remote):
    srv.add_address(1)
    before = state(srv)

    claim = remote.claim("eth0", cidr(lan, 1))
    assert (claim.added_address, claim.set_up) == (False, False)
    remote.release(claim)

    assert state(srv) == before
    assert addresses(srv, "eth0") == [cidr(lan, 1)]
    assert is_up(srv, "eth0")


def test_a_link_already_up_stays_up_when_our_address_goes(lan, srv, remote):
    before = state(srv)

    claim = remote.claim("eth0", cidr(lan, 1))
    assert (claim.added_address, claim.set_up) == (True, False)
    assert addresses(srv, "eth0") == [cidr(lan, 1)]
    remote.release(claim)

    assert state(srv) == before
    assert addresses(srv, "eth0") == []
    assert is_up(srv, "eth0")


def test_a_missing_interface_is_an_error_naming_it_and_the_ones_there(lan, srv, remote):
    before = state(srv)

    with pytest.raises(errors.InvalidArgument) as e:
        remote.claim("eth7", cidr(lan, 1))

    message = str(e.value)
    assert "interface 'eth7' does not exist" in message
    assert "(interfaces here: " in message
    assert all(name in message for name in ("lo, ", "eth0", "d0"))
    assert "set dnsmasq.interface in /etc/boottorrent/boottorrent.yaml" in message
    assert state(srv) == before


def test_the_same_ip_on_another_interface_is_an_error_and_nothing_changes(lan, srv, remote):
    srv.add_address(1)
    before = state(srv)

    with pytest.raises(errors.InvalidArgument) as e:
        remote.claim("d0", cidr(lan, 1))

    assert f"{lan.address(1)} is already on interface 'eth0'" in str(e.value)
    assert "boottorrent.host_ip" in str(e.value)
    assert state(srv) == before
    assert not is_up(srv, "d0")


@pytest.mark.parametrize("prefix", [16, 25, 30])
def test_an_overlapping_subnet_on_another_interface_is_an_error_and_nothing_changes(
        lan, srv, remote, prefix):
    # /16 contains our /24, /25 and /30 lie inside it: either way, two routes to one LAN.
    theirs = cidr(lan, 200, prefix)
    srv.run("ip", "addr", "add", theirs, "dev", "eth0")
    before = state(srv)

    with pytest.raises(errors.InvalidArgument) as e:
        remote.claim("d0", cidr(lan, 1))

    assert f"{cidr(lan, 1)} overlaps {theirs} on interface 'eth0'" in str(e.value)
    assert "dnsmasq.interface" in str(e.value)
    assert state(srv) == before
    assert not is_up(srv, "d0")


def test_the_same_ip_with_another_prefix_on_the_interface_is_an_error(lan, srv, remote):
    srv.run("ip", "addr", "add", cidr(lan, 1, 25), "dev", "d0")
    before = state(srv)

    with pytest.raises(errors.InvalidArgument) as e:
        remote.claim("d0", cidr(lan, 1, 24))

    assert f"d0 already has {cidr(lan, 1, 25)}, not /24" in str(e.value)
    assert "set network.prefix_length to 25" in str(e.value)
    assert state(srv) == before


def test_release_twice_is_not_an_error(lan, srv, remote):
    before = state(srv)
    claim = remote.claim("d0", cidr(lan, 1))

    remote.release(claim)
    remote.release(claim)

    assert state(srv) == before
    assert f"{cidr(lan, 1)} is no longer on d0; nothing to remove" in remote.log
    assert "d0 is already down; nothing to set down" in remote.log


def test_release_after_someone_else_undid_it_is_not_an_error(lan, srv, remote):
    before = state(srv)
    claim = remote.claim("d0", cidr(lan, 1))
    srv.run("ip", "addr", "del", cidr(lan, 1), "dev", "d0")
    srv.run("ip", "link", "set", "d0", "down")

    remote.release(claim)

    assert state(srv) == before


def test_release_after_the_link_was_deleted_is_not_an_error(lan, srv, remote):
    claim = remote.claim("d0", cidr(lan, 1))
    srv.run("ip", "link", "del", "d0")

    remote.release(claim)

    assert remote.log == ["d0 is gone; nothing to undo on it"]


def test_release_warns_when_the_kernel_may_take_later_addresses_of_our_subnet_along(
        lan, srv, remote):
    # Added after the claim, 10.x.y.7/24 is secondary to ours; without promote_secondaries
    # the kernel deletes it with ours. Nothing can prevent that without touching a sysctl,
    # so the operator at least reads it in the journal.
    claim = remote.claim("d0", cidr(lan, 1))
    srv.run("ip", "addr", "add", cidr(lan, 7), "dev", "d0")

    remote.release(claim)

    assert any(line.startswith(f"removing {cidr(lan, 1)} from d0 may take {cidr(lan, 7)}")
               for line in remote.log), remote.log


def test_a_claim_survives_a_json_round_trip():
    claim = NetworkClaim("eth0", ipaddress.IPv4Interface("10.1.2.1/24"), added_address=True,
                         set_up=False)
    restored = NetworkClaim.from_dict(json.loads(json.dumps(claim.to_dict())))
    assert restored == claim
    assert claim.to_dict() == {"interface": "eth0", "address": "10.1.2.1/24",
                               "added_address": True, "set_up": False}


@pytest.mark.parametrize("damaged", [
    [],
    {"interface": "eth0", "address": "10.1.2.1/24", "added_address": True},
    {"interface": "", "address": "10.1.2.1/24", "added_address": True, "set_up": True},
    {"interface": "eth0", "address": "10.1.2.1", "added_address": True, "set_up": True},
    {"interface": "eth0", "address": "fd00::1/64", "added_address": True, "set_up": True},
    {"interface": "eth0", "address": "10.1.2.1/24", "added_address": "yes", "set_up": True},
])
def test_a_damaged_claim_is_refused_before_anything_is_undone(damaged):
    with pytest.raises(errors.InvalidArgument, match="network claim"):
        NetworkClaim.from_dict(damaged)


def test_a_restarted_daemon_releases_a_claim_restored_from_its_state_file(
        lan, srv, remote, tmp_path: Path):
    before = state(srv)
    state_file = tmp_path / "network.json"
    # The session that claimed is gone with its process; only the file remains.
    state_file.write_text(json.dumps(remote.claim("d0", cidr(lan, 1)).to_dict()))
    assert is_up(srv, "d0")

    Remote(srv).release(NetworkClaim.from_dict(json.loads(state_file.read_text())))

    assert state(srv) == before


def test_interface_exists(srv, remote):
    assert remote.interface_exists("eth0")
    assert remote.interface_exists("d0")
    assert not remote.interface_exists("eth7")
    assert not remote.interface_exists("")
    assert not remote.interface_exists("x" * 16)


@pytest.mark.parametrize("ifname", ["eth0", "d0"], ids=["link-up", "link-down"])
def test_ten_claim_release_cycles_leave_the_interface_exactly_as_it_was(lan, srv, remote,
                                                                          ifname):
    srv.run("ip", "addr", "add", f"{other_subnet(lan).network_address + 1}/24", "dev", ifname)
    before = state(srv)

    claims = remote.cycle(ifname, cidr(lan, 1), 10)

    assert len(claims) == 10
    assert all(c.added_address for c in claims)
    assert state(srv) == before
