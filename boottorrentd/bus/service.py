"""The D-Bus face of the daemon: translates calls to the manager and back, no logic.

Do not add `from __future__ import annotations` here: both D-Bus libraries read the
signature strings from the annotations at class creation.
"""

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from boottorrentd import __version__, api
from boottorrentd.bus import auth
from boottorrentd.bus.backend import (
    DBusError,
    MessageBus,
    PropertyAccess,
    ServiceInterface,
    Variant,
    dbus_property,
    method,
    signal,
)
from boottorrentd.clients.registry import Client
from boottorrentd.errors import BootTorrentError, InvalidArgument
from boottorrentd.library.store import OSEntry
from boottorrentd.manager import Manager

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


# Client fields as D-Bus properties: (property name, signature).
_CLIENT_PROPERTIES = {
    "mac": ("MAC", "s"),
    "ip": ("IPAddress", "s"),
    "hostname": ("Hostname", "s"),
    "os": ("OS", "s"),
    "stage": ("Stage", "s"),
    "progress": ("Progress", "d"),
    "downloaded_bytes": ("DownloadedBytes", "t"),
    "uploaded_bytes": ("UploadedBytes", "t"),
    "down_rate": ("DownloadRate", "t"),
    "up_rate": ("UploadRate", "t"),
    "peers": ("Peers", "u"),
    "last_seen": ("LastSeenUSec", "t"),
    "error": ("Error", "s"),
    "assigned_os": ("AssignedOS", "s"),
}


def _client_value(client: Client, field: str) -> Any:
    value = getattr(client, field)
    # Times as µs since the epoch, as systemd's *USec properties are.
    return int(value * 1_000_000) if field == "last_seen" else value


