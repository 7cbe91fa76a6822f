"""Errors the daemon reports; each carries the D-Bus error name a client sees.

Messages are for people: say what is wrong and how to fix it.
"""

from boottorrentd import api


class BootTorrentError(Exception):
    dbus_name = api.ERROR_FAILED


class InvalidArgument(BootTorrentError):
    dbus_name = api.ERROR_INVALID_ARGUMENT


class NotFound(BootTorrentError):
    dbus_name = api.ERROR_NOT_FOUND


class Exists(BootTorrentError):
    dbus_name = api.ERROR_EXISTS


class Busy(BootTorrentError):
    dbus_name = api.ERROR_BUSY


class AccessDenied(BootTorrentError):
    dbus_name = api.ERROR_ACCESS_DENIED


class ConfigError(InvalidArgument):
    """A configuration file is wrong; `key` is the dotted path of the bad key."""

    def __init__(self, source: str, key: str, message: str) -> None:
        self.source = source
        self.key = key
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {message}")
