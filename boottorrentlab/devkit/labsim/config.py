"""What a simulated lab is: its size, links and OS (SimConfig), and the addresses and ports
that the servers and the machines agree on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OS_NAME = "sim"
PAYLOAD = "root.img"
HTTP_PORT = 8080
TRACKER_PORT = 6969
SERVER_HOST = 1
DHCP_FIRST, DHCP_LAST = 20, 250


@dataclass
class SimConfig:
    machines: int = 32
    rate: int = 4_000_000  # bit/s, each machine's link, both ways
    server_rate: int = 40_000_000  # bit/s, the server's link, both ways
    size: int = 16 << 20  # bytes of the OS
    seed_time: int = 10  # boottorrent.seed_time: seconds a machine seeds after its download
    phase1: bool = False  # fetch the phase-1 kernel and initrd over HTTP first
    report_interval: float = 1.0
    sample_interval: float = 0.1
    timeout: float = 900  # seconds the whole run may take
    seed_servers: int = 0  # further servers in swarm.role seed, each a namespace
    # Stop server STOP_SERVER (0: the full one) once the machines have on average this
    # share of the OS; None stops none.
    stop_at_progress: float | None = None
    stop_server: int = 0
    # Further configuration sections merged over the simulator's, e.g. {"ltseed": {...}}.
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
