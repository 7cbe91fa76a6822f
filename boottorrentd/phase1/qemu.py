"""The QEMU flavour of phase-1: an extra initramfs with qemu-system-x86_64, for OSes of
method qemu (bin-qemu-x86_64).

The kernel unpacks every initramfs archive the loader hands it, each over the last, so
the flavour is not a second full image but one more archive loaded after the base
image's initrd.img: qemu-system-x86_64, every shared library it needs (found as for the
base image's programs), the modules it loads for TCG and virtio graphics, the kernel's
KVM modules (with their own load list, which the agent reads beside the base one), and the x86
firmware it reads by name (SeaBIOS, the option ROMs, the NICs' iPXE ROMs, VNC's
keymaps). iPXE loads it only for an OS of method qemu; the server builds it only when
its library holds such an OS, since it is several times the size of the rest of phase-1.

`build_qemu(state_dir)` writes <state>/phase1-qemu/{qemu.img,manifest.json}, as
`build` writes phase-1: deterministic bytes, an atomic swap, the same build lock.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from boottorrentd.phase1.build import build_lock, install_files
from boottorrentd.phase1.compress import compress, compression
from boottorrentd.phase1.cpio import Archive
from boottorrentd.phase1.host import packages_of
from boottorrentd.phase1.kernel import find_kernel, kernel_config
from boottorrentd.phase1.modules import add_qemu_modules
from boottorrentd.phase1.progress import Progress, Reporter
from boottorrentd.phase1.userland import add_binaries
from boottorrentd.util.fs import write_atomic
from boottorrentd.util.programs import find_program

QEMU_DIR = "phase1-qemu"
QEMU_IMAGE = "qemu.img"
QEMU_FILES = (QEMU_IMAGE, "manifest.json")
# Where Debian's QEMU looks for its firmware (its --firmwarepath), and what of it an x86
# machine may ask for.
DATA_DIRS = (Path("/usr/share/qemu"), Path("/usr/share/seabios"), Path("/usr/lib/ipxe/qemu"))
DATA_GLOBS = ("bios*.bin", "vgabios*.bin", "kvmvapic.bin", "linuxboot*.bin", "multiboot*.bin",
              "pvh.bin", "sgabios.bin", "efi-*.rom", "pxe-*.rom", "keymaps/*")
# Debian's QEMU loads TCG and some devices from modules; these need no graphics stack.
MODULE_DIR = Path("/usr/lib/x86_64-linux-gnu/qemu")
MODULES = ("accel-tcg-x86_64.so", "hw-display-virtio-gpu.so", "hw-display-virtio-gpu-pci.so",
           "hw-display-virtio-vga.so")
# The methods that need the flavour.
QEMU_METHODS = ("qemu", "bin-qemu-x86_64")
# What a machine that needs the flavour is told while it is missing: the boot script
# (iPXE) and GRUB's config echo it, the boot HTTP server gives it as its 404's reason.
QEMU_NOT_BUILT = ("the QEMU flavour of phase-1 is not built; the server builds it when an "
                  "OS of method qemu is added; build it now with: boottorrentctl build-client")


def needs_qemu(methods: list[str]) -> bool:
    return any(method in QEMU_METHODS for method in methods)


def qemu_image(state_dir: Path) -> Path:
    return Path(state_dir) / QEMU_DIR / QEMU_IMAGE


def read_qemu_manifest(state_dir: Path) -> dict | None:
    try:
        return json.loads((Path(state_dir) / QEMU_DIR / "manifest.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def build_qemu(state_dir: Path, *, kernel_version: str | None = None,
               progress: Progress | None = None) -> dict:
    """Build <state_dir>/phase1-qemu/; its manifest (the kernel it goes with, the packages
    it came from, its size and sha256). InvalidArgument when QEMU is not installed."""
    state_dir = Path(state_dir)
    report = Reporter(progress)
    version, _ = find_kernel(kernel_version)
    with build_lock(state_dir):
        work = Path(tempfile.mkdtemp(prefix=".phase1-qemu-build-", dir=state_dir))
        try:
            report.step("programs", 0.0)
            archive = Archive()
            qemu = Path(find_program("qemu-system-x86_64", "qemu-system-x86"))
            modules = [MODULE_DIR / name for name in MODULES if (MODULE_DIR / name).is_file()]
            used = add_binaries(archive, [qemu, *modules])
            used += add_qemu_modules(archive, version).used
            used += _add_data(archive)
            report.step("programs", 1.0)
            total = archive.size()
            method = compression(kernel_config(version))
            compress(archive.chunks(), total, work / QEMU_IMAGE, method,
                     report.within("compress"))
            with open(work / QEMU_IMAGE, "rb") as f:
                data = f.read()
                os.fsync(f.fileno())
            manifest = {
                "kernel_version": version,
                "created_from": packages_of(used),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "compression": method,
                "uncompressed_size": total,
            }
            write_atomic(work / "manifest.json", json.dumps(manifest, indent=2,
                                                           sort_keys=True) + "\n")
            report.step("install", 0.0)
            install_files(work, state_dir / QEMU_DIR, QEMU_FILES)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        report.step("install", 1.0)
        return manifest


def _add_data(archive: Archive) -> list[Path]:
    """QEMU's x86 firmware files, at the paths QEMU opens (symbolic links resolved)."""
    used = []
    for pattern in (f"{folder}/{glob}" for folder in DATA_DIRS for glob in DATA_GLOBS):
        for path in sorted(Path("/").glob(pattern.lstrip("/"))):
            real = path.resolve()
            if real.is_file():
                archive.add_file(str(path), real.read_bytes())
                used.append(real)
    return used
