"""The kernel a phase-1 image boots: /boot/vmlinuz-<version> of this host, and its config."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

from boottorrentd.errors import InvalidArgument

# Where the host keeps its kernels; tests point this elsewhere.
BOOT_DIR = Path("/boot")


def _version_key(version: str) -> tuple:
    # Like `sort -V`: digit runs compare as numbers, so 6.1.0-10 is newer than 6.1.0-9.
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part)
                 for part in re.findall(r"\d+|\D+", version))


def find_kernel(version: str | None = None) -> tuple[str, Path]:
    """(version, path) of /boot/vmlinuz-<version>: the one named, else the newest."""
    kernels = {p.name[len("vmlinuz-"):]: p for p in BOOT_DIR.glob("vmlinuz-*")
               if p.is_file() and not p.name.endswith((".old", ".bak"))}
    if version is not None:
        if version not in kernels:
            have = ", ".join(sorted(kernels, key=_version_key)) or "none"
            raise InvalidArgument(
                f"no kernel {version!r} in {BOOT_DIR} (installed: {have}); install it with "
                f"`apt install linux-image-{version}`, or leave the version out to use the "
                "newest")
        return version, kernels[version]
    if not kernels:
        raise InvalidArgument(
            f"no Linux kernel in {BOOT_DIR} (vmlinuz-*) to build the phase-1 image from; "
            "install one with `apt install linux-image-amd64` (the package only has to be "
            "installed, this machine need not boot it)")
    newest = max(kernels, key=_version_key)
    return newest, kernels[newest]



def kernel_config(version: str) -> dict[str, str]:
    """The CONFIG_ options kernel `version` was built with (empty when its config is gone)."""
    config: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (BOOT_DIR / f"config-{version}").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("CONFIG_"):
                config[key] = value
    return config

