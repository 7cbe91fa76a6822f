"""The real daemon on a private system bus in the server namespace, with one OS.

Experiments change the daemon only through its configuration file: `--set KEY=VALUE`
for any key, `--piece-size` for `library.piece_length`, `--transmission-setting` for
`transmission.settings` (merged into the seed's settings.json).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.network import ShapedLan
from bench.proc import clean_env, say
from bench.units import human_size
from boottorrentd.util.wait import wait_until
from boottorrentlab.devkit.daemon import DaemonOnBus

OS_NAME = "bench"
PAYLOAD = "root.img"
HTTP_PORT = 8080


def write_payload(path: Path, size: int, seed: int = 6) -> None:
    """`size` bytes that do not compress (an OS image is mostly compressed data)."""
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = min(left, 4 << 20)
            f.write(rng.randbytes(chunk))
            left -= chunk


def deep_set(doc: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        doc = doc.setdefault(key, {})
    doc[keys[-1]] = value


@dataclass(frozen=True)
class DaemonOptions:
    """What a run changes in the daemon's configuration; nothing is the product's default."""

    # (dotted key, value) pairs from --set, applied last so that they win.
    overrides: tuple[tuple[str, Any], ...] = ()
    piece_length: int | None = None
    transmission_settings: dict[str, Any] = field(default_factory=dict)


def daemon_config(host: str, dhcp_range: str, options: DaemonOptions) -> dict[str, Any]:
    """The daemon's configuration: its defaults, what a namespace LAN needs, the options."""
    config: dict[str, Any] = {
        "boottorrent": {"version": 0, "host_ip": host},
        # No client asks for DHCP (they have fixed addresses), but dnsmasq needs a range
        # inside the subnet.
        "dnsmasq": {"interface": "eth0", "dhcp_range": dhcp_range},
        "children": {"user": "nobody"},
        "http": {"port": HTTP_PORT},
    }
    if options.piece_length is not None:
        deep_set(config, "library.piece_length", options.piece_length)
    if options.transmission_settings:
        deep_set(config, "transmission.settings", dict(options.transmission_settings))
    for key, value in options.overrides:
        deep_set(config, key, value)
    return config


class Session:
    """The daemon and its boot session: started, restarted between waves, stopped."""

    def __init__(self, lab: ShapedLan, work: Path, size: int, options: DaemonOptions) -> None:
        self.lab = lab
        self.work = work
        self.size = size
        self.options = options
        self.daemon = DaemonOnBus(work, clean_env())
        self.config: dict[str, Any] = {}

    @property
    def host(self) -> str:
        assert self.lab.server is not None
        return self.lab.server.address

    @property
    def server(self) -> str:
        return f"{self.host}:{HTTP_PORT}"

    @property
    def library(self) -> Path:
        return self.work / "state" / "oss"

    def seed_uploaded(self) -> int:
        """What the seed engine says it has uploaded of the OS (payload bytes)."""
        return int(self.daemon.seed_status(OS_NAME).get("uploaded_bytes", 0))

    def start(self) -> None:
        lan = self.lab.lan
        self.config = daemon_config(self.host, f"{lan.address(200)},{lan.address(250)},1h",
                                    self.options)
        # The daemon's children run as nobody: they must read the state folder.
        self.work.chmod(0o755)
        assert self.lab.server is not None
        self.daemon.start(self.config, self.lab.server.ns.name)
        self._add_os()
        say("starting the boot session (boottorrentctl start)")
        self.start_session()

    def _add_os(self) -> None:
        src = self.work / "src" / OS_NAME
        src.mkdir(parents=True)
        src.chmod(0o755)
        say(f"writing a {human_size(self.size)} OS image and adding it to the library")
        write_payload(src / PAYLOAD, self.size)
        (src / "config.yaml").write_text(
            f"dispname: Benchmark OS\nmethod: live\nsquashfs: {PAYLOAD}\n")
        self.daemon.ctl("add-os", OS_NAME, str(src))
        shutil.rmtree(src.parent)

    def start_session(self) -> None:
        """`boottorrentctl start`; return once the seed seeds the OS."""
        self.daemon.ctl("start")
        last: dict[str, Any] = {}

        def seeding() -> bool:
            nonlocal last
            last = self.daemon.seed_status(OS_NAME)
            return last.get("status") == "seeding"

        wait_until(seeding, timeout=120, interval=0.2,
                   what=lambda: f"the daemon does not seed {OS_NAME}: {last}")

    def restart_session(self) -> None:
        """A fresh session: a new seed process that has never seen these clients."""
        self.daemon.ctl("stop")
        self.start_session()

    def boot_env(self) -> str:
        return self.lab.clients[0].ns.run(
            "curl", "-sSf", "--noproxy", "*", f"http://{self.server}/os/{OS_NAME}/boot.env",
            env=clean_env()).stdout

    def torrent(self) -> bytes:
        """The daemon's torrent of the OS, as a client fetches it."""
        return subprocess.run(
            ["ip", "netns", "exec", self.lab.clients[0].ns.name, "curl", "-sSf", "--noproxy",
             "*", f"http://{self.server}/torrents/{OS_NAME}.torrent"],
            capture_output=True, check=True, env=clean_env()).stdout

    def stop(self) -> None:
        self.daemon.stop()
