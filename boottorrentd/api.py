"""The D-Bus names and paths that the daemon and its clients share."""

BUS_NAME = "org.boottorrent1"
MANAGER_PATH = "/org/boottorrent1"
MANAGER_IFACE = "org.boottorrent1.Manager"
OS_IFACE = "org.boottorrent1.OS"
OS_PATH_PREFIX = "/org/boottorrent1/os/"
CLIENT_IFACE = "org.boottorrent1.Client"
CLIENT_PATH_PREFIX = "/org/boottorrent1/client/"
POLKIT_ACTION_MANAGE = "org.boottorrent1.manage"

ERROR_PREFIX = "org.boottorrent1.Error."
ERROR_INVALID_ARGUMENT = ERROR_PREFIX + "InvalidArgument"
ERROR_NOT_FOUND = ERROR_PREFIX + "NotFound"
ERROR_EXISTS = ERROR_PREFIX + "Exists"
ERROR_BUSY = ERROR_PREFIX + "Busy"
ERROR_FAILED = ERROR_PREFIX + "Failed"
ERROR_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"


def escape_path_component(name: str) -> str:
    """Make `name` a valid object-path element, reversibly (as sd_bus_path_encode does).

    Library names may hold '.' and '-', which object paths do not allow.
    """
    if not name:
        return "_"
    out = []
    for ch in name:
        if ch.isascii() and ch.isalnum():
            out.append(ch)
        else:
            out.append(f"_{ord(ch):02x}")
    return "".join(out)


def unescape_path_component(element: str) -> str:
    if element == "_":
        return ""
    out, i = [], 0
    while i < len(element):
        if element[i] == "_":
            out.append(chr(int(element[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(element[i])
            i += 1
    return "".join(out)


def os_path(name: str) -> str:
    return OS_PATH_PREFIX + escape_path_component(name)


def client_path(mac: str) -> str:
    return CLIENT_PATH_PREFIX + mac.replace(":", "").lower()
