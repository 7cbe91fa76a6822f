"""A private system bus, so that a daemon of the lab or the tests leaves the host's alone.

PrivateBus is a dbus-daemon with the system bus's default-deny policy plus the project's
own policy file: the daemon runs exactly as under the real system bus.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from boottorrentd.util.wait import wait_until

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
  <servicedir>{services}</servicedir>
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
        # Bus activation: empty unless `activates` puts a service file there.
        self.services = self.dir / "services"
        self.process: subprocess.Popen | None = None

    def start(self) -> "PrivateBus":
        policy = POLICY_FILE if POLICY_FILE.exists() else INSTALLED_POLICY_FILE
        conf = self.dir / "bus.conf"
        self.services.mkdir(exist_ok=True)
        conf.write_text(BUS_CONFIG.format(socket=self.socket, policy=policy,
                                          services=self.services))
        self.process = subprocess.Popen(["dbus-daemon", "--nofork", f"--config-file={conf}"])
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"dbus-daemon exited at start (config {conf})")
            return self.socket.exists()

        wait_until(listening, timeout=10, what="dbus-daemon to create its socket",
                   interval=0.02)
        return self

    def activates(self, name: str, command: list[str]) -> None:
        """Let the first call to `name` start `command`, as the system bus's activation
        does; the command gets this bus as its system bus."""
        exec_line = " ".join(["/usr/bin/env", f"DBUS_SYSTEM_BUS_ADDRESS={self.address}",
                              *command])
        (self.services / f"{name}.service").write_text(
            f"[D-BUS Service]\nName={name}\nExec={exec_line}\nUser=root\n")

    @property
    def env(self) -> dict[str, str]:
        """This environment with the bus as the system bus (and no NOTIFY_SOCKET of ours)."""
        env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.address)
        env.pop("NOTIFY_SOCKET", None)
        return env

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
