"""Turning what users have into a `live` library OS: `add-os NAME --from DIR|ISO`.

Recognised, in this order:
- a Debian live-build tree or ISO image: live/vmlinuz*, live/initrd.img* and
  live/filesystem.squashfs (an ISO is read with xorriso, without mounting it);
- an installed root (mmdebstrap, debootstrap): boot/vmlinuz-VERSION with its
  boot/initrd.img-VERSION, and sbin/init; the root becomes a squashfs (mksquashfs).

The OS folder gets vmlinuz, initrd.img and the squashfs, and the config values of a live
OS with its own kernel. Everything here blocks: the library runs it in a thread.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from boottorrentd.errors import InvalidArgument
from boottorrentd.util.fs import copy_file
from boottorrentd.util.programs import find_program

KERNEL = "vmlinuz"
INITRD = "initrd.img"
LIVE_SQUASHFS = "filesystem.squashfs"
ROOT_SQUASHFS = "root.squashfs"

# What a source is looked at for, in the error when none of it is there.
LOOKED_FOR = (
    "a Debian live-build tree or ISO (live/vmlinuz*, live/initrd.img*, "
    "live/filesystem.squashfs) or an installed root (boot/vmlinuz-VERSION, "
    "boot/initrd.img-VERSION, sbin/init)"
)
# Left out of a root's squashfs: the kernel and initrd travel beside it, and the rest
# are mount points whose contents belong to the running system.
ROOT_EXCLUDES = ("boot/*", "proc/*", "sys/*", "dev/*", "run/*", "tmp/*")
# A live-build system's live-config (the live user, hostname, ...) runs only with boot=live
# on the command line; the agent's boot=boottorrent comes after it and wins in the
# initramfs.
LIVE_BUILD_CMDLINE = "boot=live components"

# progress(phase, done, total), phase "copying" or "squashing".
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Found:
    """A recognised source: its kind and where its kernel, initrd and root are in it."""

    kind: str  # "live-build tree", "live-build ISO" or "root"
    source: Path
    kernel: str  # paths relative to the source (inside the ISO for an ISO)
    initrd: str
    squashfs: str | None  # None: a root, made into a squashfs
    dispname: str | None = None

    def config_values(self) -> dict[str, str]:
        """The config.yaml values of the library OS made from it."""
        values = {
            "method": "live",
            "kernel": KERNEL,
            "initrd": INITRD,
            "squashfs": ROOT_SQUASHFS if self.squashfs is None else LIVE_SQUASHFS,
        }
        if self.squashfs is not None:
            values["cmdline"] = LIVE_BUILD_CMDLINE
        if self.dispname:
            values["dispname"] = self.dispname
        return values


def recognise(source: Path) -> Found:
    """What `source` (a folder or an ISO image) holds; InvalidArgument when nothing known."""
    if source.is_file():
        if not _is_iso(source):
            raise InvalidArgument(f"{source} is a file but not an ISO 9660 image; --from takes "
                                  f"a folder or an ISO image holding {LOOKED_FOR}")
        names = _iso_files(source)
        found = _live_build(names)
        if found is None:
            raise InvalidArgument(
                f"the ISO image {source} holds no Debian live system: looked for live/vmlinuz*, "
                f"live/initrd.img* and live/filesystem.squashfs in it ({_listing(names)})")
        return Found("live-build ISO", source, *found, squashfs=f"live/{LIVE_SQUASHFS}")
    if not source.is_dir():
        raise InvalidArgument(f"{source} does not exist; --from takes a folder or an ISO "
                              f"image holding {LOOKED_FOR}")
    live = source / "live"
    if live.is_dir():
        names = [f"live/{p.name}" for p in live.iterdir() if p.is_file()]
        found = _live_build(names)
        if found is not None:
            return Found("live-build tree", source, *found, squashfs=f"live/{LIVE_SQUASHFS}")
    if source.resolve() == Path("/").resolve():
        # Squashing the running system would take in the library itself and every mount.
        raise InvalidArgument(
            "--from / would pack this server's own running system; build the OS's root "
            "in a folder of its own (e.g. `mmdebstrap trixie /srv/roots/lab`) and add that")
    boot = source / "boot"
    if boot.is_dir():
        found = _root_kernel([f"boot/{p.name}" for p in boot.iterdir() if p.is_file()])
        if found is not None and _has_init(source):
            return Found("root", source, *found, squashfs=None, dispname=_os_name(source))
    raise InvalidArgument(f"{source} is not an OS that --from knows: looked for {LOOKED_FOR}; "
                          f"{_listing(sorted(p.name for p in source.iterdir()))}")


def import_os(found: Found, dest: Path, progress: Progress) -> None:
    """Fill the OS folder `dest` (existing, empty) with kernel, initrd and squashfs."""
    if found.kind == "live-build ISO":
        files = [(found.kernel, KERNEL), (found.initrd, INITRD),
                 (f"live/{LIVE_SQUASHFS}", LIVE_SQUASHFS)]
        sizes = [_iso_size(found.source, name) for name, _ in files]
        done = 0
        for (name, target), size in zip(files, sizes, strict=True):
            _iso_extract(found.source, name, dest / target)
            done += size
            progress("copying", done, sum(sizes))
        return
    pairs = [(found.kernel, KERNEL), (found.initrd, INITRD)]
    if found.squashfs is not None:
        pairs.append((found.squashfs, LIVE_SQUASHFS))
    total = sum((found.source / name).stat().st_size for name, _ in pairs)
    done = 0
    for name, target in pairs:
        done = _copy(found.source / name, dest / target, done, total, progress)
    if found.squashfs is None:
        _squash(found.source, dest / ROOT_SQUASHFS, progress)


# --- recognising ---------------------------------------------------------------------------

_VERSIONED = re.compile(r"^(?P<stem>vmlinuz|initrd\.img)-(?P<version>.+)$")


def _version_key(version: str) -> list[tuple[int, str]]:
    # "6.12.10" after "6.12.9": numbers compare as numbers.
    return [(int(part), "") if part.isdigit() else (-1, part)
            for part in re.split(r"[.+~-]", version)]


def _pair(names: list[str], folder: str) -> tuple[str, str] | None:
    """(kernel, initrd) in `folder`: the unversioned pair, else the newest version that
    has both."""
    base = {PurePosixPath(n).name for n in names if str(PurePosixPath(n).parent) == folder}
    if "vmlinuz" in base and "initrd.img" in base:
        return f"{folder}/vmlinuz", f"{folder}/initrd.img"
    kernels = {m["version"] for n in base if (m := _VERSIONED.match(n)) and m["stem"] == "vmlinuz"}
    both = [v for v in kernels if f"initrd.img-{v}" in base]
    if not both:
        return None
    newest = max(both, key=_version_key)
    return f"{folder}/vmlinuz-{newest}", f"{folder}/initrd.img-{newest}"


def _live_build(names: list[str]) -> tuple[str, str] | None:
    if f"live/{LIVE_SQUASHFS}" not in names:
        return None
    return _pair(names, "live")


def _root_kernel(names: list[str]) -> tuple[str, str] | None:
    # A root's boot/vmlinuz is a symbolic link (not listed as a file); versions are real.
    return _pair([n for n in names if _VERSIONED.match(PurePosixPath(n).name)], "boot")


def _has_init(root: Path) -> bool:
    # sbin/init is an absolute link in the root's own terms (/lib/systemd/systemd).
    path = root / "sbin/init"
    for _ in range(16):
        if not path.is_symlink():
            break
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
    return path.is_file()


def _os_name(root: Path) -> str | None:
    """PRETTY_NAME of the root's os-release, if it has one."""
    for candidate in ("etc/os-release", "usr/lib/os-release"):
        path = root / candidate
        if path.is_file() and not path.is_symlink():
            for line in path.read_text(errors="replace").splitlines():
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip("\"'") or None
    return None


