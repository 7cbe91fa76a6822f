"""The shared libraries programs need, found the way glibc's dynamic loader finds them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from boottorrentd.errors import InvalidArgument
from boottorrentd.phase1.elf import ElfInfo, read_elf

# The loader's configuration on this host.
LD_SO_CONF = Path("/etc/ld.so.conf")
# Debian's multiarch triplets by ELF machine.
_TRIPLETS = {62: "x86_64-linux-gnu", 3: "i386-linux-gnu", 183: "aarch64-linux-gnu",
             40: "arm-linux-gnueabihf", 243: "riscv64-linux-gnu"}


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

