"""The lab's network: the devkit's LAN with its bridge in a namespace, and IPv6 on it.

    bt-<tag>-lan      the LAN: the bridge, one tap per machine, a router-advertisement
                      dnsmasq (see below), and the QEMU processes plugged into the taps
    bt-<tag>-srv      the server: eth0 (a veth to the bridge), boottorrentd and its children

IPv4 uses a random 10.x.y.0/24 that exists only on that bridge; the daemon puts
10.x.y.1 on the server's eth0 itself (host_ip). The bridge gets a random ULA IPv6
prefix, announced by a second dnsmasq with router advertisements only: iPXE waits
~13 s for IPv6 autoconfiguration on a LAN without any router advertisement. The
daemon's own dnsmasq must not send them: on a real LAN that is the router's job.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
from pathlib import Path

from boottorrentd.util.wait import wait_until
from boottorrentlab.devkit.lan import Lan, Netns

from .config import DHCP_FIRST, DHCP_LAST, SERVER_HOST, LabError


class LabNetwork:
    """`LabNetwork(workdir)` builds the LAN and the server namespace; `.close()` removes them."""

    def __init__(self, workdir: Path, tag: str) -> None:
        self.workdir = workdir
        self.lan = Lan(tag=tag)
        self.ula = ipaddress.IPv6Network(
            f"fd{secrets.token_hex(1)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}::/64")
        self.ra: subprocess.Popen | None = None
        try:
            self.server: Netns = self.lan.add("srv")
            # nodad: usable at once, and nothing else on this LAN could hold the address.
            self.lan.ip("-6", "addr", "add", f"{self.ula.network_address + 1}/64", "dev",
                        self.lan.bridge, "nodad")
            self._router_advertisements()
        except BaseException:
            self.close()
            raise

    @property
    def host_ip(self) -> str:
        return self.lan.address(SERVER_HOST)

    @property
    def dhcp_range(self) -> str:
        return f"{self.lan.address(DHCP_FIRST)},{self.lan.address(DHCP_LAST)},1h"

    def describe(self) -> str:
        return (f"namespaces {self.lan.netns} (bridge, taps) and {self.server.name} (server); "
                f"IPv4 {self.lan.subnet}, IPv6 {self.ula} (router advertisements)")

    def _router_advertisements(self) -> None:
        log_path = self.workdir / "ra-dnsmasq.log"
        with open(log_path, "w") as log:
            self.ra = self.lan.popen(
                "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
                "--no-resolv", "--no-hosts", f"--interface={self.lan.bridge}",
                "--bind-interfaces", "--enable-ra",
                f"--dhcp-range=::,constructor:{self.lan.bridge},ra-only",
                f"--dhcp-leasefile={self.workdir / 'ra-dnsmasq.leases'}", "--pid-file=",
                "--user=nobody", "--log-facility=-",
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        ra = self.ra

        def advertising() -> bool:
            if ra.poll() is not None:
                raise LabError("the router-advertisement dnsmasq exited at start: "
                               + log_path.read_text().strip())
            return "router advertisement enabled" in log_path.read_text()

        wait_until(advertising, timeout=10, what="the router-advertisement dnsmasq to start "
                   f"(its log: {log_path})")

    def close(self) -> list[str]:
        """Stop what runs in the network and delete its namespaces; the problems met."""
        return self.lan.close()

    def teardown_commands(self) -> list[str]:
        return self.lan.teardown_commands()
