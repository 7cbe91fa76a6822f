"""The D-Bus face of the daemon: translates calls to the manager and back, no logic.

Each object's properties are declared once, in a table of BusProperty (D-Bus name,
signature, how to read it from the model); `_exports` turns a table into the getters
dbus-fast/dbus-next introspect. Add a property by adding a row, nowhere else.

Do not add `from __future__ import annotations` here: both D-Bus libraries read the
signature strings from the annotations at class creation.
"""

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from operator import attrgetter
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
from boottorrentd.bus.coalesce import Coalescer
from boottorrentd.clients.registry import Client
from boottorrentd.errors import BootTorrentError, InvalidArgument
from boottorrentd.library.store import OSEntry
from boottorrentd.manager import Manager

log = logging.getLogger(__name__)

# How often OSProgress may fire per OS: enough for a smooth bar, cheap on the bus.
_PROGRESS_INTERVAL_S = 0.2


@dataclass(frozen=True)
class BusProperty:
    """One read-only D-Bus property of an object, read from the model the object shows."""

    name: str
    signature: str
    read: Callable[[Any], Any]
    # The model attribute whose change the object announces with PropertiesChanged.
    field: str = ""


def _field(name: str, signature: str, field: str,
           convert: Callable[[Any], Any] = lambda v: v) -> BusProperty:
    return BusProperty(name, signature, lambda model: convert(getattr(model, field)), field)


def _usec(seconds: float) -> int:
    # Times as µs, as systemd's *USec properties are.
    return int(seconds * 1_000_000)


def _exports(table: tuple[BusProperty, ...], model: str) -> Callable[[type], type]:
    """Give a ServiceInterface one read-only property per row, read from `self.<model>`."""

    def getter(prop: BusProperty) -> Any:
        def get(self):
            return prop.read(getattr(self, model))

        get.__name__ = prop.name
        # The libraries read the signature from the return annotation, as when hand-written.
        get.__annotations__ = {"return": prop.signature}
        return dbus_property(access=PropertyAccess.READ, name=prop.name)(get)

    def decorate(cls: type) -> type:
        for prop in table:
            setattr(cls, prop.name, getter(prop))
        return cls

    return decorate


def _variants(signatures: dict[str, str], values: dict[str, Any]) -> dict[str, Variant]:
    """A record as a{sv}: each key's value wrapped with the key's declared signature."""
    return {key: Variant(signatures[key], values[key]) for key in signatures}


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


def _os_field(name: str, key: str) -> BusProperty:
    """One of the method's own config.yaml keys; "" when the OS's method has no such key."""
    return BusProperty(name, "s", lambda entry: entry.spec.fields.get(key, ""))


OS_PROPERTIES = (
    BusProperty("Name", "s", attrgetter("name")),
    BusProperty("DisplayName", "s", attrgetter("spec.dispname")),
    BusProperty("Method", "s", attrgetter("spec.method")),
    BusProperty("SizeBytes", "t", attrgetter("size_bytes")),
    BusProperty("InfoHash", "s", attrgetter("torrent.infohash")),
    BusProperty("TorrentPath", "s", lambda entry: str(entry.torrent_path)),
    BusProperty("Path", "s", lambda entry: str(entry.path)),
    BusProperty("Linked", "b", attrgetter("linked")),
    BusProperty("PieceLength", "u", attrgetter("torrent.piece_length")),
    BusProperty("FileCount", "u", lambda entry: len(entry.torrent.files)),
    # All of the method's own keys (kernel, initrd, cmdline, bin, ...), then the usual ones.
    BusProperty("Fields", "a{ss}", lambda entry: dict(entry.spec.fields)),
    _os_field("Kernel", "kernel"),
    _os_field("Initrd", "initrd"),
    _os_field("Cmdline", "cmdline"),
    _os_field("Bin", "bin"),
    _os_field("BinArgs", "binargs"),
    _os_field("Args", "args"),
    _os_field("Squashfs", "squashfs"),
    _os_field("Image", "image"),
    # Why the OS is not served (not seeded, offered or assignable), with the fix; "" when
    # it is.
    BusProperty("Problem", "s", attrgetter("problem")),
)


