"""boottorrentd as a child process: start it, wait for READY=1, stop or kill it, read its log;
and the daemon on a private bus in a namespace, as the benchmark and the lab simulator run it."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from boottorrentd.util.wait import wait_until

from .bus import PrivateBus


def venv_bin(program: str) -> str:
    """The program installed beside this Python (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).parent / program
    return str(candidate) if candidate.exists() else program


class DaemonProcess:
    """boottorrentd with its own config, state and runtime folders; stderr into a log file."""

    def __init__(self, config: Path, state_dir: Path, runtime_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.runtime_dir = runtime_dir
        self.process: subprocess.Popen | None = None
        self.notifications: list[str] = []
        # A file, not a pipe: a pipe nobody reads would block a chatty daemon.
        self.log_path = runtime_dir.parent / f"boottorrentd-{os.getpid()}.log"
        # Another boottorrentd (e.g. one installed into a fresh venv) may stand in.
        self.program = venv_bin("boottorrentd")

    def start(self, env: dict[str, str], prefix: list[str] | None = None,
              timeout: float = 20) -> None:
        """Start the daemon; return once it has sent READY=1, raise if it exits first."""
        self.runtime_dir.parent.mkdir(parents=True, exist_ok=True)
        notify_path = self.runtime_dir.parent / f".notify-{os.getpid()}-{time.monotonic_ns()}"
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(str(notify_path))
        notify.settimeout(0.2)
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                [*(prefix or []), self.program, "--config", str(self.config),
                 "--state-dir", str(self.state_dir), "--runtime-dir", str(self.runtime_dir)],
                env=dict(env, NOTIFY_SOCKET=str(notify_path)), stderr=log,
            )
        process = self.process

        def ready() -> bool:
            if process.poll() is not None:
                self.process = None
                raise RuntimeError(f"boottorrentd exited: {self.log().strip()}")
            try:
                msg = notify.recv(4096).decode()
            except TimeoutError:
                return False
            self.notifications.append(msg)
            return "READY=1" in msg.split("\n")

        try:
            # recv waits up to 0.2 s itself: no pause between the checks.
            wait_until(ready, timeout=timeout, what="boottorrentd to send READY=1",
                       interval=0)
        finally:
            notify.close()
            notify_path.unlink(missing_ok=True)

    def log(self) -> str:
        """What the daemon has written on stderr so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> tuple[int, str]:
        """SIGTERM; return the exit code and what the daemon wrote on stderr."""
        assert self.process is not None
        self.process.terminate()
        code = self.process.wait(20)
        self.process = None
        return code, self.log()

    def stop_or_kill(self) -> None:
        """SIGTERM, and SIGKILL when it does not end well: a harness tearing down."""
        try:
            self.stop()
        except Exception:
            if self.process is not None:
                self.kill()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None


class DaemonOnBus:
    """boottorrentd in a network namespace on a private system bus of its own, driven by
    boottorrentctl. Its files go below `workdir`: boottorrent.yaml, state/, run/.

    `base_env` is the environment the daemon and boottorrentctl start from (this one's by
    default); the bus is their system bus either way."""

    def __init__(self, workdir: Path, base_env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.base_env = base_env
        self.bus = PrivateBus()
        self.daemon: DaemonProcess | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ if self.base_env is None else self.base_env,
                   DBUS_SYSTEM_BUS_ADDRESS=self.bus.address)
        env.pop("NOTIFY_SOCKET", None)
        return env

    @property
    def running(self) -> bool:
        return self.daemon is not None and self.daemon.process is not None

    @property
    def pid(self) -> int:
        assert self.daemon is not None and self.daemon.process is not None
        return self.daemon.process.pid

    def start(self, config: dict[str, Any], netns: str, timeout: float = 60) -> None:
        """Write `config`, start the bus, and the daemon in `netns`; return once it is ready."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "boottorrent.yaml"
        conf.write_text(yaml.safe_dump(config, sort_keys=False))
        self.bus.start()
        self.daemon = DaemonProcess(conf, self.workdir / "state", self.workdir / "run")
        self.daemon.start(self.env, ["ip", "netns", "exec", netns], timeout=timeout)

    def ctl(self, *args: str, timeout: float = 300) -> str:
        """boottorrentctl's output; raises with its error message when it fails."""
        result = subprocess.run([venv_bin("boottorrentctl"), *args], env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"boottorrentctl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def status(self) -> dict[str, Any]:
        return json.loads(self.ctl("status", "--json"))

    def seed_status(self, os_name: str) -> dict[str, Any]:
        """The OS's entry in the daemon's seeding status (empty before it seeds)."""
        return next((s for s in self.status().get("seeding", []) if s.get("name") == os_name),
                    {})

    def stop(self) -> None:
        """Stop the boot session and the daemon (killed when it does not end), then the bus."""
        if self.daemon is not None and self.running:
            with contextlib.suppress(Exception):
                self.ctl("stop", timeout=60)
            self.daemon.stop_or_kill()
        self.daemon = None
        self.bus.stop()
