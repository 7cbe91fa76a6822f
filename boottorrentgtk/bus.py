"""The window's model of the daemon, kept from the bus's signals, never by polling.

On the system bus (DBUS_SYSTEM_BUS_ADDRESS in tests) it watches the name
org.boottorrent1 with auto-start, so that bus activation starts a stopped daemon; when
the name appears it reads everything once (ObjectManager.GetManagedObjects and the
Manager's properties) and from then on follows PropertiesChanged, InterfacesAdded,
InterfacesRemoved and OSProgress, whatever their rate. When the name vanishes the model
empties and says so; when it comes back, the model is read afresh.
"""

import re
from collections.abc import Callable
from typing import Any, ClassVar

from gi.repository import Gio, GLib, GObject

from boottorrentd import api
from boottorrentgtk.items import DBusItem, Machine, OSItem

PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER_IFACE = "org.freedesktop.DBus.ObjectManager"
# A changing call may wait for a person typing a password into polkit's dialog.
NO_TIMEOUT = GLib.MAXINT

_REMOTE_PREFIX = re.compile(r"^GDBus\.Error:[\w.]+:\s*")


def error_text(error: GLib.Error) -> str:
    """The daemon's own words from a failed call (GDBus puts the error name before them)."""
    return _REMOTE_PREFIX.sub("", error.message)


