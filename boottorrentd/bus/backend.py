"""The one place that picks the D-Bus library.

dbus-fast is the maintained, API-compatible fork of dbus-next and about three times
faster per call here; a system with only dbus-next (python3-dbus-next) falls back to it.
Everything else imports these names from here, never from either library.
"""

try:
    from dbus_fast import BusType, DBusError, Message, MessageType, Variant
    from dbus_fast.aio import MessageBus
    from dbus_fast.constants import NameFlag, PropertyAccess, RequestNameReply
    from dbus_fast.service import ServiceInterface, dbus_property, method, signal

    BACKEND = "dbus-fast"
except ImportError:
    # The same API under the older name; the type checker sees dbus-fast's types.
    from dbus_next import BusType, DBusError, Message, MessageType, Variant  # type: ignore[assignment]
    from dbus_next.aio import MessageBus  # type: ignore[assignment]
    from dbus_next.constants import (  # type: ignore[assignment]
        NameFlag,
        PropertyAccess,
        RequestNameReply,
    )
    from dbus_next.service import (  # type: ignore[assignment]
        ServiceInterface,
        dbus_property,
        method,
        signal,
    )

    BACKEND = "dbus-next"

__all__ = [
    "BACKEND",
    "BusType",
    "DBusError",
    "Message",
    "MessageBus",
    "MessageType",
    "NameFlag",
    "PropertyAccess",
    "RequestNameReply",
    "ServiceInterface",
    "Variant",
    "dbus_property",
    "method",
    "signal",
]
