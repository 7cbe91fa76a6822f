"""What this host has: the Debian packages a build's files come from."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path


def run(cmd: Sequence[str], **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, check=True, **kw)  # type: ignore[call-overload]


def packages_of(paths: Iterable[Path]) -> dict[str, str]:
    """Debian package -> version, for the packages that own `paths` (empty without dpkg)."""
    if shutil.which("dpkg-query") is None:
        return {}
    result = subprocess.run(["dpkg-query", "-S", *sorted(_dpkg_names(paths))],
                            capture_output=True, text=True)
    packages: set[str] = set()
    for line in result.stdout.splitlines():
        if line.startswith(("diversion by", "local diversion")) or ": " not in line:
            continue
        owners = line.split(": ", 1)[0]
        packages.update(owner.strip() for owner in owners.split(","))
    if not packages:
        return {}
    shown = subprocess.run(["dpkg-query", "-W", "-f", "${binary:Package} ${Version}\\n",
                            *sorted(packages)], capture_output=True, text=True)
    versions: dict[str, str] = {}
    for line in shown.stdout.splitlines():
        name, _sep, version = line.partition(" ")
        if version:
            versions[name.split(":")[0]] = version
    return dict(sorted(versions.items()))


def _dpkg_names(paths: Iterable[Path]) -> set[str]:
    """Every name dpkg may know each of `paths` by."""
    names: set[str] = set()
    for path in paths:
        for name in (str(path), os.path.realpath(path)):
            names.add(name)
            # With merged /usr a file is reached as /usr/bin/x and /bin/x alike, and dpkg
            # knows it by the one its package ships.
            if re.match(r"/usr/(s?bin|lib\w*)/", name):
                names.add(name[len("/usr"):])
            elif re.match(r"/(s?bin|lib\w*)/", name):
                names.add("/usr" + name)
    return names
