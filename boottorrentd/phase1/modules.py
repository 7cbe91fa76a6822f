"""The kernel modules a phase-1 image carries, and the firmware they ask for.

modules.dep gives what each module needs; the image holds them decompressed (busybox
insmod reads plain ELF only) with a list in load order, dependencies first, for the agent.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from boottorrentd.errors import InvalidArgument
from boottorrentd.phase1.cpio import Archive
from boottorrentd.phase1.elf import elf_section
from boottorrentd.phase1.host import run
from boottorrentd.util.programs import find_program

# Where the host keeps them.
MODULES_ROOT = Path("/lib/modules")
FIRMWARE_DIR = Path("/lib/firmware")

# Network cards a lab meets: virtual machines (virtio, the e1000 family QEMU and VirtualBox
# emulate, vmxnet3, rtl8139, pcnet, ne2k), Intel and Realtek on most desktops, Broadcom on
# many office machines and servers, and the usual USB adapters for machines without a port.
NIC_MODULES = (
    "virtio_net", "virtio_pci", "e1000", "e1000e", "igb", "igc", "ixgbe", "i40e",
    "r8169", "tg3", "bnx2", "8139too", "8139cp", "pcnet32", "ne2k_pci", "vmxnet3",
    "atl1c", "atl1e", "alx", "sky2", "forcedeth",
    "xhci_pci", "ehci_pci", "r8152", "ax88179_178a", "asix", "cdc_ether",
)
# live needs squashfs on a loop device under an overlay; image needs the disk drivers.
METHOD_MODULES = (
    "squashfs", "overlay", "loop",
    "ahci", "ata_piix", "nvme", "sd_mod", "virtio_blk", "virtio_scsi", "usb_storage", "uas",
)
# QEMU uses KVM where the CPU has it. Only the QEMU flavour (qemu.py) carries them, since
# only a machine that loads it runs QEMU: 4 MB that every other machine would fetch.
QEMU_MODULES = ("kvm_intel", "kvm_amd")
# Virtual machines without RDRAND would otherwise wait for entropy before TLS libraries
# (which aria2c loads) can seed themselves.
OTHER_MODULES = ("virtio_rng",)
DEFAULT_MODULES = NIC_MODULES + METHOD_MODULES + OTHER_MODULES

# The agent loads the modules of each list that is there, in this order.
LOAD_LIST = "boottorrent.load"
QEMU_LOAD_LIST = "boottorrent-qemu.load"

_MODULE_SUFFIXES = (".ko.xz", ".ko.zst", ".ko.gz", ".ko")


def module_name(path: str) -> str:
    """The module's name as the kernel knows it: file name without suffix, '-' as '_'."""
    base = PurePosixPath(path).name
    for suffix in _MODULE_SUFFIXES:
        if base.endswith(suffix):
            base = base[: -len(suffix)]
            break
    return base.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """modules.dep as name -> (path, paths of the modules it needs)."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in text.splitlines():
        path, sep, deps = line.partition(":")
        if not sep or not path.strip():
            continue
        out[module_name(path.strip())] = (path.strip(), tuple(deps.split()))
    return out


def resolve_modules(
    dep: Mapping[str, tuple[str, Sequence[str]]],
    wanted: Iterable[str],
    builtin: Iterable[str] = (),
) -> tuple[list[str], list[str]]:
    """(paths in load order, wanted names that are neither modules nor built in).

    Every module comes after all it needs, in the order first asked for; modules built
    into the kernel need no loading and are left out.
    """
    by_path = {path: name for name, (path, _deps) in dep.items()}
    builtin_names = {module_name(b) for b in builtin}
    order: list[str] = []
    done: set[str] = set()
    missing: list[str] = []

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in done:
            return
        if name in chain:
            raise ValueError(f"modules.dep has a cycle: {' -> '.join((*chain, name))}")
        path, deps = dep[name]
        for dep_path in deps:
            dep_name = by_path.get(dep_path, module_name(dep_path))
            if dep_name not in dep:
                raise ValueError(f"modules.dep: {path} needs {dep_path}, which has no entry")
            visit(dep_name, (*chain, name))
        done.add(name)
        order.append(path)

    for raw in wanted:
        name = module_name(raw)
        if name in dep:
            visit(name, ())
        elif name not in builtin_names:
            missing.append(raw)
    return order, missing


def decompress_module(path: Path) -> bytes:
    """The module file's ELF bytes; Debian compresses them from trixie on (.ko.xz)."""
    name = path.name
    if name.endswith(".xz"):
        return lzma.decompress(path.read_bytes())
    if name.endswith(".gz"):
        return gzip.decompress(path.read_bytes())
    if name.endswith(".zst"):
        return run([find_program("zstd", "zstd"), "-d", "-c", "-q", str(path)]).stdout
    return path.read_bytes()

def modinfo(elf: bytes) -> list[tuple[str, str]]:
    """The key=value pairs of a module's .modinfo section."""
    raw = elf_section(elf, ".modinfo")
    out = []
    for item in raw.split(b"\0"):
        key, sep, value = item.decode("utf-8", "replace").partition("=")
        if sep:
            out.append((key, value))
    return out



def plain_module_path(path: str) -> str:
    """The module's path once decompressed: without its compressor's suffix."""
    for suffix in (".xz", ".zst", ".gz"):
        if path.endswith(".ko" + suffix):
            return path[: -len(suffix)]
    return path


