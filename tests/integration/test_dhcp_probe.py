"""Never a second DHCP server: the real daemon looks for the site's DHCP server (a real
dnsmasq in a namespace of the LAN) before it serves DHCP, and keeps looking while it does.

The site server answers at once (--no-ping) where a test needs the first probe to see it;
the one that appears during a session pings before its first offer, as dnsmasq does by
default, and the session's repeated probes see it all the same.
"""

import json
from pathlib import Path

import pytest

from boottorrentd.session.dhcpprobe import format_mac, host_probe_mac
from boottorrentd.util.wait import wait_until
from boottorrentlab.devkit.lan import Lan, Netns
from tests.conftest import Daemon, world_readable_tmpdir
from tests.integration.test_dnsmasq import Server
from tests.lanclients import PLAIN_CLIENT, dhcp, in_range, pxe, tlv, write_udhcpc_script

pytestmark = pytest.mark.integration

HTTP_PORT = 8080
SITE_FIRST, SITE_LAST = 50, 60  # the site's own range
OUR_FIRST, OUR_LAST = 100, 150  # dnsmasq.dhcp_range


class Site:
    """The LAN's own DHCP server: plain dnsmasq at .2, no PXE options at all."""

    def __init__(self, lan: Lan, *, ping: bool = False) -> None:
        self.lan = lan
        self.ns = lan.add("site")
        self.ip = self.ns.add_address(2)
        self.leases = world_readable_tmpdir("bt-site-") / "site.leases"
        self.ping = ping
        self.server: Server | None = None

    def start(self) -> None:
        self.server = Server(self.ns, [
            "dnsmasq", "--conf-file=/dev/null", "--keep-in-foreground", "--log-facility=-",
            "--log-dhcp", "--port=0", "--interface=eth0", "--bind-interfaces", "--pid-file=",
            f"--dhcp-range={self.lan.address(SITE_FIRST)},{self.lan.address(SITE_LAST)},1h",
            f"--dhcp-leasefile={self.leases}", *([] if self.ping else ["--no-ping"]),
        ])

    def stop(self) -> None:
        assert self.server is not None
        self.server.stop()

    @property
    def log(self) -> str:
        return self.server.log if self.server else ""


@pytest.fixture
def srv(lan: Lan) -> Netns:
    return lan.add("srv")


def start_daemon(daemon: Daemon, srv: Netns, lan: Lan, dhcp_keys: str) -> None:
    daemon.config.write_text(f"""boottorrent:
  version: 0
  host_ip: {lan.address(1)}
dnsmasq:
  interface: eth0
  user: nobody
  dhcp_range: "{lan.address(OUR_FIRST)},{lan.address(OUR_LAST)},1h"
http:
  port: {HTTP_PORT}
dhcp:
{dhcp_keys}""")
    daemon.prefix = ["ip", "netns", "exec", srv.name]
    daemon.start()


def status(daemon: Daemon) -> dict:
    return json.loads(daemon.ctl("status", "--json").stdout)


