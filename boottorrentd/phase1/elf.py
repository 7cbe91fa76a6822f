"""Reading ELF files: the dynamic-linking facts of programs and libraries (their loader,
the libraries they need and where they say to look), and a section of a kernel module;
and writing the smallest shared object that exports one data symbol (icudata.py's).

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


_ET_DYN, _PT_GNU_STACK, _PF_W, _PF_R = 3, 0x6474E551, 2, 4
_DT_HASH, _DT_SYMTAB, _DT_SYMENT, _DT_SONAME = 4, 6, 11, 14
_STB_GLOBAL, _STT_OBJECT = 1, 1


def data_library(soname: str, symbol: str, data: bytes, machine: int) -> bytes:
    """A 64-bit little-endian shared object named `soname` whose one export is the data
    object `symbol` holding `data`: what the dynamic loader needs to load it and bind the
    symbol (a program header table, a dynamic section, a symbol table with its SysV hash),
    no code and no section headers."""
    # The layout: ELF header, 3 program headers, hash, symbols, strings, dynamic, data; all
    # in one read-write segment at address 0 (glibc rewrites the dynamic section's
    # addresses in place, so it must be writable).
    strings = b"\0" + soname.encode() + b"\0" + symbol.encode() + b"\0"
    soname_at, symbol_at = 1, 2 + len(soname.encode())
    phdrs_at = 64
    hash_at = phdrs_at + 3 * 56
    # One bucket, two chain entries (the null symbol and ours): every lookup lands on ours.
    hash_table = struct.pack("<5I", 1, 2, 1, 0, 0)
    symtab_at = _align(hash_at + len(hash_table), 8)
    strtab_at = symtab_at + 2 * 24
    dynamic_at = _align(strtab_at + len(strings), 8)
    dynamic_tags = [(_DT_SONAME, soname_at), (_DT_HASH, hash_at), (_DT_STRTAB, strtab_at),
                    (_DT_SYMTAB, symtab_at), (_DT_STRSZ, len(strings)), (_DT_SYMENT, 24),
                    (_DT_NULL, 0)]
    data_at = _align(dynamic_at + 16 * len(dynamic_tags), 16)
    end = data_at + len(data)
    # st_shndx only has to be defined (not SHN_UNDEF) and not SHN_ABS, whose value the
    # loader would not relocate; there are no sections to point at, so 1 stands for one.
    symbols = bytes(24) + struct.pack("<IBBHQQ", symbol_at, _STB_GLOBAL << 4 | _STT_OBJECT,
                                      0, 1, data_at, len(data))
    header = (b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
              + struct.pack("<HHIQQQIHHHHHH", _ET_DYN, machine, 1, 0, phdrs_at, 0, 0, 64, 56,
                            3, 64, 0, 0))
    phdrs = (struct.pack("<IIQQQQQQ", _PT_LOAD, _PF_R | _PF_W, 0, 0, 0, end, end, 0x1000)
             + struct.pack("<IIQQQQQQ", _PT_DYNAMIC, _PF_R | _PF_W, dynamic_at, dynamic_at,
                           dynamic_at, 16 * len(dynamic_tags), 16 * len(dynamic_tags), 8)
             # Without it the loader would make the whole process's stack executable.
             + struct.pack("<IIQQQQQQ", _PT_GNU_STACK, _PF_R | _PF_W, 0, 0, 0, 0, 0, 16))
    dynamic = b"".join(struct.pack("<qQ", tag, value) for tag, value in dynamic_tags)
    out = bytearray(end)
    for at, part in ((0, header), (phdrs_at, phdrs), (hash_at, hash_table),
                     (symtab_at, symbols), (strtab_at, strings), (dynamic_at, dynamic),
                     (data_at, data)):
        out[at:at + len(part)] = part
    return bytes(out)


def _align(value: int, to: int) -> int:
    return -(-value // to) * to
