"""Reading ELF files: the dynamic-linking facts of programs and libraries (their loader,
the libraries they need and where they say to look), and a section of a kernel module.

Only the headers and the tables they point to are read, the way the dynamic loader
reads them; nothing is run.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 10, 15, 29


@dataclass(frozen=True)
class ElfInfo:
    elf_class: int  # 1: 32-bit, 2: 64-bit
    machine: int
    interp: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


class _Segment(NamedTuple):
    type: int
    offset: int
    vaddr: int
    filesz: int


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
        segments = _segments(f, head, order, cls)
        interp = None
        dynamic = b""
        for segment in segments:
            if segment.type == _PT_INTERP:
                interp = _read_at(f, segment.offset, segment.filesz).split(b"\0")[0].decode()
            elif segment.type == _PT_DYNAMIC:
                dynamic = _read_at(f, segment.offset, segment.filesz)
        entries = _dynamic_entries(dynamic, order + ("qQ" if cls == 2 else "iI"))
        strings = _dynamic_strings(f, segments, dict(entries))

    def string(at: int) -> str:
        return strings[at:strings.index(b"\0", at)].decode()

    def paths(tag: int) -> tuple[str, ...]:
        return tuple(p for t, v in entries if t == tag for p in string(v).split(":") if p)

    needed = tuple(string(v) for t, v in entries if t == _DT_NEEDED)
    return ElfInfo(cls, machine, interp, needed, paths(_DT_RPATH), paths(_DT_RUNPATH))


def _read_at(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def _segments(f: BinaryIO, head: bytes, order: str, cls: int) -> list[_Segment]:
    """The program header table."""
    if cls == 2:
        phoff, phentsize, phnum = (struct.unpack_from(order + "Q", head, 32)[0],
                                   *struct.unpack_from(order + "HH", head, 54))
        ph_fmt = order + "IIQQQQQQ"
    else:
        phoff, phentsize, phnum = (struct.unpack_from(order + "I", head, 28)[0],
                                   *struct.unpack_from(order + "HH", head, 42))
        ph_fmt = order + "IIIIIIII"
    table = _read_at(f, phoff, phentsize * phnum)
    segments = []
    for i in range(phnum):
        values = struct.unpack_from(ph_fmt, table, i * phentsize)
        if cls == 2:
            p_type, _flags, offset, vaddr, _paddr, filesz = values[:6]
        else:
            p_type, offset, vaddr, _paddr, filesz = values[:5]
        segments.append(_Segment(p_type, offset, vaddr, filesz))
    return segments


def _dynamic_entries(dynamic: bytes, dyn_fmt: str) -> list[tuple[int, int]]:
    """The (tag, value) pairs of the dynamic section, up to DT_NULL."""
    entries: list[tuple[int, int]] = []
    step = struct.calcsize(dyn_fmt)
    for pos in range(0, len(dynamic) - step + 1, step):
        tag, value = struct.unpack_from(dyn_fmt, dynamic, pos)
        if tag == _DT_NULL:
            break
        entries.append((tag, value))
    return entries


def _dynamic_strings(f: BinaryIO, segments: list[_Segment], tags: dict[int, int]) -> bytes:
    """The dynamic string table (b"" if none)."""
    if _DT_STRTAB not in tags:
        return b""
    # DT_STRTAB is an address; the PT_LOAD segment that holds it says where it is in the file.
    addr, size = tags[_DT_STRTAB], tags.get(_DT_STRSZ, 0)
    for segment in segments:
        if segment.type == _PT_LOAD and segment.vaddr <= addr < segment.vaddr + segment.filesz:
            start = addr - segment.vaddr
            return _read_at(f, segment.offset + start, size or segment.filesz - start)
    return b""


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
