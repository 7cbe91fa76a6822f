"""boottorrentd as a child process: start it, wait for READY=1, stop or kill it, read its log."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from boottorrentd.util.wait import wait_until


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
