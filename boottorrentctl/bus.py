"""A thin client of org.boottorrent1: calls, properties and errors people can read."""

import os
from collections.abc import Callable
from typing import Any

from boottorrentd import api
from boottorrentd.bus.backend import BusType, Message, MessageBus, MessageType, Variant


class CtlError(Exception):
    """An error to print on one line; the exit code is 1."""


_FRIENDLY = {
    "org.freedesktop.DBus.Error.ServiceUnknown":
        "boottorrentd is not running: start it with 'systemctl start boottorrentd'",
    "org.freedesktop.DBus.Error.NameHasNoOwner":
        "boottorrentd is not running: start it with 'systemctl start boottorrentd'",
}


def unwrap(value: Any) -> Any:
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


class Client:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus

    @classmethod
    async def connect(cls) -> "Client":
        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except Exception as e:
            address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS",
                                     "unix:path=/run/dbus/system_bus_socket")
            raise CtlError(f"cannot connect to the system bus at {address}: {e}; "
                           "is dbus running?") from e
        return cls(bus)

    async def call(
        self,
        member: str,
        signature: str = "",
        body: list | None = None,
        *,
        path: str = api.MANAGER_PATH,
        interface: str = api.MANAGER_IFACE,
    ) -> list:
        reply = await self.bus.call(Message(
            destination=api.BUS_NAME, path=path, interface=interface, member=member,
            signature=signature, body=body or [],
        ))
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body else reply.error_name
            raise CtlError(_FRIENDLY.get(reply.error_name or "", text))
        return reply.body

    async def properties(self, path: str, interface: str) -> dict[str, Any]:
        (props,) = await self.call("GetAll", "s", [interface], path=path,
                                   interface="org.freedesktop.DBus.Properties")
        return unwrap(props)

    async def managed_objects(self) -> dict[str, dict[str, dict[str, Any]]]:
        (objects,) = await self.call("GetManagedObjects",
                                     interface="org.freedesktop.DBus.ObjectManager")
        return unwrap(objects)

    async def subscribe(self, member: str, handler: Callable[[list], None]) -> None:
        rule = (f"type='signal',sender='{api.BUS_NAME}',interface='{api.MANAGER_IFACE}',"
                f"member='{member}'")

        def on_message(msg: Message) -> None:
            if msg.member == member and msg.interface == api.MANAGER_IFACE:
                handler(msg.body)

        await self.add_match(rule, on_message)

    async def add_match(self, rule: str, handler: Callable[[Message], None]) -> None:
        """Signals that match `rule` (D-Bus match syntax) go to `handler` from now on."""
        await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus", member="AddMatch", signature="s", body=[rule],
        ))

        def on_message(msg: Message) -> None:
            if msg.message_type == MessageType.SIGNAL:
                handler(msg)

        self.bus.add_message_handler(on_message)

    async def follow_clients(self, on_change: Callable[[dict[str, dict[str, Any]]], None]
                             ) -> dict[str, dict[str, Any]]:
        """Every Client object's properties by path, kept current by the daemon's signals
        (InterfacesAdded, PropertiesChanged); `on_change(objects)` after each change."""
        objects: dict[str, dict[str, Any]] = {}

        def on_signal(msg: Message) -> None:
            if msg.member == "InterfacesAdded" and api.CLIENT_IFACE in msg.body[1]:
                objects[msg.body[0]] = unwrap(msg.body[1][api.CLIENT_IFACE])
            elif (msg.member == "PropertiesChanged" and msg.body[0] == api.CLIENT_IFACE
                  and msg.path in objects):
                objects[msg.path].update(unwrap(msg.body[1]))
            else:
                return
            on_change(objects)

        await self.add_match(f"type='signal',sender='{api.BUS_NAME}',"
                             "interface='org.freedesktop.DBus.ObjectManager',"
                             "member='InterfacesAdded'", on_signal)
        await self.add_match(f"type='signal',sender='{api.BUS_NAME}',"
                             "interface='org.freedesktop.DBus.Properties',"
                             f"member='PropertiesChanged',arg0='{api.CLIENT_IFACE}'", on_signal)
        # Subscribed first: a signal the snapshot's reply overtakes was sent before it, so
        # the snapshot is as new or newer.
        for path, ifaces in (await self.managed_objects()).items():
            if api.CLIENT_IFACE in ifaces:
                objects[path] = ifaces[api.CLIENT_IFACE]
        return objects
