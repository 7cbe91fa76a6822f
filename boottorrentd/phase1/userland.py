"""The phase-1 image's userland: busybox-static with its applets, the programs the agent
runs with every library they need, and the agent itself (its scripts and the root tree)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from boottorrentd.errors import InvalidArgument
from boottorrentd.phase1.cpio import Archive
from boottorrentd.phase1.elf import read_elf
from boottorrentd.phase1.host import run
from boottorrentd.phase1.icudata import empty_icu_data, is_icu_data
from boottorrentd.phase1.libraries import resolve_libraries
from boottorrentd.util.programs import find_program

# The applets the agent scripts call; the build fails if the host's busybox lacks one.
AGENT_APPLETS = (
    "sh", "awk", "cat", "chmod", "cp", "cpio", "cttyhack", "cut", "date", "dd", "dirname",
    "dmesg", "echo", "find", "grep", "gunzip", "head", "insmod", "ip", "kill", "ln", "losetup",
    "ls", "mkdir", "mkfifo", "mount", "mv", "od", "poweroff", "printf", "readlink", "reboot",
    "rm", "sed", "setsid", "sha256sum", "sleep", "sort", "stat", "switch_root", "sync", "tail",
    "tee", "timeout", "tr", "udhcpc", "umount", "uname", "uniq", "wc", "wget", "xz",
)
# Programs besides busybox (name -> the Debian package that has it), found on PATH and
# placed at their own paths.
# zstd decompresses disk images (zstd and xz) onto the disk.
PROGRAMS = {"aria2c": "aria2", "kexec": "kexec-tools", "zstd": "zstd"}
# Where the agent's scripts go in the initrd (source name in boottorrentd/phase1/agent -> path).
AGENT_FILES = {
    "init": "init",
    "bt-download": "bin/bt-download",
    "bt-udhcpc": "bin/bt-udhcpc",
    # Not run in phase-1: appended to a live OS's own initrd (boot_live_kernel).
    "live-hook": "usr/share/boottorrent/live-hook",
}


def agent_dir() -> Path:
    """The agent's scripts, shipped as package data."""
    return Path(str(resources.files("boottorrentd.phase1").joinpath("agent")))


def add_programs(archive: Archive) -> list[Path]:
    """Put busybox, PROGRAMS and their libraries into `archive`; the host files used."""
    busybox = find_program("busybox", "busybox-static")
    if read_elf(Path(busybox)).interp is not None:
        # A dynamic busybox (Debian's "busybox" package) would need its libraries too and
        # may lack applets; the static one is the rescue tool Debian ships for this.
        raise InvalidArgument(f"{busybox} is not statically linked; install the static "
                              "one with `apt install busybox-static`")
    applets = run([busybox, "--list"], text=True).stdout.split()
    lacking = sorted(set(AGENT_APPLETS) - set(applets))
    if lacking:
        raise InvalidArgument(f"{busybox} lacks the applets {', '.join(lacking)} that the "
                              "phase-1 agent uses; install Debian's busybox-static")
    archive.add_file("bin/busybox", Path(busybox).read_bytes(), executable=True)
    for applet in applets:
        if applet != "busybox" and "/" not in applet:
            archive.add_symlink(f"bin/{applet}", "busybox")
    for folder in ("sbin", "usr/bin", "usr/sbin"):
        archive.add_dir(folder)
    programs = [Path(find_program(name, package)) for name, package in PROGRAMS.items()]
    return [Path(busybox), *add_binaries(archive, programs)]


def add_binaries(archive: Archive, programs: list[Path]) -> list[Path]:
    """Put `programs` and every shared library they need into `archive`; the host files."""
    used = []
    for path in programs:
        # At its own path, so that PATH order and any $ORIGIN in it behave as on the host.
        archive.add_file(str(path), path.read_bytes(), executable=True)
        used.append(path)
    for dest, source in sorted(resolve_libraries(programs).items()):
        # ICU's database is a third of the image and aria2c never reads it (icudata.py).
        data = empty_icu_data(dest, source) if is_icu_data(dest) else source.read_bytes()
        archive.add_file(dest, data, executable=os.access(source, os.X_OK))
        used.append(Path(dest) if Path(dest).exists() else source)
    return used


def add_agent(archive: Archive, version: str) -> None:
    """Put the agent's scripts and the root tree they expect into `archive`."""
    source = agent_dir()
    for name, dest in AGENT_FILES.items():
        archive.add_file(dest, (source / name).read_bytes(), executable=True)
    for folder in ("dev", "proc", "sys", "run", "newroot", "mnt", "root", "etc"):
        archive.add_dir(folder)
    archive.add_dir("tmp", 0o1777)
    # The kernel opens /dev/console for init's stdio before anything can mount devtmpfs.
    archive.add_char_device("dev/console", 5, 1)
    archive.add_char_device("dev/null", 1, 3, 0o666)
    archive.add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    archive.add_file("etc/group", b"root:x:0:\n")
    archive.add_file("etc/hosts", b"127.0.0.1 localhost\n")
    archive.add_file("etc/boottorrent-phase1", f"kernel={version}\n".encode())
