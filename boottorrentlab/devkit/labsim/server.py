"""One boot server of the simulated lab: a namespace, a private bus, the daemon on it."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path
from typing import Any

import yaml

from ..bus import PrivateBus
from ..daemon import DaemonProcess, venv_bin
from ..lan import Netns
from .config import OS_NAME, TRACKER_PORT


class SimServer:
    """One boot server: a namespace, a private bus, the daemon on it."""

    def __init__(self, ns: Netns, host: str, workdir: Path) -> None:
        self.ns = ns
        self.host = host
        self.workdir = workdir
        self.bus = PrivateBus()
        self.daemon: DaemonProcess | None = None
        self.seed_uploaded = 0  # the seed's count when the server was stopped

    @property
    def tracker(self) -> str:
        return f"http://{self.host}:{TRACKER_PORT}/announce"

    def ctl(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([venv_bin("boottorrentctl"), *args], env=self.bus.env,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"boottorrentctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def start(self, config: dict[str, Any]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "boottorrent.yaml"
        conf.write_text(yaml.safe_dump(config, sort_keys=False))
        self.bus.start()
        self.daemon = DaemonProcess(conf, self.workdir / "state", self.workdir / "run")
        self.daemon.start(self.bus.env, ["ip", "netns", "exec", self.ns.name], timeout=60)

    def seed_status(self) -> dict[str, Any]:
        status = json.loads(self.ctl("status", "--json"))
        return next((s for s in status.get("seeding", []) if s.get("name") == OS_NAME), {})

    def seeding(self) -> bool:
        return self.seed_status().get("status") == "seeding"

    @property
    def running(self) -> bool:
        return self.daemon is not None and self.daemon.process is not None

    def stop(self) -> None:
        if self.running:
            assert self.daemon is not None
            with contextlib.suppress(Exception):
                self.seed_uploaded = int(self.seed_status().get("uploaded_bytes", 0))
                self.ctl("stop", timeout=60)
            self.daemon.stop_or_kill()
        self.bus.stop()

