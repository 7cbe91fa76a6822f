"""What an OS may be called: the one rule for library folders, torrents, the config's
default_os and display_oss, and the names clients report.

The name becomes a folder, a torrent file and a path segment of boot URLs, so it is kept
to characters that mean nothing special in any of them.
"""

import re

from boottorrentd.errors import InvalidArgument

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
NAME_RULE = "1-64 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"


def name_fix(name: str) -> str | None:
    """How to fix `name` as an OS name, or None when it is fine."""
    if NAME_RE.fullmatch(name):
        return None
    fixed = name.lower()
    example = repr(fixed) if NAME_RE.fullmatch(fixed) else "debian12"
    return f"use {NAME_RULE} (e.g. {example})"


def check_name(name: str) -> None:
    """Raise InvalidArgument when `name` cannot be an OS in the library."""
    fix = name_fix(name)
    if fix:
        raise InvalidArgument(f"invalid OS name {name!r}: {fix}")
