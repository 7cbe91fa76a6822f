"""Fixtures of the desktop tool's tests: one headless desktop for the module, and the window
(boottorrent-gtk from this tree) on the test's private system bus."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from boottorrentlab.devkit.bus import PrivateBus
from boottorrentlab.devkit.desktop import Desktop
from boottorrentlab.devkit.lan import stop_processes
from tests.conftest import ROOT

# Screenshots the tests take, kept after the run (not in git); wall.png is the README's
# docs/boottorrent-gtk.png.
SHOTS = ROOT / "tests/desktop/screenshots"


# Module scope: the environment below is restored when the module is done, so that the
# suite's later tests see no display. pyatspi keeps its first accessibility bus for the
# life of the process, so only one module may use this fixture.
@pytest.fixture(scope="module")
def desktop() -> Iterator[Desktop]:
    with Desktop() as desk:
        saved = {k: os.environ.get(k) for k in ("DISPLAY", "DBUS_SESSION_BUS_ADDRESS")}
        # pyatspi, in this process, finds the accessibility bus through the session bus.
        os.environ.update(DISPLAY=desk.display, DBUS_SESSION_BUS_ADDRESS=desk.session_bus)
        yield desk
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Window:
    """The running window: its process and its accessible application."""

    def __init__(self, desktop: Desktop, bus: PrivateBus, log: Path) -> None:
        from tests.desktop import atspi

        self.desktop = desktop
        self.log = log
        self.process = desktop.run_app(bus.address, log)
        try:
            self.app = atspi.application(self.process.pid)
        except TimeoutError:
            self.close()
            raise AssertionError(f"the window did not show up: {log.read_text()}") from None

    def screenshot(self, name: str) -> Path:
        """The window as a PNG in SHOTS."""
        SHOTS.mkdir(exist_ok=True)
        return self.desktop.screenshot(SHOTS / name)

    def close(self) -> None:
        stop_processes([self.process])


@pytest.fixture
def open_window(desktop: Desktop, tmp_path: Path) -> Iterator:
    """`open_window(bus)` starts the window on that system bus; it is closed at the end."""
    windows: list[Window] = []

    def start(bus: PrivateBus) -> Window:
        window = Window(desktop, bus, tmp_path / f"boottorrent-gtk-{len(windows)}.log")
        windows.append(window)
        return window

    yield start
    for window in windows:
        window.close()