@dataclass
class ImageModules:
    """What `add_modules` put in an image: the modules.dep paths in load order, notes on
    what is missing, and the host files that went in."""

    order: list[str]
    notes: list[str] = field(default_factory=list)
    used: list[Path] = field(default_factory=list)


def add_modules(archive: Archive, version: str, extra: Sequence[str],
                progress: Callable[[float], None]) -> ImageModules:
    """Put DEFAULT_MODULES and `extra` of kernel `version`, what they need, their firmware
    and the load list into `archive`; `progress` hears the share done (0..1)."""
    root = MODULES_ROOT / version
    dep, builtin = _module_tables(root, version)
    builtin_names = {module_name(b) for b in builtin}
    unknown = [m for m in extra if module_name(m) not in dep
               and module_name(m) not in builtin_names]
    if unknown:
        raise InvalidArgument(f"kernel {version} has no module {unknown[0]!r}; "
                              f"`find {root} -name '*.ko*'` lists them")
    order, missing = resolve_modules(dep, [*DEFAULT_MODULES, *extra], builtin)
    result = _add_ordered(archive, version, order, missing, progress)
    _add_load_lists(archive, version, dep, order)
    return result


def add_qemu_modules(archive: Archive, version: str) -> ImageModules:
    """Put QEMU_MODULES of kernel `version` and what they need, bar what the base image
    has, into `archive` (the QEMU flavour's) with their own load list."""
    dep, builtin = _module_tables(MODULES_ROOT / version, version)
    base, _ = resolve_modules(dep, DEFAULT_MODULES, builtin)
    order, missing = resolve_modules(dep, QEMU_MODULES, builtin)
    order = [path for path in order if path not in base]
    result = _add_ordered(archive, version, order, missing, lambda _done: None)
    archive.add_file(f"lib/modules/{version}/{QEMU_LOAD_LIST}",
                     "".join(plain_module_path(p) + "\n" for p in order).encode())
    return result


def _add_ordered(archive: Archive, version: str, order: Sequence[str], missing: Sequence[str],
                 progress: Callable[[float], None]) -> ImageModules:
    """Put the modules `order` names (modules.dep paths) and their firmware into `archive`."""
    root = MODULES_ROOT / version
    result = ImageModules(list(order), [
        f"kernel {version} has no module {name}; machines that need it will not find their "
        "network card or disk" for name in missing])
    firmware: dict[str, list[str]] = {}
    for i, path in enumerate(order):
        data = decompress_module(root / path)
        archive.add_file(f"lib/modules/{version}/{plain_module_path(path)}", data)
        result.used.append(root / path)
        for key, value in modinfo(data):
            if key == "firmware":
                firmware.setdefault(value, []).append(module_name(path))
        progress((i + 1) / (len(order) + 1))
    _add_firmware(archive, firmware, result)
    return result


def _module_tables(root: Path, version: str) -> tuple[
        dict[str, tuple[str, tuple[str, ...]]], list[str]]:
    """(modules.dep, modules.builtin) of the kernel whose modules are in `root`."""
    try:
        dep = parse_modules_dep((root / "modules.dep").read_text())
    except FileNotFoundError:
        raise InvalidArgument(
            f"the modules of kernel {version} are missing ({root}/modules.dep); reinstall "
            f"them with `apt install --reinstall linux-image-{version}`") from None
    builtin: list[str] = []
    with contextlib.suppress(FileNotFoundError):
        builtin = (root / "modules.builtin").read_text().split()
    return dep, builtin


def _add_firmware(archive: Archive, firmware: Mapping[str, list[str]],
                  result: ImageModules) -> None:
    """Add the installed files of `firmware` (file name -> modules that ask for it); note
    the modules whose firmware this host lacks."""
    lacking: dict[str, list[str]] = {}
    for name in sorted(firmware):
        found = [FIRMWARE_DIR / (name + s) for s in ("", ".xz", ".zst")
                 if (FIRMWARE_DIR / (name + s)).is_file()]
        if found:
            archive.add_file(f"lib/firmware/{found[0].relative_to(FIRMWARE_DIR)}",
                             found[0].read_bytes())
            result.used.append(found[0])
        else:
            for module in firmware[name]:
                lacking.setdefault(module, []).append(name)
    for module, names in sorted(lacking.items()):
        result.notes.append(
            f"{module}: {len(names)} firmware file(s) it may ask for are not installed (e.g. "
            f"{names[0]}); some of its cards need them: install the Debian firmware package "
            f"that holds them (`apt-file search {PurePosixPath(names[0]).name}`) and build again")


def _add_load_lists(archive: Archive, version: str,
                    dep: Mapping[str, tuple[str, Sequence[str]]], order: Sequence[str]) -> None:
    """The agent's list of the modules in load order, and their modules.dep."""
    plain = [plain_module_path(p) for p in order]
    archive.add_file(f"lib/modules/{version}/{LOAD_LIST}", "".join(p + "\n" for p in plain)
                     .encode())
    # A modules.dep of what is there, so that busybox modprobe works in a rescue shell.
    plain_of = dict(zip(order, plain, strict=True))
    lines = [f"{plain_of[p]}: {' '.join(plain_of[d] for d in dep[module_name(p)][1])}".rstrip()
             for p in order]
    archive.add_file(f"lib/modules/{version}/modules.dep", "".join(x + "\n" for x in lines)
                     .encode())
