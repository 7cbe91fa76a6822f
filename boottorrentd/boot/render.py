"""What more than one rendering in boot/ uses, written once: the pauses of the iPXE script
and GRUB's config, the text both may show (ipxe_text) or pass to the kernel
(cmdline_text), the OSes that need QEMU's initramfs, and POSIX shell quoting (GRUB's
config and boot.env).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from boottorrentd.library.store import OSEntry
from boottorrentd.phase1.qemu import QEMU_METHODS

# Seconds a failure message stays on the client's screen before the script moves on.
MESSAGE_PAUSE = 10
# Longer when phase-1 is not built: the admin needs time to read how to build it, and
# the firmware retrying sooner would only print the same message again.
NOT_BUILT_PAUSE = 30

# iPXE expands ${...} anywhere in a line, splits words on whitespace, treats a word that
# starts with '#' as a comment, '&&', '||' and ';' as command separators, and newer
# versions give quotes and backslashes meaning. Display text keeps only characters with
# none of those roles; iPXE consoles are not UTF-8 either, so accents are folded to ASCII.
_UNSAFE_TEXT = re.compile(r"[^A-Za-z0-9 _.,:!?()\[\]+=@%*~<>/^-]")


def ipxe_text(text: str) -> str:
    """`text` made safe to stand as plain words in an iPXE script line."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    # Reasons join their parts with "; ", which must stay readable.
    return " ".join(_UNSAFE_TEXT.sub(" ", folded.replace(";", ",")).split())


def cmdline_text(text: str) -> str:
    # The admin's extra arguments may use iPXE settings such as ${net0/ip} on purpose, so
    # only what could end the line (and with it inject commands) is removed.
    return " ".join("".join(" " if ord(ch) < 32 or ord(ch) == 127 else ch for ch in text).split())


def shell_quote(value: str) -> str:
    """`value` as one single-quoted POSIX shell word (nothing inside is expanded)."""
    if "\0" in value:
        raise ValueError("a shell value cannot hold a NUL character")
    return "'" + value.replace("'", "'\\''") + "'"


@dataclass(frozen=True)
class Qemu:
    """The OSes that run in a virtual machine, and whether QEMU's initramfs is built."""

    oss: frozenset[str]
    ready: bool


def qemu_oss(entries: Mapping[str, OSEntry]) -> list[str]:
    """The OSes of `entries` that run in a virtual machine: phase-1 needs QEMU's
    initramfs for them (render_ipxe's and render_grub's `qemu_oss`)."""
    return [name for name, entry in entries.items() if entry.spec.method in QEMU_METHODS]