def test_auto_beside_a_site_server_serves_proxy_dhcp_to_pxe_clients_only(
        lan: Lan, srv: Netns, daemon_dirs: Daemon, tmp_path: Path):
    site = Site(lan)
    site.start()
    # The machines are plugged in first: their links are up when they send.
    cli, plain = lan.add("cli"), lan.add("plain")
    start_daemon(daemon_dirs, srv, lan, "  mode: auto\n  watch_seconds: 1\n")
    host = lan.address(1)

    started = daemon_dirs.ctl("start").stdout

    now = status(daemon_dirs)
    assert now["state"] == "running"
    assert now["reason"] in started
    assert "proxyDHCP" in now["reason"] and site.ip in now["reason"], now
    said = daemon_dirs.ctl("status").stdout.splitlines()[0]
    assert said.endswith(f"running ({now['reason']})"), said
    # A BIOS PXE ROM: an address from the site, the PXE boot menu from us.
    offers = {offer["from"]: offer for offer in pxe(cli, 0, "discover")}
    assert set(offers) == {host, site.ip}, daemon_dirs.log()
    assert in_range(offers[site.ip]["yiaddr"], lan.address(SITE_FIRST), lan.address(SITE_LAST))
    assert offers[host]["yiaddr"] == "0.0.0.0"  # proxyDHCP: never an address from us
    lease = dhcp(cli, write_udhcpc_script(tmp_path))
    assert lease["serverid"] == site.ip
    assert in_range(lease["ip"], lan.address(SITE_FIRST), lan.address(SITE_LAST))
    # ...then asks us for its boot file (the one item of our menu), from that address.
    item = tlv(offers[host]["options"]["43"])[9][:2] + bytes(2)
    (boot,) = pxe(cli, 0, "request", host, item.hex())
    assert (boot["from"], boot["file"]) == (host, "undionly.kpxe")

    # A machine that is no PXE client hears from the site only.
    assert [offer["from"] for offer in pxe(plain, PLAIN_CLIENT, "discover")] == [site.ip]
    # proxyDHCP is meant to run beside the site's server: no watch, never degraded.
    assert status(daemon_dirs)["state"] == "running"


def test_auto_on_an_empty_lan_serves_full_dhcp(lan: Lan, srv: Netns, daemon_dirs: Daemon,
                                              tmp_path: Path):
    cli = lan.add("cli")
    start_daemon(daemon_dirs, srv, lan, "  probe_seconds: 1\n")  # auto: the default

    daemon_dirs.ctl("start")

    now = status(daemon_dirs)
    assert (now["state"], now["reason"]) == ("running", "")
    lease = dhcp(cli, write_udhcpc_script(tmp_path))
    assert lease["serverid"] == lan.address(1)
    assert in_range(lease["ip"], lan.address(OUR_FIRST), lan.address(OUR_LAST))
    assert lease["boot_file"] == "undionly.kpxe"


def test_full_beside_a_site_server_is_refused_naming_it_before_any_child_starts(
        lan: Lan, srv: Netns, daemon_dirs: Daemon):
    site = Site(lan)
    site.start()
    start_daemon(daemon_dirs, srv, lan, "  mode: full\n")

    result = daemon_dirs.ctl("start", check=False)

    assert result.returncode == 1
    assert site.ip in result.stderr and "dhcp.mode: proxy" in result.stderr, result.stderr
    now = status(daemon_dirs)
    assert now["state"] == "failed" and site.ip in now["reason"]
    assert now["children"] == []
    assert not [a for a in srv.addresses() if a.startswith(f"{lan.address(1)}/")]
    # The probe took no lease: it never sent a DHCPREQUEST.
    probe = format_mac(host_probe_mac("eth0"))
    assert f"DHCPDISCOVER(eth0) {probe}" in site.log
    assert "DHCPREQUEST" not in site.log
    assert probe not in (site.leases.read_text() if site.leases.exists() else "")


def test_a_site_server_that_appears_makes_the_session_degraded_until_it_is_gone(
        lan: Lan, srv: Netns, daemon_dirs: Daemon):
    site = Site(lan, ping=True)
    start_daemon(daemon_dirs, srv, lan, "  probe_seconds: 1\n  watch_seconds: 1\n")
    daemon_dirs.ctl("start")
    # Our own dnsmasq does not answer the probe, so the session never sees itself.
    probe = format_mac(host_probe_mac("eth0"))
    wait_until(lambda: f"{probe} ignored" in daemon_dirs.log(), timeout=30,
               what="the watch's probe to reach our own dnsmasq")
    assert status(daemon_dirs)["state"] == "running"

    site.start()
    degraded = wait_until(lambda: (s := status(daemon_dirs))["state"] == "degraded" and s,
                          timeout=30, what="the session to see the site's server")
    assert site.ip in degraded["reason"]
    assert f"the DHCP server at {site.ip} answers DHCP on the boot network too" in (
        daemon_dirs.log())

    site.stop()
    back = wait_until(lambda: (s := status(daemon_dirs))["state"] == "running" and s,
                      timeout=30, what="the session to see the site's server gone")
    assert back["reason"] == ""
