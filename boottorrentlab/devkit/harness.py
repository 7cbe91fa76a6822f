"""Run boottorrentd beside the host's own services: for the demo, the lab and tests.

PrivateBus is a dbus-daemon with the system bus's default-deny policy plus the project's
own policy file, so the daemon runs exactly as under a real system bus without touching
the host's. DaemonProcess starts boottorrentd and waits for its sd_notify READY=1.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

POLICY_FILE = Path(__file__).resolve().parents[2] / "data/dbus/org.boottorrent1.conf"
INSTALLED_POLICY_FILE = Path("/usr/share/dbus-1/system.d/org.boottorrent1.conf")

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <include>{policy}</include>
</busconfig>
"""


class PrivateBus:
    """`with PrivateBus() as bus:` runs dbus-daemon until the block ends."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="boottorrent-bus-"))
        # Callers dropped to nobody (tests of the access policy) must reach the socket.
        self.dir.chmod(0o755)
        self.socket = self.dir / "system_bus_socket"
        self.address = f"unix:path={self.socket}"
        self.process: subprocess.Popen | None = None

    def start(self) -> "PrivateBus":
        policy = POLICY_FILE if POLICY_FILE.exists() else INSTALLED_POLICY_FILE
        conf = self.dir / "bus.conf"
        conf.write_text(BUS_CONFIG.format(socket=self.socket, policy=policy))
        self.process = subprocess.Popen(["dbus-daemon", "--nofork", f"--config-file={conf}"])
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None:
                raise RuntimeError(f"dbus-daemon exited at start (config {conf})")
            if time.monotonic() > deadline:
                raise RuntimeError("dbus-daemon did not create its socket within 10 s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "PrivateBus":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def venv_bin(program: str) -> str:
    """The program installed beside this Python (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).parent / program
    return str(candidate) if candidate.exists() else program


class DaemonProcess:
    def __init__(self, config: Path, state_dir: Path, runtime_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.runtime_dir = runtime_dir
        self.process: subprocess.Popen | None = None
        self.program = venv_bin("boottorrentd")
        self.notifications: list[str] = []
        # A file, not a pipe: a pipe nobody reads would block a chatty daemon.
        self.log_path = runtime_dir.parent / f"boottorrentd-{os.getpid()}.log"

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
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    self.process = None
                    raise RuntimeError(f"boottorrentd exited: {self.log().strip()}")
                try:
                    msg = notify.recv(4096).decode()
                except TimeoutError:
                    continue
                self.notifications.append(msg)
                if "READY=1" in msg.split("\n"):
                    return
            raise RuntimeError(f"boottorrentd did not send READY=1 within {timeout} s")
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

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        self.process = None
