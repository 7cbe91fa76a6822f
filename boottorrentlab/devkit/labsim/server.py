"""One boot server of the simulated lab: the daemon on a private bus in a namespace."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..daemon import DaemonOnBus
from ..lan import Netns
from .config import OS_NAME, TRACKER_PORT


class SimServer(DaemonOnBus):
    """A boot server at `host` in namespace `ns`; `start(config, ns.name)` starts it."""

    def __init__(self, ns: Netns, host: str, workdir: Path) -> None:
        super().__init__(workdir)
        self.ns = ns
        self.host = host
        self.seed_uploaded = 0  # the seed's count when the server was stopped

    @property
    def tracker(self) -> str:
        return f"http://{self.host}:{TRACKER_PORT}/announce"

    def uploaded(self) -> int:
        """What the seed engine has uploaded of the OS so far."""
        return int(self.seed_status(OS_NAME).get("uploaded_bytes", 0))

    def seeding(self) -> bool:
        return self.seed_status(OS_NAME).get("status") == "seeding"

    def stop(self) -> None:
        if self.running:
            with contextlib.suppress(Exception):
                self.seed_uploaded = self.uploaded()
        super().stop()