class ClientInterface(ServiceInterface):
    def __init__(self, client: Client) -> None:
        super().__init__(api.CLIENT_IFACE)
        self.client = client

    def changed(self, fields: set[str]) -> None:
        self.emit_properties_changed({
            _CLIENT_PROPERTIES[f][0]: _client_value(self.client, f)
            for f in fields if f in _CLIENT_PROPERTIES
        })

    @dbus_property(access=PropertyAccess.READ)
    def MAC(self) -> "s":
        return self.client.mac

    @dbus_property(access=PropertyAccess.READ)
    def IPAddress(self) -> "s":
        return self.client.ip

    @dbus_property(access=PropertyAccess.READ)
    def Hostname(self) -> "s":
        return self.client.hostname

    @dbus_property(access=PropertyAccess.READ)
    def OS(self) -> "s":
        return self.client.os

    @dbus_property(access=PropertyAccess.READ)
    def Stage(self) -> "s":
        return self.client.stage

    @dbus_property(access=PropertyAccess.READ)
    def Progress(self) -> "d":
        return self.client.progress

    @dbus_property(access=PropertyAccess.READ)
    def DownloadedBytes(self) -> "t":
        return self.client.downloaded_bytes

    @dbus_property(access=PropertyAccess.READ)
    def UploadedBytes(self) -> "t":
        return self.client.uploaded_bytes

    @dbus_property(access=PropertyAccess.READ)
    def DownloadRate(self) -> "t":
        return self.client.down_rate

    @dbus_property(access=PropertyAccess.READ)
    def UploadRate(self) -> "t":
        return self.client.up_rate

    @dbus_property(access=PropertyAccess.READ)
    def Peers(self) -> "u":
        return self.client.peers

    @dbus_property(access=PropertyAccess.READ)
    def LastSeenUSec(self) -> "t":
        return _client_value(self.client, "last_seen")

    @dbus_property(access=PropertyAccess.READ)
    def Error(self) -> "s":
        return self.client.error

    @dbus_property(access=PropertyAccess.READ)
    def AssignedOS(self) -> "s":
        return self.client.assigned_os


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
        manager.on_state_change.append(self._state_changed)
        manager.on_build_progress.append(self.BuildProgress)
        for entry in manager.library.entries.values():
            self._export_os(entry)
        self._client_objects: dict[str, ClientInterface] = {}
        manager.registry.on_new.append(self._export_client)
        manager.registry.on_change.append(self._client_changed)
        for client in manager.registry.clients.values():
            self._export_client(client)

    def _export_client(self, client: Client) -> None:
        iface = ClientInterface(client)
        self._client_objects[client.mac] = iface
        self.bus.export(api.client_path(client.mac), iface)

    def _client_changed(self, client: Client, fields: set[str]) -> None:
        iface = self._client_objects.get(client.mac)
        if iface is not None:
            iface.changed(fields)

    def _state_changed(self) -> None:
        self.emit_properties_changed({
            "State": self.manager.state,
            "StateReason": self.manager.state_reason,
            "Children": self._children(),
            "Seeding": self._seeding(),
        })

    def _children(self) -> list:
        session = self.manager.session
        if session is None:
            return []
        return [[c.name, c.state, c.pid, int(c.uptime_s * 1_000_000), c.restarts]
                for c in session.children()]

    def _seeding(self) -> list:
        session = self.manager.session
        if session is None:
            return []
        names = {e.torrent.infohash: e.name for e in self.manager.library.entries.values()}
        return [[names.get(s.infohash, s.name), s.infohash, s.status, s.peers, s.uploaded_bytes]
                for s in session.seeding]

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

    @signal()
    def BuildProgress(self, step: "s", fraction: "d") -> "sd":
        return [step, fraction]

    @dbus_property(access=PropertyAccess.READ)
    def Version(self) -> "s":
        return __version__

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> "s":
        return self.manager.state

    @dbus_property(access=PropertyAccess.READ)
    def StateReason(self) -> "s":
        return self.manager.state_reason

    @dbus_property(access=PropertyAccess.READ)
    def Interface(self) -> "s":
        return self.manager.config.dnsmasq.interface

    @dbus_property(access=PropertyAccess.READ)
    def HostAddress(self) -> "s":
        return str(self.manager.config.boot_network)

    @dbus_property(access=PropertyAccess.READ)
    def HTTPPort(self) -> "q":
        return self.manager.config.http.port

    @dbus_property(access=PropertyAccess.READ)
    def Children(self) -> "a(ssutu)":
        """(name, state, pid, uptime in µs, restarts) of each supervised child."""
        return self._children()

    @dbus_property(access=PropertyAccess.READ)
    def Seeding(self) -> "a(sssut)":
        """(OS name, infohash, status, peers, uploaded bytes) of each seeded torrent."""
        return self._seeding()

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

    @method()
    @_dbus_errors
    async def StartSession(self):
        await auth.require_manage(self.bus, "StartSession")
        await self.manager.start_session()

    @method()
    @_dbus_errors
    async def StopSession(self):
        await auth.require_manage(self.bus, "StopSession")
        await self.manager.stop_session()

    @method()
    @_dbus_errors
    async def AssignClient(self, mac: "s", os: "s") -> "o":
        await auth.require_manage(self.bus, "AssignClient")
        return api.client_path(await self.manager.assign(mac, os))

    @method()
    @_dbus_errors
    async def UnassignClient(self, mac: "s"):
        await auth.require_manage(self.bus, "UnassignClient")
        await self.manager.unassign(mac)

    @method()
    @_dbus_errors
    async def BuildClientImage(self, options: "a{sv}") -> "a{sv}":
        await auth.require_manage(self.bus, "BuildClientImage")
        opts = _options(options, {"kernel_version": "s"})
        manifest = await self.manager.build_client_image(opts.get("kernel_version") or None)
        return {
            "kernel_version": Variant("s", manifest.kernel_version),
            "vmlinuz_bytes": Variant("t", manifest.vmlinuz["size"]),
            "vmlinuz_sha256": Variant("s", manifest.vmlinuz["sha256"]),
            "initrd_bytes": Variant("t", manifest.initrd["size"]),
            "initrd_sha256": Variant("s", manifest.initrd["sha256"]),
            "files": Variant("u", len(manifest.files)),
        }
