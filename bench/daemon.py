"""The real daemon on a private system bus in the server namespace, with one OS.

Experiments change the daemon only through its configuration file: `--set KEY=VALUE`
for any key, `--piece-size` for `library.piece_length`, `--transmission-setting` for
`transmission.settings` (merged into the seed's settings.json).
"""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.network import ShapedLan
from bench.proc import clean_env, say
from bench.units import human_size
from boottorrentd.util.wait import wait_until
from boottorrentlab.devkit.bus import PrivateBus
from boottorrentlab.devkit.daemon import DaemonProcess, venv_bin

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
        self.bus = PrivateBus()
        self.daemon: DaemonProcess | None = None
        self.config: dict[str, Any] = {}

    @property
    def host(self) -> str:
        assert self.lab.server is not None
        return self.lab.server.address

    @property
    def server(self) -> str:
        return f"{self.host}:{HTTP_PORT}"

    @property
    def env(self) -> dict[str, str]:
        return clean_env({"DBUS_SYSTEM_BUS_ADDRESS": self.bus.address})

    @property
    def library(self) -> Path:
        return self.work / "state" / "oss"

    def ctl(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([venv_bin("boottorrentctl"), *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"boottorrentctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def status(self) -> dict[str, Any]:
        return json.loads(self.ctl("status", "--json"))

    def _seed(self) -> dict[str, Any]:
        """The OS's entry in the daemon's seeding status (empty before it seeds)."""
        return next((s for s in self.status().get("seeding", []) if s.get("name") == OS_NAME),
                    {})

    def seed_uploaded(self) -> int:
        """What transmission says it has uploaded of the OS (payload bytes)."""
        return int(self._seed().get("uploaded_bytes", 0))

    def start(self) -> None:
        lan = self.lab.lan
        self.config = daemon_config(self.host, f"{lan.address(200)},{lan.address(250)},1h",
                                    self.options)
        # The daemon's children run as nobody: they must read the state folder.
        self.work.chmod(0o755)
        conf = self.work / "boottorrent.yaml"
        conf.write_text(yaml.safe_dump(self.config, sort_keys=False))
        self.bus.start()
        self.daemon = DaemonProcess(conf, self.work / "state", self.work / "run")
        assert self.lab.server is not None
        self.daemon.start(self.env, ["ip", "netns", "exec", self.lab.server.ns.name],
                          timeout=60)
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
        self.ctl("add-os", OS_NAME, str(src))
        shutil.rmtree(src.parent)

    def start_session(self) -> None:
        """`boottorrentctl start`; return once the seed seeds the OS."""
        self.ctl("start")
        last: dict[str, Any] = {}

        def seeding() -> bool:
            nonlocal last
            last = self._seed()
            return last.get("status") == "seeding"

        wait_until(seeding, timeout=120, interval=0.2,
                   what=lambda: f"the daemon does not seed {OS_NAME}: {last}")

    def restart_session(self) -> None:
        """A fresh session: a new seed process that has never seen these clients."""
        self.ctl("stop")
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
        if self.daemon is not None and self.daemon.process is not None:
            with contextlib.suppress(Exception):
                self.ctl("stop", timeout=60)
            self.daemon.stop_or_kill()
        self.daemon = None
        self.bus.stop()
