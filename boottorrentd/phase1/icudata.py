"""ICU's data library in the initrd: an empty stand-in for the 31 MB one.

Debian's aria2c links libxml2 (for Metalink and XML-RPC), which links ICU's libicuuc for
character-set conversions, which links libicudata.so.NN: ICU's whole database (31 MB of
the initrd's 79 MB unpacked) behind one exported symbol, icudtNN_dat. The agent runs
aria2c on .torrent files only: nothing in that path parses XML, and libxml2 calls ICU
only to convert a document in an encoding it lacks a native converter for. Nothing opens
ICU's data at load time, so the loader only needs the symbol to exist.

The stand-in exports icudtNN_dat holding a valid, empty ICU common-data package (a
"CmnD" header and a table of contents with no entries), so that were ICU ever asked for
a converter it would find none and return an error (U_FILE_ACCESS_ERROR), the same as an
ICU whose data files are missing; libxml2 then reports the encoding as unsupported.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

from boottorrentd.phase1.elf import data_library, read_elf

# libicudata.so.72 (or .72.1): the soname's number is ICU's major version.
_ICUDATA = re.compile(r"libicudata\.so\.(\d+)")


def is_icu_data(path: str) -> bool:
    """Whether `path` (a library's path in the image) is ICU's data library."""
    return _ICUDATA.fullmatch(Path(path).name) is not None


def empty_icu_data(path: str, host_file: Path) -> bytes:
    """The stand-in for the ICU data library `host_file`, to be put at `path`."""
    match = _ICUDATA.fullmatch(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not ICU's data library")
    major = int(match.group(1))
    return data_library(Path(path).name, f"icudt{major}_dat", _empty_common_data(major),
                        read_elf(host_file).machine)


def _empty_common_data(major: int) -> bytes:
    """ICU common data (udata.cpp, udata_checkCommonData) with no items."""
    # UDataInfo: its size, a reserved word, little-endian, ASCII family, 2-byte UChar,
    # a reserved byte, the format "CmnD" 1.0.0.0 and the data version (ICU's).
    info = struct.pack("<HHBBBB4s4B4B", 20, 0, 0, 0, 2, 0, b"CmnD", 1, 0, 0, 0,
                       major, 0, 0, 0)
    header_size = 32  # MappedData (4 bytes) + UDataInfo, padded to 16 as genccode does
    header = struct.pack("<HBB", header_size, 0xDA, 0x27) + info
    # The table of contents: its number of entries, zero.
    return header.ljust(header_size, b"\0") + struct.pack("<I", 0)
