"""The D-Bus face of the daemon: translates calls to the manager and back, no logic.

Do not add `from __future__ import annotations` here: both D-Bus libraries read the
signature strings from the annotations at class creation.
"""

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from . import __version__, api, auth
from .dbus import (
    DBusError,
    MessageBus,
    PropertyAccess,
    ServiceInterface,
    Variant,
    dbus_property,
    method,
    signal,
)
from .errors import BootTorrentError, InvalidArgument
from .library import OSEntry
from .manager import Manager

log = logging.getLogger(__name__)

# How often OSProgress may fire per OS: enough for a smooth bar, cheap on the bus.
_PROGRESS_INTERVAL_S = 0.2


def _dbus_errors(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Turn the daemon's errors into named D-Bus errors with their messages."""

    @functools.wraps(fn)
    async def wrapper(*args: Any) -> Any:
        try:
            return await fn(*args)
        except BootTorrentError as e:
            raise DBusError(e.dbus_name, str(e)) from e
        except Exception as e:
            log.exception("%s failed", fn.__name__)
            raise DBusError(api.ERROR_FAILED, f"internal error: {e}") from e

    return wrapper


def _options(options: dict[str, Variant], known: dict[str, str]) -> dict[str, Any]:
    """Unpack an a{sv} of options, checking names and types."""
    out = {}
    for key, variant in options.items():
        if key not in known:
            raise InvalidArgument(
                f"unknown option {key!r}; known options: {', '.join(sorted(known)) or 'none'}"
            )
        if variant.signature != known[key]:
            raise InvalidArgument(
                f"option {key!r} must have D-Bus type {known[key]!r}, not {variant.signature!r}"
            )
        out[key] = variant.value
    return out


class OSInterface(ServiceInterface):
    def __init__(self, entry: OSEntry) -> None:
        super().__init__(api.OS_IFACE)
        self.entry = entry

    def _field(self, key: str) -> str:
        return self.entry.spec.fields.get(key, "")

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> "s":
        return self.entry.name

    @dbus_property(access=PropertyAccess.READ)
    def DisplayName(self) -> "s":
        return self.entry.spec.dispname

    @dbus_property(access=PropertyAccess.READ)
    def Method(self) -> "s":
        return self.entry.spec.method

    @dbus_property(access=PropertyAccess.READ)
    def SizeBytes(self) -> "t":
        return self.entry.size_bytes

    @dbus_property(access=PropertyAccess.READ)
    def InfoHash(self) -> "s":
        return self.entry.torrent.infohash

    @dbus_property(access=PropertyAccess.READ)
    def TorrentPath(self) -> "s":
        return str(self.entry.torrent_path)

    @dbus_property(access=PropertyAccess.READ)
    def Path(self) -> "s":
        return str(self.entry.path)

    @dbus_property(access=PropertyAccess.READ)
    def Linked(self) -> "b":
        return self.entry.linked

    @dbus_property(access=PropertyAccess.READ)
    def PieceLength(self) -> "u":
        return self.entry.torrent.piece_length

    @dbus_property(access=PropertyAccess.READ)
    def FileCount(self) -> "u":
        return len(self.entry.torrent.files)

    @dbus_property(access=PropertyAccess.READ)
    def Fields(self) -> "a{ss}":
        """The method's own keys from config.yaml (kernel, initrd, cmdline, bin, ...)."""
        return dict(self.entry.spec.fields)

    @dbus_property(access=PropertyAccess.READ)
    def Kernel(self) -> "s":
        return self._field("kernel")

    @dbus_property(access=PropertyAccess.READ)
    def Initrd(self) -> "s":
        return self._field("initrd")

    @dbus_property(access=PropertyAccess.READ)
    def Cmdline(self) -> "s":
        return self._field("cmdline")

    @dbus_property(access=PropertyAccess.READ)
    def Bin(self) -> "s":
        return self._field("bin")

    @dbus_property(access=PropertyAccess.READ)
    def BinArgs(self) -> "s":
        return self._field("binargs")

    @dbus_property(access=PropertyAccess.READ)
    def Args(self) -> "s":
        return self._field("args")

    @dbus_property(access=PropertyAccess.READ)
    def Squashfs(self) -> "s":
        return self._field("squashfs")

    @dbus_property(access=PropertyAccess.READ)
    def Image(self) -> "s":
        return self._field("image")


class ManagerInterface(ServiceInterface):
    def __init__(self, bus: MessageBus, manager: Manager) -> None:
        super().__init__(api.MANAGER_IFACE)
        self.bus = bus
        self.manager = manager
        self._os_objects: dict[str, OSInterface] = {}
        self._last_progress: dict[tuple[str, str], float] = {}
        manager.on_os_added.append(self._export_os)
        manager.on_os_removed.append(self._unexport_os)
        manager.on_progress.append(self._progress)
        for entry in manager.library.entries.values():
            self._export_os(entry)

    def _export_os(self, entry: OSEntry) -> None:
        iface = OSInterface(entry)
        self._os_objects[entry.name] = iface
        self.bus.export(api.os_path(entry.name), iface)

    def _unexport_os(self, name: str) -> None:
        iface = self._os_objects.pop(name, None)
        if iface is not None:
            self.bus.unexport(api.os_path(name), iface)

    def _progress(self, name: str, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        key = (name, phase)
        if done < total and now - self._last_progress.get(key, 0.0) < _PROGRESS_INTERVAL_S:
            return
        self._last_progress[key] = now
        if done >= total:
            self._last_progress.pop(key, None)
        self.OSProgress(name, phase, done, total)

    @signal()
    def OSProgress(self, name: "s", phase: "s", done: "t", total: "t") -> "sstt":
        return [name, phase, done, total]

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> "s":
        return __version__

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> "s":
        return self.manager.state

    @dbus_property(access=PropertyAccess.READ)
    def ConfigFile(self) -> "s":
        return str(self.manager.config_path)

    @dbus_property(access=PropertyAccess.READ)
    def StateDirectory(self) -> "s":
        return str(self.manager.state_dir)

    @dbus_property(access=PropertyAccess.READ)
    def RuntimeDirectory(self) -> "s":
        return str(self.manager.runtime_dir)

    @method()
    @_dbus_errors
    async def AddOS(self, name: "s", source_dir: "s", options: "a{sv}") -> "o":
        await auth.require_manage(self.bus, "AddOS")
        opts = _options(options, {"link": "b", "config": "a{ss}"})
        entry = await self.manager.add_os(
            name, source_dir, link=opts.get("link", False), config_values=opts.get("config")
        )
        return api.os_path(entry.name)

    @method()
    @_dbus_errors
    async def RemoveOS(self, name: "s"):
        await auth.require_manage(self.bus, "RemoveOS")
        await self.manager.remove_os(name)

    @method()
    @_dbus_errors
    async def GetOS(self, name: "s") -> "o":
        return api.os_path(self.manager.library.get(name).name)

    @method()
    @_dbus_errors
    async def ImportProject(self, project_dir: "s", options: "a{sv}") -> "ao":
        await auth.require_manage(self.bus, "ImportProject")
        _options(options, {})
        names = await self.manager.import_project(project_dir)
        return [api.os_path(n) for n in names]
