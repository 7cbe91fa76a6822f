"""A headless desktop for the desktop tool's tests and screenshots: Xvfb and a session bus.

The session bus activates at-spi2-core's accessibility bus (org.a11y.Bus) the first time
an application asks for it, so that what the window shows can be read and driven through
AT-SPI; both run with this desktop's DISPLAY. `app_env` adds the system bus to use.
"""

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from boottorrentlab.devkit.lan import stop_processes

# Debian's python3-gi lives beside the system Python; a venv without system packages
# cannot import it, so the window always runs on /usr/bin/python3.
SYSTEM_PYTHON = "/usr/bin/python3"
SOURCE_ROOT = Path(__file__).resolve().parents[2]


class Desktop:
    """`with Desktop() as desk:` runs Xvfb and a session dbus-daemon until the block ends."""

    def __init__(self, width: int = 1280, height: int = 800) -> None:
        self.size = (width, height)
        self.dir = Path(tempfile.mkdtemp(prefix="boottorrent-desktop-"))
        self.display = ""
        self.session_bus = ""
        self._processes: list[subprocess.Popen] = []

    def start(self) -> "Desktop":
        try:
            self._start_x()
            self._start_session_bus()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_x(self) -> None:
        # -displayfd: Xvfb picks a free display number and writes it once it accepts clients.
        read, write = os.pipe()
        width, height = self.size
        xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", f"{width}x{height}x24",
             "-nolisten", "tcp", "-noreset"], pass_fds=(write,), stderr=subprocess.DEVNULL)
        self._processes.append(xvfb)
        os.close(write)
        with os.fdopen(read) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError(f"Xvfb exited ({xvfb.wait()}) before it opened a display; "
                               "is it installed (apt-get install xvfb)?")
        self.display = f":{number}"

    def _start_session_bus(self) -> None:
        bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--print-address",
             f"--address=unix:dir={self.dir}"],
            stdout=subprocess.PIPE, text=True, env=self.env_base())
        self._processes.append(bus)
        assert bus.stdout is not None
        self.session_bus = bus.stdout.readline().strip()
        if not self.session_bus:
            raise RuntimeError(f"the session dbus-daemon exited ({bus.wait()}) at start")

    def env_base(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("WAYLAND_", "AT_SPI_", "XDG_SESSION"))}
        env.update(DISPLAY=self.display, GDK_BACKEND="x11", XDG_RUNTIME_DIR=str(self.dir))
        if self.session_bus:
            env["DBUS_SESSION_BUS_ADDRESS"] = self.session_bus
        return env

    def app_env(self, system_bus: str) -> dict[str, str]:
        """The environment for the window: this desktop, and `system_bus` as its system bus."""
        env = self.env_base()
        env["DBUS_SYSTEM_BUS_ADDRESS"] = system_bus
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT),
                                                        env.get("PYTHONPATH", "")) if p)
        return env

    def run_app(self, system_bus: str, log: Path) -> subprocess.Popen:
        """boottorrent-gtk from this source tree on `system_bus`; stderr into `log`."""
        with open(log, "a") as out:
            proc = subprocess.Popen([SYSTEM_PYTHON, "-m", "boottorrentgtk"],
                                    env=self.app_env(system_bus), stdout=out, stderr=out,
                                    cwd=self.dir)
        return proc

    def screenshot(self, path: Path) -> Path:
        """What the windows show as a PNG: the screen (Pillow reads it over XCB) cut to the
        part that is not the black root window."""
        from PIL import ImageGrab

        screen = ImageGrab.grab(xdisplay=self.display)
        screen.crop(screen.getbbox()).save(path)
        return path

    def stop(self) -> None:
        # The session bus first: it started the accessibility bus, which needs the display.
        stop_processes(list(reversed(self._processes)))
        self._processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "Desktop":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
