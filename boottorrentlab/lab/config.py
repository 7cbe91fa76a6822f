"""The lab's fixed numbers, its error, what it needs of the host, and the daemon's config."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

QEMU = "qemu-system-x86_64"
HTTP_PORT = 8080
SERVER_HOST = 1
DHCP_FIRST, DHCP_LAST = 100, 199
# The daemon's stages that mean phase-1 has handed the machine over to its OS (running:
# in a virtual machine, method qemu).
TARGET_STAGES = ("running", "booting", "booted")
DEFAULT_TIMEOUT = 300.0
POLL_S = 0.5


class LabError(Exception):
    """Why the lab could not be set up or run, in words a person can act on."""


def missing_prerequisites() -> list[str]:
    """What keeps the lab from running here, each with its fix; empty when all is there."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the lab needs root (network namespaces, a bridge, tap devices): "
                        "run it with sudo")
    for program, package in ((QEMU, "qemu-system-x86"), ("dnsmasq", "dnsmasq-base"),
                             ("ip", "iproute2"), ("dbus-daemon", "dbus")):
        if shutil.which(program) is None:
            problems.append(f"{program} is missing: apt-get install {package}")
    if not Path("/dev/net/tun").exists():
        problems.append("/dev/net/tun is missing: load the tun module (modprobe tun)")
    return problems


@dataclass
class LabConfig:
    """The daemon's configuration for a lab run (the rest comes from the lab's network)."""

    seed_time: int = 5
    timeout: int = 0  # the client menu's; 0 boots default_os at once
    default_os: str | None = None
    display_oss: list[str] | None = None
    announce_interval: int = 5
    extra_cmdline: str = "console=ttyS0"
    # Further sections or keys, merged over the lab's (e.g. {"aria2": {...}}).
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)

    def render(self, host_ip: str, dhcp_range: str) -> str:
        boot: dict[str, Any] = {"version": 0, "host_ip": host_ip, "timeout": self.timeout,
                                "seed_time": self.seed_time}
        if self.default_os:
            boot["default_os"] = self.default_os
        if self.display_oss is not None:
            boot["display_oss"] = self.display_oss
        doc: dict[str, dict[str, Any]] = {
            "boottorrent": boot,
            # The daemon runs as root in the lab; its helpers drop to nobody.
            "dnsmasq": {"interface": "eth0", "user": "nobody", "dhcp_range": dhcp_range},
            "tracker": {"announce_interval": self.announce_interval},
            "http": {"port": HTTP_PORT},
            "client": {"extra_cmdline": self.extra_cmdline},
            # The lab's LAN is its own: no other DHCP server can answer, so the probe
            # before the session serves DHCP need not wait the full default.
            "dhcp": {"probe_seconds": 1},
        }
        for section, values in self.extra.items():
            doc.setdefault(section, {}).update(values)
        return yaml.safe_dump(doc, sort_keys=False)