@_exports(OS_PROPERTIES, model="entry")
class OSInterface(ServiceInterface):
    def __init__(self, entry: OSEntry) -> None:
        super().__init__(api.OS_IFACE)
        self.entry = entry


CLIENT_PROPERTIES = (
    _field("MAC", "s", "mac"),
    _field("IPAddress", "s", "ip"),
    _field("Hostname", "s", "hostname"),
    _field("OS", "s", "os"),
    _field("Stage", "s", "stage"),
    _field("Progress", "d", "progress"),
    _field("DownloadedBytes", "t", "downloaded_bytes"),
    _field("UploadedBytes", "t", "uploaded_bytes"),
    _field("DownloadRate", "t", "down_rate"),
    _field("UploadRate", "t", "up_rate"),
    _field("Peers", "u", "peers"),
    _field("LastSeenUSec", "t", "last_seen", _usec),
    _field("Error", "s", "error"),
    _field("AssignedOS", "s", "assigned_os"),
    _field("ImagedOS", "s", "imaged_os"),
)

_CLIENT_BY_FIELD = {prop.field: prop for prop in CLIENT_PROPERTIES}


@_exports(CLIENT_PROPERTIES, model="client")
class ClientInterface(ServiceInterface):
    def __init__(self, client: Client) -> None:
        super().__init__(api.CLIENT_IFACE)
        self.client = client

    def changed(self, fields: set[str]) -> None:
        self.emit_properties_changed({
            prop.name: prop.read(self.client)
            for prop in map(_CLIENT_BY_FIELD.get, fields) if prop is not None
        })


# The keys of each record of the Manager's Children and Seeding properties (a{sv} each).
CHILD_KEYS = {"name": "s", "state": "s", "pid": "u", "uptime_usec": "t", "restarts": "u"}
SEED_KEYS = {"name": "s", "infohash": "s", "status": "s", "peers": "u", "uploaded_bytes": "t"}


def _children(manager: Manager) -> list[dict[str, Variant]]:
    """Each supervised child of the running session."""
    session = manager.session
    if session is None:
        return []
    return [_variants(CHILD_KEYS, {"name": c.name, "state": c.state, "pid": c.pid,
                                   "uptime_usec": _usec(c.uptime_s), "restarts": c.restarts})
            for c in session.children()]


def _seeding(manager: Manager) -> list[dict[str, Variant]]:
    """Each torrent the session seeds, named by its library OS."""
    session = manager.session
    if session is None:
        return []
    names = {e.torrent.infohash: e.name for e in manager.library.entries.values()}
    return [_variants(SEED_KEYS, {"name": names.get(s.infohash, s.name), "infohash": s.infohash,
                                  "status": s.status, "peers": s.peers,
                                  "uploaded_bytes": s.uploaded_bytes})
            for s in session.seeding]


MANAGER_PROPERTIES = (
    BusProperty("Version", "s", lambda manager: __version__),
    BusProperty("State", "s", attrgetter("state")),
    BusProperty("StateReason", "s", attrgetter("state_reason")),
    # The configuration the session runs on (when stopped: the file's, for the next start).
    BusProperty("Interface", "s", attrgetter("config_in_use.dnsmasq.interface")),
    BusProperty("HostAddress", "s", lambda manager: str(manager.config_in_use.boot_network)),
    BusProperty("HTTPPort", "q", attrgetter("config_in_use.http.port")),
    BusProperty("Children", "aa{sv}", _children),
    BusProperty("Seeding", "aa{sv}", _seeding),
    BusProperty("ConfigFile", "s", lambda manager: str(manager.config_path)),
    BusProperty("StateDirectory", "s", lambda manager: str(manager.state_dir)),
    BusProperty("RuntimeDirectory", "s", lambda manager: str(manager.runtime_dir)),
)