class DaemonLink(GObject.Object):
    """`clients` and `oses` are Gio.ListStores of Machine and OSItem; `manager` the
    Manager's properties. `present` says whether the daemon owns its name."""

    __gsignals__: ClassVar[dict] = {
        # The daemon came (True) or went (False).
        "presence": (GObject.SignalFlags.RUN_FIRST, None, (bool,)),
        # Names of Manager properties that changed.
        "manager-changed": (GObject.SignalFlags.RUN_FIRST, None, (object,)),
        # OSProgress(name, phase, done, total).
        "os-progress": (GObject.SignalFlags.RUN_FIRST, None,
                        (str, str, GObject.TYPE_UINT64, GObject.TYPE_UINT64)),
        # A call failed: what was asked, the daemon's message.
        "call-failed": (GObject.SignalFlags.RUN_FIRST, None, (str, str)),
    }

    def __init__(self, connection: Gio.DBusConnection) -> None:
        super().__init__()
        self.connection = connection
        self.present = False
        self.manager: dict[str, Any] = {}
        self.clients = Gio.ListStore(item_type=Machine)
        self.oses = Gio.ListStore(item_type=OSItem)
        self._items: dict[str, DBusItem] = {}
        # Each appearance of the daemon gets a number, so that a late reply to a read of
        # an earlier one is dropped.
        self._generation = 0
        connection.signal_subscribe(
            api.BUS_NAME, None, None, None, None, Gio.DBusSignalFlags.NONE, self._signal)
        Gio.bus_watch_name_on_connection(
            connection, api.BUS_NAME, Gio.BusNameWatcherFlags.AUTO_START,
            self._appeared, self._vanished)

    @classmethod
    def system(cls) -> "DaemonLink":
        """On the system bus; GLib.Error when there is none."""
        return cls(Gio.bus_get_sync(Gio.BusType.SYSTEM, None))

    # --- calls ---------------------------------------------------------------------------

    def call(self, what: str, member: str, args: GLib.Variant | None = None,
             on_reply: Callable[[Any], None] | None = None,
             on_error: Callable[[str], None] | None = None) -> None:
        """Call a Manager method; polkit may ask for a password. A failure is told through
        "call-failed" (and `on_error`) with the daemon's message; `what` names the action
        for that message."""

        def done(connection: Gio.DBusConnection, result: Gio.AsyncResult) -> None:
            try:
                reply = connection.call_finish(result)
            except GLib.Error as e:
                message = error_text(e)
                if on_error is not None:
                    on_error(message)
                self.emit("call-failed", what, message)
                return
            if on_reply is not None:
                on_reply(reply.unpack())

        self.connection.call(
            api.BUS_NAME, api.MANAGER_PATH, api.MANAGER_IFACE, member, args, None,
            Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION, NO_TIMEOUT, None, done)

    # --- the name ------------------------------------------------------------------------

    def _appeared(self, connection: Gio.DBusConnection, name: str, owner: str) -> None:
        self._generation += 1
        generation = self._generation
        self._clear()
        self.present = True
        self.emit("presence", True)

        def read(path: str, iface: str, member: str, args: GLib.Variant | None,
                 take: Callable[[Any], None]) -> None:
            def done(conn: Gio.DBusConnection, result: Gio.AsyncResult) -> None:
                try:
                    (value,) = conn.call_finish(result).unpack()
                except GLib.Error as e:
                    if generation == self._generation:
                        self.emit("call-failed", f"Reading {path}", error_text(e))
                    return
                if generation == self._generation:
                    take(value)

            connection.call(owner, path, iface, member, args, None,
                            Gio.DBusCallFlags.NONE, -1, None, done)

        read(api.MANAGER_PATH, PROPERTIES_IFACE, "GetAll",
             GLib.Variant("(s)", (api.MANAGER_IFACE,)), self._manager_update)
        read(api.MANAGER_PATH, OBJECT_MANAGER_IFACE, "GetManagedObjects", None,
             self._take_objects)

    def _vanished(self, connection: Gio.DBusConnection | None, name: str) -> None:
        self._generation += 1
        self._clear()
        self.present = False
        self.emit("presence", False)

    def _clear(self) -> None:
        self._items.clear()
        self.clients.remove_all()
        self.oses.remove_all()
        changed = set(self.manager)
        self.manager = {}
        if changed:
            self.emit("manager-changed", changed)

    # --- objects -------------------------------------------------------------------------

    def _take_objects(self, objects: dict[str, dict[str, dict[str, Any]]]) -> None:
        machines: list[DBusItem] = []
        oses: list[DBusItem] = []
        for path, interfaces in objects.items():
            item = self._item_for(path, interfaces)
            if item is None or path in self._items:
                continue
            self._items[path] = item
            (machines if isinstance(item, Machine) else oses).append(item)
        # One splice each: the wall builds its tiles once, not once per machine.
        self.clients.splice(self.clients.get_n_items(), 0, machines)
        self.oses.splice(self.oses.get_n_items(), 0, oses)

    @staticmethod
    def _item_for(path: str, interfaces: dict[str, dict[str, Any]]) -> DBusItem | None:
        if api.CLIENT_IFACE in interfaces:
            return Machine(path, interfaces[api.CLIENT_IFACE])
        if api.OS_IFACE in interfaces:
            return OSItem(path, interfaces[api.OS_IFACE])
        return None

    def _add(self, path: str, interfaces: dict[str, dict[str, Any]]) -> None:
        if path in self._items:
            return
        item = self._item_for(path, interfaces)
        if item is None:
            return
        self._items[path] = item
        (self.clients if isinstance(item, Machine) else self.oses).append(item)

    def _remove(self, path: str) -> None:
        item = self._items.pop(path, None)
        if item is None:
            return
        store = self.clients if isinstance(item, Machine) else self.oses
        found, position = store.find(item)
        if found:
            store.remove(position)

    def _changed(self, path: str, iface: str, changed: dict[str, Any]) -> None:
        if path == api.MANAGER_PATH and iface == api.MANAGER_IFACE:
            self._manager_update(changed)
            return
        item = self._items.get(path)
        if item is None:
            return
        names = item.update(changed)
        if isinstance(item, Machine) and names & Machine.PLACE_KEYS:
            # Replacing the item in place makes the wall's filter and sorter look at it
            # again, and at nothing else.
            found, position = self.clients.find(item)
            if found:
                self.clients.splice(position, 1, [item])

    def _manager_update(self, changed: dict[str, Any]) -> None:
        self.manager.update(changed)
        self.emit("manager-changed", set(changed))

    def _signal(self, connection: Gio.DBusConnection, sender: str, path: str, iface: str,
                member: str, params: GLib.Variant) -> None:
        if not self.present or not path.startswith(api.MANAGER_PATH):
            return
        if iface == PROPERTIES_IFACE and member == "PropertiesChanged":
            name, changed, _invalidated = params.unpack()
            self._changed(path, name, changed)
        elif iface == OBJECT_MANAGER_IFACE and member == "InterfacesAdded":
            # The object's path is the first argument: the signal may come from the
            # manager's path (as the spec says) or from the object's own (dbus-fast).
            obj, interfaces = params.unpack()
            self._add(obj, interfaces)
        elif iface == OBJECT_MANAGER_IFACE and member == "InterfacesRemoved":
            obj, names = params.unpack()
            if api.CLIENT_IFACE in names or api.OS_IFACE in names:
                self._remove(obj)
        elif iface == api.MANAGER_IFACE and member == "OSProgress":
            self.emit("os-progress", *params.unpack())
