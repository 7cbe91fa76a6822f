"""The phase-1 image: a kernel and an initrd, built from this host's Debian packages.

`build(state_dir)` writes <state>/phase1/{vmlinuz,initrd.img,manifest.json}. The initrd
holds the kernel's modules for network cards, disks and the boot methods (decompressed, so
busybox insmod loads them, with a list in dependency order), busybox-static with its
applet links, aria2c and kexec with every shared library they need (found by reading
their ELF headers the way the dynamic loader does, not listed by hand), and the agent
(boottorrentd/phase1/agent/: /init and its helpers).

Nothing is downloaded. The same inputs give the same bytes: the cpio archive is written
here with sorted entries, zero times and owners and numbered inodes, and compressed by a
deterministic compressor. A build goes into a temporary folder beside the old image and
takes its place in one atomic rename, so a failed build leaves the previous image served.

Blocking and silent: the daemon runs it in a worker thread and shows `progress`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath

from boottorrentd.errors import BootTorrentError, Busy, InvalidArgument
from boottorrentd.util.fs import fsync_dir

__all__ = [
    "DEFAULT_MODULES",
    "Archive",
    "ElfInfo",
    "Manifest",
    "build",
    "cpio_newc",
    "find_kernel",
    "read_elf",
    "read_manifest",
    "resolve_libraries",
    "resolve_modules",
]

PHASE1_DIR = "phase1"
FILES = ("vmlinuz", "initrd.img", "manifest.json")

# Where the host keeps what goes in; tests point these elsewhere.
BOOT_DIR = Path("/boot")
MODULES_ROOT = Path("/lib/modules")
FIRMWARE_DIR = Path("/lib/firmware")
LD_SO_CONF = Path("/etc/ld.so.conf")

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
# Virtual machines without RDRAND would otherwise wait for entropy before TLS libraries
# (which aria2c loads) can seed themselves.
OTHER_MODULES = ("virtio_rng",)
DEFAULT_MODULES = NIC_MODULES + METHOD_MODULES + OTHER_MODULES

# The applets the agent scripts call; the build fails if the host's busybox lacks one.
AGENT_APPLETS = (
    "sh", "awk", "cat", "chmod", "cttyhack", "cut", "date", "dd", "dmesg", "echo", "grep",
    "head", "insmod", "ip", "kill", "ln", "losetup", "ls", "mkdir", "mount", "mv", "od",
    "poweroff", "printf", "reboot", "rm", "sed", "setsid", "sleep", "sort", "switch_root",
    "sync", "tail", "timeout", "tr", "udhcpc", "umount", "uniq", "wc", "wget",
)
# Programs besides busybox (name -> the Debian package that has it), found on PATH and
# placed at their own paths.
PROGRAMS = {"aria2c": "aria2", "kexec": "kexec-tools"}
# Where the agent's scripts go in the initrd (source name in boottorrentd/phase1/agent -> path).
AGENT_FILES = {
    "init": "init",
    "bt-download": "bin/bt-download",
    "bt-udhcpc": "bin/bt-udhcpc",
}
LOAD_LIST = "boottorrent.load"

ZSTD_LEVEL = 19
_CHUNK = 1 << 20

Progress = Callable[[str, float], None]


# --- manifest --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """What a build made and from what.

    `created_from` maps the Debian packages whose files went in to their versions;
    `files` lists the initrd's regular files (path, size, sha256); `modules` the kernel
    modules in the order the agent loads them; `notes` what a lab might miss (modules or
    firmware this host does not have).
    """

    kernel_version: str
    created_from: dict
    files: list[dict]
    vmlinuz: dict
    initrd: dict
    modules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def read_manifest(state_dir: Path) -> Manifest | None:
    """The manifest of the image in `state_dir`, or None when none is built."""
    try:
        return Manifest.from_json((Path(state_dir) / PHASE1_DIR / "manifest.json").read_text())
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None


# --- cpio ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """One archive member: `data` is a file's content or a symlink's target."""

    mode: int
    data: bytes = b""
    rdev: tuple[int, int] = (0, 0)


class Archive:
    """The initrd's tree, path -> Node; parent folders are added as needed.

    Modes are normalised (0755 for executables and folders, 0644 for other files) so that
    the archive depends on the files' contents only, not on how the host set them.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def _put(self, path: str, node: Node) -> None:
        path = _member(path)
        parts = PurePosixPath(path).parts
        for i in range(1, len(parts)):
            self.add_dir("/".join(parts[:i]))
        old = self.nodes.get(path)
        if old is not None and old != node:
            raise ValueError(f"{path} is added twice with different contents")
        self.nodes[path] = node

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        path = _member(path)
        old = self.nodes.get(path)
        if old is not None:
            if not stat.S_ISDIR(old.mode):
                raise ValueError(f"{path} is both a folder and a file")
            return
        self._put(path, Node(stat.S_IFDIR | mode))

    def add_file(self, path: str, data: bytes, *, executable: bool = False) -> None:
        self._put(path, Node(stat.S_IFREG | (0o755 if executable else 0o644), bytes(data)))

    def add_symlink(self, path: str, target: str) -> None:
        self._put(path, Node(stat.S_IFLNK | 0o777, target.encode()))

    def add_char_device(self, path: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._put(path, Node(stat.S_IFCHR | mode, rdev=(major, minor)))

    def files(self) -> list[dict]:
        """The regular files, for the manifest."""
        return [
            {"path": "/" + path, "size": len(node.data),
             "sha256": hashlib.sha256(node.data).hexdigest()}
            for path, node in sorted(self.nodes.items())
            if stat.S_ISREG(node.mode)
        ]

    def size(self) -> int:
        """The uncompressed archive's size in bytes."""
        files = sum(len(node.data) for node in self.nodes.values())
        return files + sum(len(chunk) for chunk in cpio_newc(self.nodes, data=False))

    def chunks(self) -> Iterator[bytes]:
        return cpio_newc(self.nodes)


def _member(path: str) -> str:
    pure = PurePosixPath("/", path)
    if ".." in pure.parts or pure == PurePosixPath("/"):
        raise ValueError(f"{path!r} is not a path inside the archive")
    return str(pure)[1:]


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


def _newc_header(ino: int, mode: int, nlink: int, size: int, rdev: tuple[int, int],
                 name: bytes) -> bytes:
    fields = (ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08x" % value for value in fields) + name + b"\0"
    return head + _pad(len(head))


def cpio_newc(nodes: Mapping[str, Node], *, data: bool = True) -> Iterator[bytes]:
    """The archive in the kernel's initramfs format ("newc"), deterministically.

    Members come sorted by path (a folder sorts before what it holds, which the kernel's
    unpacker needs: it creates no missing parents), with inode numbers in that order and
    zero times, owners and devices. `data=False` leaves the files' contents out (their
    padding stays), for sizing the archive without copying it.
    """
    for ino, path in enumerate(sorted(nodes), start=1):
        node = nodes[path]
        nlink = 2 if stat.S_ISDIR(node.mode) else 1
        yield _newc_header(ino, node.mode, nlink, len(node.data), node.rdev, path.encode())
        if node.data:
            if data:
                yield node.data
            yield _pad(len(node.data))
    yield _newc_header(0, 0, 1, 0, (0, 0), b"TRAILER!!!")


def read_cpio_newc(blob: bytes) -> dict[str, Node]:
    """The members of a newc archive (used to check what build() wrote)."""
    out: dict[str, Node] = {}
    pos = 0
    while True:
        if blob[pos:pos + 6] != b"070701":
            raise ValueError(f"no newc header at offset {pos}")
        fields = [int(blob[pos + 6 + 8 * i:pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = pos + 110
        name = blob[name_at:name_at + namesize - 1].decode()
        pos = name_at + namesize
        pos += -pos % 4
        content = blob[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return out
        out[name] = Node(mode, content, (fields[9], fields[10]))


# --- kernel ----------------------------------------------------------------------------------


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


def _kernel_config(version: str) -> dict[str, str]:
    config: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in (BOOT_DIR / f"config-{version}").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith("CONFIG_"):
                config[key] = value
    return config


# --- kernel modules --------------------------------------------------------------------------

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
        return _run([_need_tool("zstd", "zstd"), "-d", "-c", "-q", str(path)]).stdout
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


# --- ELF -------------------------------------------------------------------------------------

_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 10, 15, 29
# Debian's multiarch triplets by ELF machine.
_TRIPLETS = {62: "x86_64-linux-gnu", 3: "i386-linux-gnu", 183: "aarch64-linux-gnu",
             40: "arm-linux-gnueabihf", 243: "riscv64-linux-gnu"}


@dataclass(frozen=True)
class ElfInfo:
    elf_class: int  # 1: 32-bit, 2: 64-bit
    machine: int
    interp: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


def _elf_header(head: bytes, what: object) -> tuple[str, int, int]:
    """(struct byte order, class, machine); ValueError if `head` is not an ELF header."""
    if len(head) < 20 or head[:4] != b"\x7fELF" or head[4] not in (1, 2) or head[5] not in (1, 2):
        raise ValueError(f"{what} is not an ELF file")
    order = "<" if head[5] == 1 else ">"
    (machine,) = struct.unpack_from(order + "H", head, 18)
    return order, head[4], machine


def read_elf(path: Path) -> ElfInfo:
    """The dynamic-linking facts of the ELF file `path` (reads only its headers)."""
    with open(path, "rb") as f:
        head = f.read(64)
        order, cls, machine = _elf_header(head, path)
        if cls == 2:
            phoff, phentsize, phnum = (struct.unpack_from(order + "Q", head, 32)[0],
                                       *struct.unpack_from(order + "HH", head, 54))
            ph_fmt, dyn_fmt = order + "IIQQQQQQ", order + "qQ"
        else:
            phoff, phentsize, phnum = (struct.unpack_from(order + "I", head, 28)[0],
                                       *struct.unpack_from(order + "HH", head, 42))
            ph_fmt, dyn_fmt = order + "IIIIIIII", order + "iI"
        f.seek(phoff)
        table = f.read(phentsize * phnum)
        segments = []
        for i in range(phnum):
            values = struct.unpack_from(ph_fmt, table, i * phentsize)
            if cls == 2:
                p_type, _flags, offset, vaddr, _paddr, filesz = values[:6]
            else:
                p_type, offset, vaddr, _paddr, filesz = values[:5]
            segments.append((p_type, offset, vaddr, filesz))

        def read(offset: int, size: int) -> bytes:
            f.seek(offset)
            return f.read(size)

        interp = None
        dynamic = b""
        for p_type, offset, _vaddr, filesz in segments:
            if p_type == _PT_INTERP:
                interp = read(offset, filesz).split(b"\0")[0].decode()
            elif p_type == _PT_DYNAMIC:
                dynamic = read(offset, filesz)
        entries: list[tuple[int, int]] = []
        step = struct.calcsize(dyn_fmt)
        for pos in range(0, len(dynamic) - step + 1, step):
            tag, value = struct.unpack_from(dyn_fmt, dynamic, pos)
            if tag == _DT_NULL:
                break
            entries.append((tag, value))
        tags = dict(entries)
        strings = b""
        if _DT_STRTAB in tags:
            # DT_STRTAB is an address; the PT_LOAD segment that holds it says where it is
            # in the file.
            addr, size = tags[_DT_STRTAB], tags.get(_DT_STRSZ, 0)
            for p_type, offset, vaddr, filesz in segments:
                if p_type == _PT_LOAD and vaddr <= addr < vaddr + filesz:
                    strings = read(offset + addr - vaddr, size or filesz - (addr - vaddr))
                    break

    def string(at: int) -> str:
        return strings[at:strings.index(b"\0", at)].decode()

    def paths(tag: int) -> tuple[str, ...]:
        return tuple(p for t, v in entries if t == tag for p in string(v).split(":") if p)

    needed = tuple(string(v) for t, v in entries if t == _DT_NEEDED)
    return ElfInfo(cls, machine, interp, needed, paths(_DT_RPATH), paths(_DT_RUNPATH))


def elf_section(data: bytes, name: str) -> bytes:
    """The contents of the section `name` of the ELF file in `data` (b"" if none)."""
    order, cls, _machine = _elf_header(data[:20], "the module")
    if cls == 2:
        (shoff,) = struct.unpack_from(order + "Q", data, 40)
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 58)
        sh_fmt = order + "IIQQQQ"
    else:
        (shoff,) = struct.unpack_from(order + "I", data, 32)
        shentsize, shnum, shstrndx = struct.unpack_from(order + "HHH", data, 46)
        sh_fmt = order + "IIIIII"
    sections = [struct.unpack_from(sh_fmt, data, shoff + i * shentsize) for i in range(shnum)]
    if not sections:
        return b""
    names_at, names_size = sections[shstrndx][4], sections[shstrndx][5]
    names = data[names_at:names_at + names_size]
    for sh_name, _type, _flags, _addr, offset, size in sections:
        if names[sh_name:names.index(b"\0", sh_name)].decode() == name:
            return data[offset:offset + size]
    return b""


def _ld_so_conf_dirs(conf: Path, seen: set[Path] | None = None) -> list[str]:
    seen = set() if seen is None else seen
    if conf in seen:
        return []
    seen.add(conf)
    dirs: list[str] = []
    try:
        lines = conf.read_text().splitlines()
    except OSError:
        return dirs
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("include"):
            pattern = line.split(None, 1)[1] if len(line.split(None, 1)) > 1 else ""
            base = conf.parent if not pattern.startswith("/") else Path("/")
            for included in sorted(base.glob(pattern.lstrip("/"))):
                dirs += _ld_so_conf_dirs(included, seen)
        else:
            dirs.append(line)
    return dirs


def system_lib_dirs(machine: int) -> list[str]:
    """The folders the dynamic loader searches without a cache (glibc, Debian)."""
    triplet = _TRIPLETS.get(machine)
    multiarch = [f"/lib/{triplet}", f"/usr/lib/{triplet}"] if triplet else []
    return [*multiarch, "/lib", "/usr/lib"]


def resolve_libraries(binaries: Sequence[Path]) -> dict[str, Path]:
    """Every shared object `binaries` need, recursively, with their dynamic loader.

    Returns image path -> host file. Lookups follow the loader: DT_RPATH (without
    DT_RUNPATH), DT_RUNPATH, the folders of ld.so.conf, then the system folders; a
    candidate of another ELF class or machine (an i386 library, say) is skipped. In the
    image a library found through the search path goes into the first system folder,
    where the loader finds it without an ld.so.cache.
    """
    out: dict[str, Path] = {}
    conf_dirs = _ld_so_conf_dirs(LD_SO_CONF)
    pending: list[tuple[Path, ElfInfo]] = []
    for binary in binaries:
        pending.append((Path(binary), read_elf(Path(binary))))
    seen: set[str] = set()
    while pending:
        owner, info = pending.pop(0)
        system = system_lib_dirs(info.machine)
        if info.interp and info.interp not in out:
            out[info.interp] = Path(info.interp)
            pending.append((Path(info.interp), read_elf(Path(info.interp))))
        origin = str(owner.parent)
        own = [p.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)
               for p in ((info.rpath if not info.runpath else ()) + info.runpath)]
        for name in info.needed:
            if name in seen:
                continue
            found = _find_library(name, own, [*conf_dirs, *system], info)
            if found is None:
                raise InvalidArgument(
                    f"{owner} needs the shared library {name}, which is not installed; "
                    f"reinstall the package that holds {owner} (`dpkg -S {owner}` names it)")
            path, via_own = found
            dest = str(path) if via_own or "/" in name else f"{system[0]}/{name}"
            seen.add(name)
            out[dest] = path
            pending.append((path, read_elf(path)))
    return out


def _find_library(name: str, own: Sequence[str], search: Sequence[str],
                  info: ElfInfo) -> tuple[Path, bool] | None:
    if "/" in name:
        return (Path(name), False) if Path(name).is_file() else None
    for i, folder in enumerate([*own, *search]):
        candidate = Path(folder) / name
        if not candidate.is_file():
            continue
        try:
            found = read_elf(candidate)
        except (OSError, ValueError):
            continue
        if (found.elf_class, found.machine) == (info.elf_class, info.machine):
            return candidate, i < len(own)
    return None


# --- host packages ---------------------------------------------------------------------------


def _run(cmd: Sequence[str], **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, check=True, **kw)  # type: ignore[call-overload]


def _need_tool(name: str, package: str) -> str:
    path = shutil.which(name, path=_search_path())
    if path is None:
        raise InvalidArgument(f"{name} is not installed; install it with `apt install {package}`")
    return path


def _search_path() -> str:
    # The daemon may run with a PATH without the sbin folders, where kexec lives.
    dirs = os.environ.get("PATH", "").split(":")
    return ":".join([*dirs, *(d for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                                          "/usr/bin", "/sbin", "/bin") if d not in dirs)])


def _packages_of(paths: Iterable[Path]) -> dict[str, str]:
    """Debian package -> version, for the packages that own `paths` (empty without dpkg)."""
    if shutil.which("dpkg-query") is None:
        return {}
    queries: set[str] = set()
    for path in paths:
        for name in (str(path), os.path.realpath(path)):
            queries.add(name)
            # With merged /usr a file is reached as /usr/bin/x and /bin/x alike, and dpkg
            # knows it by the one its package ships.
            if re.match(r"/usr/(s?bin|lib\w*)/", name):
                queries.add(name[len("/usr"):])
            elif re.match(r"/(s?bin|lib\w*)/", name):
                queries.add("/usr" + name)
    result = subprocess.run(["dpkg-query", "-S", *sorted(queries)], capture_output=True,
                            text=True)
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


# --- compression -----------------------------------------------------------------------------


def _compression(config: Mapping[str, str]) -> str:
    """The best compressor this kernel unpacks and this host has."""
    if not config:
        # Without the kernel's config, take what every Debian kernel since 2019 unpacks.
        return "zstd" if shutil.which("zstd") else "xz"
    if config.get("CONFIG_RD_ZSTD") == "y" and shutil.which("zstd"):
        return "zstd"
    if config.get("CONFIG_RD_XZ") == "y":
        return "xz"
    if config.get("CONFIG_RD_GZIP") == "y":
        return "gzip"
    raise InvalidArgument("the kernel unpacks no initrd compression this builder can write "
                          "(zstd, xz or gzip); pick another kernel with --kernel")


def _compress(chunks: Iterable[bytes], total: int, out: Path, method: str,
              progress: Callable[[float], None]) -> None:
    fed = 0
    if method == "zstd":
        # zstd's multi-threaded mode gives the same bytes whatever the number of threads.
        with open(out, "wb") as sink:
            proc = subprocess.Popen([_need_tool("zstd", "zstd"), f"-{ZSTD_LEVEL}", "-T0", "-q",
                                     "-c"], stdin=subprocess.PIPE, stdout=sink,
                                    stderr=subprocess.PIPE)
            assert proc.stdin is not None and proc.stderr is not None
            try:
                for chunk in _rechunk(chunks):
                    proc.stdin.write(chunk)
                    fed += len(chunk)
                    progress(fed / total)
                proc.stdin.close()
                err = proc.stderr.read()
                code = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if code != 0:
            raise BootTorrentError(f"zstd failed ({code}): {err.decode(errors='replace')}")
        return
    if method == "xz":
        # The kernel's xz decoder knows CRC32 checks only; the x86 filter shrinks code.
        compressor = lzma.LZMACompressor(
            format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
            filters=[{"id": lzma.FILTER_X86},
                     {"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
        with open(out, "wb") as sink:
            for chunk in _rechunk(chunks):
                sink.write(compressor.compress(chunk))
                fed += len(chunk)
                progress(fed / total)
            sink.write(compressor.flush())
        return
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                               filename="") as sink:
        for chunk in _rechunk(chunks):
            sink.write(chunk)
            fed += len(chunk)
            progress(fed / total)


def _rechunk(chunks: Iterable[bytes]) -> Iterator[bytes | memoryview]:
    """About _CHUNK bytes at a time: few writes for the many small headers, and steady
    progress through big files."""
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        if len(chunk) >= _CHUNK:
            if pending:
                yield b"".join(pending)
                pending, size = [], 0
            view = memoryview(chunk)
            for start in range(0, len(view), _CHUNK):
                yield view[start:start + _CHUNK]
            continue
        pending.append(chunk)
        size += len(chunk)
        if size >= _CHUNK:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


# --- build -----------------------------------------------------------------------------------

# Steps and where each ends on the overall 0..1 scale; compressing takes most of the time.
_STEPS = {"kernel": 0.02, "modules": 0.08, "programs": 0.14, "agent": 0.15, "compress": 0.97,
          "install": 1.0}


class _Reporter:
    def __init__(self, callback: Progress | None) -> None:
        self.callback = callback
        self.last: tuple[str, float] = ("", -1.0)

    def step(self, name: str, fraction: float = 0.0) -> None:
        if self.callback is None:
            return
        end = _STEPS[name]
        begin = max((v for v in _STEPS.values() if v < end), default=0.0)
        overall = begin + (end - begin) * min(max(fraction, 0.0), 1.0)
        # Every call may become a D-Bus signal: new steps and whole percents only.
        if name == self.last[0] and overall - self.last[1] < 0.01 and overall < 1.0:
            return
        self.last = (name, overall)
        self.callback(name, overall)


def agent_dir() -> Path:
    """The agent's scripts, shipped as package data."""
    return Path(str(resources.files("boottorrentd.phase1").joinpath("agent")))


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
    report = _Reporter(progress)
    with _build_lock(state_dir):
        for stale in state_dir.glob(".phase1-build-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=".phase1-build-", dir=state_dir))
        try:
            manifest = _build_into(work, kernel_version, extra_modules, report)
            report.step("install", 0.0)
            _install(work, state_dir / PHASE1_DIR)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        report.step("install", 1.0)
        return manifest


@contextlib.contextmanager
def _build_lock(state_dir: Path) -> Iterator[None]:
    with open(state_dir / ".phase1.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"a phase-1 image is being built in {state_dir} right now; wait for it "
                       "to finish") from None
        yield


def _build_into(work: Path, kernel_version: str | None, extra_modules: Sequence[str],
                report: _Reporter) -> Manifest:
    version, vmlinuz = find_kernel(kernel_version)
    report.step("kernel", 0.0)
    kernel = vmlinuz.read_bytes()
    (work / "vmlinuz").write_bytes(kernel)
    config = _kernel_config(version)
    method = _compression(config)
    report.step("kernel", 1.0)

    archive = Archive()
    notes: list[str] = []
    used: list[Path] = [vmlinuz]
    modules, module_notes, module_files = _add_modules(archive, version, extra_modules, report)
    notes += module_notes
    used += module_files
    report.step("programs", 0.0)
    used += _add_programs(archive)
    report.step("programs", 1.0)
    _add_agent(archive, version)
    report.step("agent", 1.0)

    total = archive.size()
    report.step("compress", 0.0)
    _compress(archive.chunks(), total, work / "initrd.img", method,
              lambda f: report.step("compress", f))
    if method == "zstd":
        used.append(Path(_need_tool("zstd", "zstd")))
    initrd = (work / "initrd.img").read_bytes()
    manifest = Manifest(
        kernel_version=version,
        created_from=_packages_of(used),
        files=archive.files(),
        vmlinuz={"size": len(kernel), "sha256": hashlib.sha256(kernel).hexdigest()},
        initrd={"size": len(initrd), "sha256": hashlib.sha256(initrd).hexdigest(),
                "compression": method, "uncompressed_size": total},
        modules=[module_name(m) for m in modules],
        notes=notes,
    )
    (work / "manifest.json").write_text(manifest.to_json())
    for name in FILES:
        with open(work / name, "rb") as f:
            os.fsync(f.fileno())
    return manifest


def _add_modules(archive: Archive, version: str, extra: Sequence[str],
                 report: _Reporter) -> tuple[list[str], list[str], list[Path]]:
    root = MODULES_ROOT / version
    try:
        dep = parse_modules_dep((root / "modules.dep").read_text())
    except FileNotFoundError:
        raise InvalidArgument(
            f"the modules of kernel {version} are missing ({root}/modules.dep); reinstall "
            f"them with `apt install --reinstall linux-image-{version}`") from None
    builtin: list[str] = []
    with contextlib.suppress(FileNotFoundError):
        builtin = (root / "modules.builtin").read_text().split()
    unknown = [m for m in extra if module_name(m) not in dep
               and module_name(m) not in {module_name(b) for b in builtin}]
    if unknown:
        raise InvalidArgument(f"kernel {version} has no module {unknown[0]!r}; "
                              f"`find {root} -name '*.ko*'` lists them")
    order, missing = resolve_modules(dep, [*DEFAULT_MODULES, *extra], builtin)
    notes = [f"kernel {version} has no module {name}; machines that need it will not "
             "find their network card or disk" for name in missing]
    plain: list[str] = []
    firmware: dict[str, list[str]] = {}
    used: list[Path] = []
    for i, path in enumerate(order):
        data = decompress_module(root / path)
        target = _plain_module_path(path)
        archive.add_file(f"lib/modules/{version}/{target}", data)
        plain.append(target)
        used.append(root / path)
        for key, value in modinfo(data):
            if key == "firmware":
                firmware.setdefault(value, []).append(module_name(path))
        report.step("modules", (i + 1) / (len(order) + 1))
    lacking: dict[str, list[str]] = {}
    for name in sorted(firmware):
        found = [FIRMWARE_DIR / (name + s) for s in ("", ".xz", ".zst")
                 if (FIRMWARE_DIR / (name + s)).is_file()]
        if found:
            archive.add_file(f"lib/firmware/{found[0].relative_to(FIRMWARE_DIR)}",
                             found[0].read_bytes())
            used.append(found[0])
        else:
            for module in firmware[name]:
                lacking.setdefault(module, []).append(name)
    for module, names in sorted(lacking.items()):
        notes.append(f"{module}: {len(names)} firmware file(s) it may ask for are not "
                     f"installed (e.g. {names[0]}); some of its cards need them: install "
                     f"the Debian firmware package that holds them (`apt-file search "
                     f"{PurePosixPath(names[0]).name}`) and build again")
    archive.add_file(f"lib/modules/{version}/{LOAD_LIST}", "".join(p + "\n" for p in plain)
                     .encode())
    # A modules.dep of what is there, so that busybox modprobe works in a rescue shell.
    plain_of = dict(zip(order, plain, strict=True))
    lines = [f"{plain_of[p]}: {' '.join(plain_of[d] for d in dep[module_name(p)][1])}".rstrip()
             for p in order]
    archive.add_file(f"lib/modules/{version}/modules.dep", "".join(x + "\n" for x in lines)
                     .encode())
    return order, notes, used


def _plain_module_path(path: str) -> str:
    for suffix in (".xz", ".zst", ".gz"):
        if path.endswith(".ko" + suffix):
            return path[: -len(suffix)]
    return path


def _add_programs(archive: Archive) -> list[Path]:
    busybox = _need_tool("busybox", "busybox-static")
    if read_elf(Path(busybox)).interp is not None:
        # A dynamic busybox (Debian's "busybox" package) would need its libraries too and
        # may lack applets; the static one is the rescue tool Debian ships for this.
        raise InvalidArgument(f"{busybox} is not statically linked; install the static "
                              "one with `apt install busybox-static`")
    applets = _run([busybox, "--list"], text=True).stdout.split()
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
    used = [Path(busybox)]
    programs = []
    for name, package in PROGRAMS.items():
        path = Path(_need_tool(name, package))
        programs.append(path)
        # At its own path, so that PATH order and any $ORIGIN in it behave as on the host.
        archive.add_file(str(path), path.read_bytes(), executable=True)
        used.append(path)
    for dest, source in sorted(resolve_libraries(programs).items()):
        archive.add_file(dest, source.read_bytes(), executable=os.access(source, os.X_OK))
        used.append(Path(dest) if Path(dest).exists() else source)
    return used


def _add_agent(archive: Archive, version: str) -> None:
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


def _install(work: Path, dest: Path) -> None:
    """Put the files in `work` in place of `dest` in one step."""
    staged = Path(tempfile.mkdtemp(prefix=".phase1-build-new-", dir=dest.parent))
    for name in FILES:
        os.replace(work / name, staged / name)
    staged.chmod(0o755)
    for name in FILES:
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
