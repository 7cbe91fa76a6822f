"""Who may change the daemon: uid 0, or whoever polkit grants org.boottorrent1.manage.

dbus-next/dbus-fast hand a service method its arguments but not the message, so the
caller's unique name is not visible to it. Both libraries run user message handlers
synchronously just before they dispatch a call, and an async method runs in a task
created right then, which copies the current context: a ContextVar set in the handler
is therefore exactly the caller of the method that reads it.
"""

from contextvars import ContextVar

from boottorrentd import api
from boottorrentd.bus.backend import Message, MessageBus, MessageType, Variant
from boottorrentd.errors import AccessDenied

_caller: ContextVar[str | None] = ContextVar("boottorrent_caller", default=None)

# CheckAuthorization flag: let polkit ask an agent for a password (auth_admin_keep).
_POLKIT_ALLOW_INTERACTION = 1


def track_callers(bus: MessageBus) -> None:
    def remember(msg: Message) -> None:
        if msg.message_type == MessageType.METHOD_CALL:
            _caller.set(msg.sender)
        return None

    bus.add_message_handler(remember)


async def _bus_call(bus: MessageBus, **kwargs) -> list:
    reply = await bus.call(Message(**kwargs))
    if reply.message_type == MessageType.ERROR:
        raise AccessDenied(f"cannot check the caller's identity: {reply.error_name}: {reply.body}")
    return reply.body


async def require_manage(bus: MessageBus, what: str) -> None:
    """Raise AccessDenied unless the current caller may manage the daemon."""
    sender = _caller.get()
    if sender is None:
        raise AccessDenied(f"{what}: caller unknown")
    dbus = {
        "destination": "org.freedesktop.DBus",
        "path": "/org/freedesktop/DBus",
        "interface": "org.freedesktop.DBus",
    }
    (uid,) = await _bus_call(
        bus, **dbus, member="GetConnectionUnixUser", signature="s", body=[sender]
    )
    if uid == 0:
        return
    # Called, not first looked for with NameHasOwner: polkitd is bus-activated and may
    # not run yet. Without polkit the call fails (ServiceUnknown) and only root may.
    subject = ("system-bus-name", {"name": Variant("s", sender)})
    reply = await bus.call(Message(
        destination="org.freedesktop.PolicyKit1",
        path="/org/freedesktop/PolicyKit1/Authority",
        interface="org.freedesktop.PolicyKit1.Authority",
        member="CheckAuthorization",
        signature="(sa{sv})sa{ss}us",
        body=[subject, api.POLKIT_ACTION_MANAGE, {}, _POLKIT_ALLOW_INTERACTION, ""],
    ))
    if reply.message_type != MessageType.ERROR and reply.body[0][0]:
        return
    raise AccessDenied(
        f"{what} needs root or the polkit action {api.POLKIT_ACTION_MANAGE} (uid {uid} has "
        "neither): run it with sudo, or ask an administrator to grant that action"
    )