def _listing(names: list[str]) -> str:
    if not names:
        return "it is empty"
    more = f", and {len(names) - 10} more" if len(names) > 10 else ""
    return f"it holds {', '.join(names[:10])}{more}"


# --- ISO images ----------------------------------------------------------------------------

def _is_iso(path: Path) -> bool:
    # ISO 9660's volume descriptor: "CD001" at byte 32769.
    with open(path, "rb") as f:
        f.seek(32769)
        return f.read(5) == b"CD001"


def _xorriso(iso: Path, *args: str) -> str:
    command = [find_program("xorriso", "xorriso"), "-osirrox", "on", "-indev", str(iso), *args]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise InvalidArgument(f"xorriso could not read {iso}: {last}; is it an ISO image?")
    return done.stdout


def _iso_files(iso: Path) -> list[str]:
    """The files in the ISO's top folder and the folders in it, as live/NAME."""
    out = _xorriso(iso, "-find", "/", "-maxdepth", "2", "-type", "f")
    return [line.strip().strip("'").lstrip("/") for line in out.splitlines() if line.strip()]


def _iso_size(iso: Path, name: str) -> int:
    out = _xorriso(iso, "-find", f"/{name}", "-exec", "lsdl")
    fields = out.split()
    return int(fields[4]) if len(fields) > 4 and fields[4].isdigit() else 0


def _iso_extract(iso: Path, name: str, target: Path) -> None:
    _xorriso(iso, "-extract", f"/{name}", str(target))
    # xorriso keeps the ISO's modes, read-only ones too.
    target.chmod(0o644)


# --- copying and squashing -----------------------------------------------------------------

def _copy(source: Path, target: Path, done: int, total: int, progress: Progress) -> int:
    """Copy one file, reporting the bytes of all files so far (`done` before this one)."""
    copied = copy_file(source, target, lambda n: progress("copying", done + n, total))
    target.chmod(0o644)
    return done + copied


def _squash(root: Path, target: Path, progress: Progress) -> None:
    """mksquashfs `root` into `target`, reporting its percentage as it goes."""
    command = [find_program("mksquashfs", "squashfs-tools"), str(root), str(target),
               "-noappend", "-comp", "zstd", "-progress", "-wildcards",
               "-e", *ROOT_EXCLUDES]
    # One pipe for both: a separate stderr could fill up while stdout is read.
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        assert proc.stdout is not None
        output = b""
        # The bar ends in "NN%" and is redrawn after a carriage return.
        while block := os.read(proc.stdout.fileno(), 4096):
            output = (output + block)[-4096:]
            percents = re.findall(rb"(\d{1,3})%", output[-200:])
            if percents:
                progress("squashing", min(int(percents[-1]), 100), 100)
    if proc.returncode != 0:
        lines = [ln for ln in re.split(r"[\r\n]", output.decode(errors="replace")) if ln.strip()]
        raise InvalidArgument(f"mksquashfs could not make a squashfs of {root}: "
                              f"{(lines or ['no message'])[-1]}")
    target.chmod(0o644)
    progress("squashing", 100, 100)

