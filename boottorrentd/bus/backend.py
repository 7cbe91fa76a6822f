"""The one place that picks the D-Bus library.

dbus-fast is the maintained, API-compatible fork of dbus-next and about three times
faster per call here; Debian bookworm only packages dbus-next, so fall back to it.
Everything else imports these names from here, never from either library.
"""

try:
    from dbus_fast import BusType, DBusError, Message, MessageType, Variant
    from dbus_fast.aio import MessageBus
    from dbus_fast.constants import NameFlag, PropertyAccess, RequestNameReply
    from dbus_fast.service import ServiceInterface, dbus_property, method, signal

    BACKEND = "dbus-fast"
except ImportError:
    from dbus_next import BusType, DBusError, Message, MessageType, Variant
    from dbus_next.aio import MessageBus
    from dbus_next.constants import NameFlag, PropertyAccess, RequestNameReply
    from dbus_next.service import ServiceInterface, dbus_property, method, signal

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
