"""The names the benchmark imports from here (bench/); new code imports them from the
module of their job: devkit.bus (PrivateBus), devkit.daemon (DaemonProcess, venv_bin)."""

from .bus import PrivateBus
from .daemon import DaemonProcess, venv_bin

__all__ = ["DaemonProcess", "PrivateBus", "venv_bin"]
