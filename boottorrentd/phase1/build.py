"""The phase-1 image: a kernel and an initrd, built from this host's Debian packages.

`build(state_dir)` writes <state>/phase1/{vmlinuz,initrd.img,manifest.json}. The initrd
holds the kernel's modules for network cards, disks and the boot methods (modules.py),
busybox-static with its applet links, aria2c and kexec with every shared library they
need (userland.py, libraries.py, elf.py: found by reading their ELF headers the way the
dynamic loader does, not listed by hand), and the agent (boottorrentd/phase1/agent/:
/init and its helpers).

Nothing is downloaded. The same inputs give the same bytes: the cpio archive is written
with sorted entries, zero times and owners and numbered inodes (cpio.py), and compressed
by a deterministic compressor (compress.py). A build goes into a temporary folder beside
the old image and takes its place in one atomic rename, so a failed build leaves the
previous image served.

Blocking and silent: the daemon runs it in a worker thread and shows `progress`.
This module is also the package's face: the daemon, the lab and the demo OS reach the
builder and the parts they share with it (the archive, the module resolver) through it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from boottorrentd.errors import Busy
from boottorrentd.phase1.compress import compress, compression
from boottorrentd.phase1.cpio import Archive
from boottorrentd.phase1.host import packages_of
from boottorrentd.phase1.kernel import find_kernel, kernel_config
from boottorrentd.phase1.manifest import FILES, PHASE1_DIR, Manifest, read_manifest
from boottorrentd.phase1.modules import (
    add_modules,
    decompress_module,
    module_name,
    parse_modules_dep,
    resolve_modules,
)
from boottorrentd.phase1.progress import Progress, Reporter
from boottorrentd.phase1.userland import add_agent, add_programs, agent_dir
from boottorrentd.util.fs import fsync_dir, write_atomic
from boottorrentd.util.programs import find_program

# What the daemon, the lab and the demo OS use, whichever module of the package has it.
__all__ = [
    "FILES",
    "PHASE1_DIR",
    "Archive",
    "Manifest",
    "Progress",
    "agent_dir",
    "build",
    "decompress_module",
    "find_kernel",
    "module_name",
    "parse_modules_dep",
    "read_manifest",
    "resolve_modules",
]


def build(
    state_dir: Path,
    *,
    kernel_version: str | None = None,
    extra_modules: Sequence[str] = (),
    progress: Progress | None = None,
) -> Manifest:
    """Build <state_dir>/phase1/{vmlinuz,initrd.img,manifest.json}; return the manifest.

    `progress(step, fraction)` is called as the build goes, `fraction` being the share of
    the whole build done (0..1) and `step` one of kernel, modules, programs, agent,
    compress, install. Raises InvalidArgument when this host lacks something (the message
    names the package to install) and Busy when another build of the same folder runs.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    report = Reporter(progress)
    with build_lock(state_dir):
        for stale in state_dir.glob(".phase1-build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=".phase1-build-", dir=state_dir))
        try:
            manifest = _build_into(work, kernel_version, extra_modules, report)
            report.step("install", 0.0)
            install_files(work, state_dir / PHASE1_DIR)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        report.step("install", 1.0)
        return manifest


@contextlib.contextmanager
def build_lock(state_dir: Path) -> Iterator[None]:
    """One build at a time in `state_dir` (phase-1 or its QEMU flavour); Busy if not."""
    with open(state_dir / ".phase1.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"a phase-1 image is being built in {state_dir} right now; wait for it "
                       "to finish") from None
        yield


def _build_into(work: Path, kernel_version: str | None, extra_modules: Sequence[str],
                report: Reporter) -> Manifest:
    """Write the image's FILES into `work`, durably; return the manifest."""
    version, vmlinuz = find_kernel(kernel_version)
    report.step("kernel", 0.0)
    kernel = vmlinuz.read_bytes()
    write_atomic(work / "vmlinuz", kernel)
    method = compression(kernel_config(version))
    report.step("kernel", 1.0)

    archive = Archive()
    modules = add_modules(archive, version, extra_modules, report.within("modules"))
    report.step("programs", 0.0)
    used = [vmlinuz, *modules.used, *add_programs(archive)]
    report.step("programs", 1.0)
    add_agent(archive, version)
    report.step("agent", 1.0)

    total = archive.size()
    report.step("compress", 0.0)
    compress(archive.chunks(), total, work / "initrd.img", method, report.within("compress"))
    if method == "zstd":
        used.append(Path(find_program("zstd", "zstd")))
    with open(work / "initrd.img", "rb") as f:
        initrd = f.read()
        os.fsync(f.fileno())
    manifest = Manifest(
        kernel_version=version,
        created_from=packages_of(used),
        files=archive.files(),
        vmlinuz={"size": len(kernel), "sha256": hashlib.sha256(kernel).hexdigest()},
        initrd={"size": len(initrd), "sha256": hashlib.sha256(initrd).hexdigest(),
                "compression": method, "uncompressed_size": total},
        modules=[module_name(m) for m in modules.order],
        notes=modules.notes,
    )
    write_atomic(work / "manifest.json", manifest.to_json())
    return manifest


def install_files(work: Path, dest: Path, files: Sequence[str] = FILES) -> None:
    """Put `files` of `work` in a folder in place of `dest` in one step."""
    staged = Path(tempfile.mkdtemp(prefix=".phase1-build-new-", dir=dest.parent))
    for name in files:
        os.replace(work / name, staged / name)
    staged.chmod(0o755)
    for name in files:
        (staged / name).chmod(0o644)
    fsync_dir(staged)
    if dest.exists():
        if _exchange(staged, dest):
            # `staged` now holds the old image: nothing served it since the exchange.
            shutil.rmtree(staged, ignore_errors=True)
        else:
            old = Path(tempfile.mkdtemp(prefix=".phase1-build-old-", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
            os.replace(staged, dest)
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, dest)
    fsync_dir(dest.parent)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders atomically (renameat2 RENAME_EXCHANGE); False where unsupported,
    so the caller falls back to two renames (a moment without an image)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))
