"""Finding the programs the daemon runs, and saying which package to install when one is missing."""

from __future__ import annotations

import os
import shutil

from boottorrentd.errors import InvalidArgument

# The daemon may run with a PATH that lacks the sbin folders (systemd, sudo, a user's
# shell), where dnsmasq, opentracker and kexec live.
_STANDARD_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def program_path(name: str) -> str | None:
    """The path of the program `name`, searched on PATH and then the standard folders."""
    return shutil.which(name, path=_search_path())


def find_program(name: str, package: str) -> str:
    """The path of the program `name`; InvalidArgument naming the Debian `package` to
    install when it is missing."""
    path = program_path(name)
    if path is None:
        raise InvalidArgument(f"{name} is not installed; install it with 'apt install {package}'")
    return path


def _search_path() -> str:
    dirs = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d]
    return os.pathsep.join([*dirs, *(d for d in _STANDARD_DIRS if d not in dirs)])