# What a change of the session's state changes.
_STATE_PROPERTIES = [p for p in MANAGER_PROPERTIES
                     if p.name in ("State", "StateReason", "Children", "Seeding")]
# What a reload or a start or stop of the session may change.
_CONFIG_PROPERTIES = [p for p in MANAGER_PROPERTIES
                      if p.name in ("Interface", "HostAddress", "HTTPPort")]


@_exports(MANAGER_PROPERTIES, model="manager")
class ManagerInterface(ServiceInterface):
    def __init__(self, bus: MessageBus, manager: Manager) -> None:
        super().__init__(api.MANAGER_IFACE)
        self.bus = bus
        self.manager = manager
        self._os_objects: dict[str, OSInterface] = {}
        self._last_progress: dict[tuple[str, str], float] = {}
        manager.on_os_added.append(self._export_os)
        manager.on_os_removed.append(self._unexport_os)
        manager.library.on_problem.append(self._os_problem)
        manager.on_progress.append(self._progress)
        manager.on_state_change.append(self._state_changed)
        manager.on_config_change.append(self._config_changed)
        manager.on_build_progress.append(self.BuildProgress)
        for entry in manager.library.entries.values():
            self._export_os(entry)
        self._client_objects: dict[str, ClientInterface] = {}
        # Progress of many machines is merged into a bounded signal rate (coalesce.py).
        self._client_signals = Coalescer(self._emit_client)
        manager.registry.on_new.append(self._export_client)
        manager.registry.on_change.append(self._client_changed)
        for client in manager.registry.clients.values():
            self._export_client(client)

    def _export_client(self, client: Client) -> None:
        iface = ClientInterface(client)
        self._client_objects[client.mac] = iface
        self.bus.export(api.client_path(client.mac), iface)

    def _client_changed(self, client: Client, fields: set[str]) -> None:
        # A new stage or error goes out at once: listeners follow a machine's stages.
        self._client_signals.changed(client.mac, fields,
                                     now=bool(fields & {"stage", "error"}))

    def close(self) -> None:
        """The daemon stops: client changes that wait for their signal go out now."""
        self._client_signals.close()

    def _emit_client(self, mac: object, fields: set[str]) -> None:
        iface = self._client_objects.get(str(mac))
        if iface is not None:
            iface.changed(fields)

    def _state_changed(self) -> None:
        self.emit_properties_changed({p.name: p.read(self.manager) for p in _STATE_PROPERTIES})

    def _config_changed(self) -> None:
        self.emit_properties_changed({p.name: p.read(self.manager) for p in _CONFIG_PROPERTIES})

    def _export_os(self, entry: OSEntry) -> None:
        iface = OSInterface(entry)
        self._os_objects[entry.name] = iface
        self.bus.export(api.os_path(entry.name), iface)

    def _os_problem(self, entry: OSEntry) -> None:
        iface = self._os_objects.get(entry.name)
        if iface is not None:
            iface.entry = entry
            iface.emit_properties_changed({"Problem": entry.problem})

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

    @method()
    @_dbus_errors
    async def AddOS(self, name: "s", source_dir: "s", options: "a{sv}") -> "o":
        await auth.require_manage(self.bus, "AddOS")
        opts = _options(options, {"link": "b", "config": "a{ss}", "from": "b"})
        entry = await self.manager.add_os(
            name, source_dir, link=opts.get("link", False), config_values=opts.get("config"),
            from_source=opts.get("from", False),
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
    async def Reload(self) -> "asas":
        await auth.require_manage(self.bus, "Reload")
        changes = await self.manager.reload()
        return [list(changes.live), list(changes.restart)]

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
    async def StopSeeding(self, os: "s"):
        await auth.require_manage(self.bus, "StopSeeding")
        await self.manager.stop_seeding(os)

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
