"""BitTorrent v1 metainfo for the OS library, made deterministically.

Every server that holds the same files must produce the same infohash, so that
clients booted from different servers (or from the same server after a reinstall)
form one swarm and a torrent can be checked by rebuilding it. Hence nothing that
depends on the filesystem or the clock goes into the metainfo: no mtimes, no creation
date, no directory order, and a piece length that depends on the total size alone.

Pure stdlib on purpose: hashing a multi-GiB OS image is the hot path, and hashlib
already runs it at disk speed while releasing the GIL.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boottorrentd.errors import InvalidArgument

__all__ = [
    "TorrentFile",
    "TorrentInfo",
    "bdecode",
    "bencode",
    "make_torrent",
    "piece_length_for",
    "read_torrent",
    "scan_payload",
    "with_announce",
]

_KIB = 1024
_MIB = 1024 * _KIB
# Below 256 KiB the piece list and per-piece overhead grow for no benefit; above
# 16 MiB a single bad piece costs too much to re-fetch over a busy lab network.
_MIN_PIECE_LENGTH = 256 * _KIB
_MAX_PIECE_LENGTH = 16 * _MIB
# Keeps the .torrent (20 bytes a piece) around 40 KB, small enough for phase 1 to
# fetch instantly, while pieces stay small enough to spread quickly between peers.
_MAX_PIECES = 2000
# Large reads keep syscall overhead negligible whatever the piece length is.
_READ_SIZE = 1 * _MIB
_SHA1_LENGTH = 20
_CREATED_BY = "boottorrent"
# Deep enough for any real metainfo, shallow enough that hostile input cannot hit
# Python's recursion limit (which would surface as RecursionError, not ValueError).
_MAX_DEPTH = 256

_INTEGER = re.compile(rb"-?(?:0|[1-9][0-9]*)")
_LENGTH = re.compile(rb"0|[1-9][0-9]*")

_Bencodable = int | bytes | bytearray | str | list[Any] | tuple[Any, ...] | dict[Any, Any]


# --------------------------------------------------------------------------- bencode


def bencode(value: _Bencodable) -> bytes:
    """Encode `value`; dict keys (str or bytes) are sorted by their raw bytes.

    Raises TypeError for anything that has no bencoding (floats, None, bool) and
    ValueError for a dict whose keys collide once encoded (e.g. "a" and b"a").
    """
    parts: list[bytes] = []
    _encode(value, parts)
    return b"".join(parts)


def _encode(value: object, out: list[bytes]) -> None:
    # bool is an int subclass; encoding True as i1e would silently hide a caller's bug.
    if isinstance(value, bool):
        raise TypeError("bencode: bool has no bencoding; pass 0 or 1 explicitly")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, bytes | bytearray):
        out.append(b"%d:" % len(value))
        out.append(bytes(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, list | tuple):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        items: dict[bytes, object] = {}
        for key, item in value.items():
            if isinstance(key, str):
                raw_key = key.encode("utf-8")
            elif isinstance(key, bytes | bytearray):
                raw_key = bytes(key)
            else:
                raise TypeError(f"bencode: dict key {key!r} is not str or bytes")
            if raw_key in items:
                raise ValueError(f"bencode: dict key {raw_key!r} appears twice")
            items[raw_key] = item
        out.append(b"d")
        for raw_key in sorted(items):
            out.append(b"%d:" % len(raw_key))
            out.append(raw_key)
            _encode(items[raw_key], out)
        out.append(b"e")
    else:
        raise TypeError(f"bencode: {type(value).__name__} has no bencoding")


def bdecode(data: bytes) -> object:
    """Decode one bencoded value that must span all of `data`.

    Strings come back as bytes (metainfo mixes text and binary), dicts as
    dict[bytes, object]. Raises ValueError, naming the offset, on malformed input:
    trailing data, leading zeros, "-0", truncation, non-string or repeated dict keys.
    Unsorted dict keys are accepted, because real-world torrents carry them and the
    infohash is taken from the raw bytes anyway.
    """
    data = bytes(data)
    if not data:
        raise ValueError("bdecode: empty input")
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise ValueError(f"bdecode: trailing data at offset {end} ({len(data) - end} bytes)")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[object, int]:
    """Decode the value starting at `pos`; return it and the offset just past it."""
    if pos >= len(data):
        raise ValueError(f"bdecode: truncated input at offset {pos}")
    lead = data[pos]
    if lead == ord("i"):
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise ValueError(f"bdecode: unterminated integer at offset {pos}")
        digits = data[pos + 1 : end]
        if not _INTEGER.fullmatch(digits) or digits == b"-0":
            raise ValueError(f"bdecode: invalid integer {digits[:32]!r} at offset {pos}")
        try:
            return int(digits), end + 1
        except ValueError:  # only reachable past sys.get_int_max_str_digits()
            raise ValueError(f"bdecode: integer too long at offset {pos}") from None
    if ord("0") <= lead <= ord("9"):
        return _decode_string(data, pos)
    if lead in (ord("l"), ord("d")):
        if depth >= _MAX_DEPTH:
            raise ValueError(f"bdecode: nesting deeper than {_MAX_DEPTH} at offset {pos}")
        if lead == ord("l"):
            items: list[object] = []
            pos += 1
            while pos < len(data) and data[pos] != ord("e"):
                item, pos = _decode(data, pos, depth + 1)
                items.append(item)
            if pos >= len(data):
                raise ValueError("bdecode: unterminated list")
            return items, pos + 1
        mapping: dict[bytes, object] = {}
        pos += 1
        while pos < len(data) and data[pos] != ord("e"):
            if not ord("0") <= data[pos] <= ord("9"):
                raise ValueError(f"bdecode: dict key at offset {pos} is not a string")
            key_pos = pos
            key, pos = _decode_string(data, pos)
            if key in mapping:
                raise ValueError(f"bdecode: dict key {key!r} repeated at offset {key_pos}")
            mapping[key], pos = _decode(data, pos, depth + 1)
        if pos >= len(data):
            raise ValueError("bdecode: unterminated dict")
        return mapping, pos + 1
    raise ValueError(f"bdecode: unexpected byte {bytes([lead])!r} at offset {pos}")


def _decode_string(data: bytes, pos: int) -> tuple[bytes, int]:
    colon = data.find(b":", pos)
    if colon < 0:
        raise ValueError(f"bdecode: string length without ':' at offset {pos}")
    digits = data[pos:colon]
    # The digit cap keeps int() away from its own limit on huge digit strings.
    if not _LENGTH.fullmatch(digits) or len(digits) > 20:
        raise ValueError(f"bdecode: invalid string length {digits[:32]!r} at offset {pos}")
    start = colon + 1
    end = start + int(digits)
    if end > len(data):
        raise ValueError(f"bdecode: string at offset {pos} runs past the end of the input")
    return data[start:end], end


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class TorrentFile:
    """One payload file.

    `path` is relative to the torrent's top folder `name`. A single-file torrent
    (only ever read, never made here) has one file with the empty path (), so that
    `<download dir>/<name>/<*path>` names the file in both modes.
    """

    path: tuple[str, ...]
    length: int


@dataclass(frozen=True)
class TorrentInfo:
    name: str
    infohash: str
    piece_length: int
    files: tuple[TorrentFile, ...]

    @property
    def total_size(self) -> int:
        return sum(f.length for f in self.files)


# --------------------------------------------------------------------------- making


def piece_length_for(total_size: int) -> int:
    """The smallest power of two >= 256 KiB giving at most 2000 pieces, capped at 16 MiB."""
    if total_size < 0:
        raise ValueError(f"total size must not be negative, got {total_size}")
    length = _MIN_PIECE_LENGTH
    while length < _MAX_PIECE_LENGTH and _ceil_div(total_size, length) > _MAX_PIECES:
        length *= 2
    return length


def _ceil_div(a: int, b: int) -> int:
    # Integer arithmetic: float division loses exactness past 2**53 bytes.
    return -(-a // b)


def scan_payload(root: Path, exclude: Collection[str] = ("config.yaml",)) -> list[TorrentFile]:
    """List the regular files under `root`, in a filesystem-independent order.

    `exclude` holds '/'-separated paths relative to `root` that are not payload; the
    default leaves out the OS's own top-level config.yaml (metadata about the OS) while
    a config.yaml deeper down is an ordinary file of the OS. Hidden files are payload.
    Symlinks and special files are refused rather than followed or skipped: following
    could pull in files from outside the folder, skipping would boot a broken OS.
    """
    root = Path(root)
    if not root.is_dir():
        raise InvalidArgument(f"{root}: not a directory; give the folder that holds the OS files")
    excluded = frozenset(exclude)
    found: list[TorrentFile] = []
    _walk(root, (), excluded, found)
    if not found:
        skipped = "".join(f", {name}" for name in sorted(excluded))
        raise InvalidArgument(
            f"{root}: no files to share (empty folders{skipped} do not count); "
            "put the OS files in it"
        )
    # Sorting component by component, as UTF-8 bytes, makes the order (and so the
    # infohash) independent of how the filesystem happens to list directories.
    found.sort(key=lambda f: tuple(part.encode("utf-8") for part in f.path))
    return found


def _walk(
    directory: Path, prefix: tuple[str, ...], excluded: frozenset[str], found: list[TorrentFile]
) -> None:
    with os.scandir(directory) as entries:
        for entry in entries:
            where = Path(entry.path)
            try:
                os.fsencode(entry.name).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgument(
                    f"{where}: file name is not valid UTF-8, which a torrent cannot carry; "
                    "rename it"
                ) from None
            path = (*prefix, entry.name)
            if "/".join(path) in excluded:
                continue
            if entry.is_symlink():
                raise InvalidArgument(
                    f"{where}: is a symbolic link, which a torrent cannot carry; "
                    "replace the symlink by the file it points to"
                )
            if entry.is_dir(follow_symlinks=False):
                _walk(where, path, excluded, found)
            elif entry.is_file(follow_symlinks=False):
                found.append(TorrentFile(path, entry.stat(follow_symlinks=False).st_size))
            else:
                raise InvalidArgument(
                    f"{where}: is a special file (device, FIFO or socket), which a torrent "
                    "cannot carry; remove it from the folder"
                )


def make_torrent(
    root: Path,
    name: str,
    *,
    exclude: Collection[str] = ("config.yaml",),
    progress: Callable[[int, int], None] | None = None,
    piece_length: int | None = None,
) -> tuple[bytes, TorrentInfo]:
    """Hash the files under `root` into deterministic multi-file metainfo named `name`,
    in pieces of `piece_length` bytes (None: piece_length_for() the total size).

    Blocking on purpose: the daemon calls it in a worker thread, where hashlib's
    release of the GIL keeps the event loop responsive. `progress(hashed, total)` is
    called after every piece, the last call being (total, total); an exception raised
    by it aborts the hashing, which is how a caller cancels.
    """
    root = Path(root)
    try:
        _check_component(name, "torrent name")
    except ValueError as error:
        raise InvalidArgument(f"{error}; choose a plain folder name") from None
    files = scan_payload(root, exclude)
    total = sum(f.length for f in files)
    if total == 0:
        raise InvalidArgument(f"{root}: every file is empty, so there is nothing to share")
    piece_length = piece_length or piece_length_for(total)
    pieces = _hash_pieces(root, files, piece_length, total, progress)

    # Multi-file mode even for one file keeps the layout <download dir>/<name>/<path>
    # the same for every OS. The info dict holds only the four keys that describe the
    # content: anything else (private, source, dates) would split identical swarms.
    info = {
        "files": [{"length": f.length, "path": list(f.path)} for f in files],
        "name": name,
        "piece length": piece_length,
        "pieces": pieces,
    }
    raw_info = bencode(info)
    metainfo = _splice_info({b"created by": _CREATED_BY}, raw_info)
    infohash = hashlib.sha1(raw_info).hexdigest()
    return metainfo, TorrentInfo(name, infohash, piece_length, tuple(files))


def _hash_pieces(
    root: Path,
    files: Sequence[TorrentFile],
    piece_length: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> bytes:
    pieces = bytearray()
    digest = hashlib.sha1()
    in_piece = 0
    hashed = 0
    buffer = bytearray(_READ_SIZE)
    view = memoryview(buffer)
    for entry in files:
        path = root.joinpath(*entry.path)
        changed = InvalidArgument(
            f"{path}: changed while it was being hashed; try again when nothing writes to it"
        )
        try:
            # O_NOFOLLOW: the file was regular when scanned; refuse a symlink swapped in since.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise changed from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise changed from None
            raise
        with open(fd, "rb", buffering=0) as stream:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size != entry.length:
                raise changed
            seen = 0
            while n := stream.readinto(view):
                seen += n
                if seen > entry.length:
                    raise changed
                offset = 0
                # A piece may start in one file and end in the next: the digest carries
                # over between files, as BitTorrent v1 hashes the concatenated payload.
                while offset < n:
                    take = min(n - offset, piece_length - in_piece)
                    digest.update(view[offset : offset + take])
                    offset += take
                    in_piece += take
                    hashed += take
                    if in_piece == piece_length:
                        pieces += digest.digest()
                        digest = hashlib.sha1()
                        in_piece = 0
                        if progress is not None:
                            progress(hashed, total)
            if seen != entry.length:
                raise changed
    if in_piece:
        pieces += digest.digest()
        if progress is not None:
            progress(hashed, total)
    return bytes(pieces)


def _splice_info(top: dict[bytes, object], raw_info: bytes) -> bytes:
    """Bencode `top` with `raw_info` inserted verbatim as its "info" value.

    Re-encoding a decoded info dict could change its bytes (unsorted keys in a torrent
    made elsewhere), and with them the infohash; splicing the original bytes cannot.
    """
    encoded: dict[bytes, bytes] = {b"info": raw_info}
    for key, value in top.items():
        if key != b"info":
            chunks: list[bytes] = []
            _encode(value, chunks)  # values come from bdecode, typed as plain objects
            encoded[key] = b"".join(chunks)
    parts = [b"d"]
    for key in sorted(encoded):
        parts += [bencode(key), encoded[key]]
    parts.append(b"e")
    return b"".join(parts)


# --------------------------------------------------------------------------- reading


def read_torrent(data: bytes) -> TorrentInfo:
    """Parse and validate v1 metainfo (multi-file or single-file).

    The infohash is the SHA-1 of the info dict's bytes exactly as they appear in
    `data`. Raises ValueError naming what is malformed.
    """
    top, raw_info = _parse_metainfo(data)
    info = top[b"info"]
    assert isinstance(info, dict)  # checked by _parse_metainfo

    name = _text(_require(info, b"name", bytes, "info"), "info.name")
    _check_component(name, "info.name")
    piece_length = _require(info, b"piece length", int, "info")
    if piece_length <= 0:
        raise ValueError(f"torrent: info.piece length must be positive, got {piece_length}")
    pieces = _require(info, b"pieces", bytes, "info")
    if len(pieces) % _SHA1_LENGTH:
        raise ValueError(
            f"torrent: info.pieces is {len(pieces)} bytes, not a multiple of {_SHA1_LENGTH}"
        )

    if (b"files" in info) == (b"length" in info):
        raise ValueError(
            "torrent: info must hold exactly one of 'files' (multi-file) and 'length' "
            "(single-file); v2-only torrents are not supported"
        )
    files = _read_files(info) if b"files" in info else _read_single(info)

    total = sum(f.length for f in files)
    expected = _ceil_div(total, piece_length)
    if len(pieces) // _SHA1_LENGTH != expected:
        raise ValueError(
            f"torrent: info.pieces holds {len(pieces) // _SHA1_LENGTH} hashes but "
            f"{total} bytes in pieces of {piece_length} need {expected}"
        )
    return TorrentInfo(name, hashlib.sha1(raw_info).hexdigest(), piece_length, files)


def _parse_metainfo(data: bytes) -> tuple[dict[bytes, object], bytes]:
    """Return the decoded top-level dict and the raw bytes of its info dict."""
    data = bytes(data)
    top = bdecode(data)  # validates the whole input, trailing data included
    if not isinstance(top, dict):
        raise ValueError("torrent: metainfo is not a bencoded dict")
    if not isinstance(top.get(b"info"), dict):
        raise ValueError("torrent: metainfo has no 'info' dict")
    # Walk the top-level dict again, this time keeping offsets, to find where the
    # info value starts and ends in the original bytes.
    pos = 1
    while data[pos] != ord("e"):
        key, pos = _decode_string(data, pos)
        start = pos
        _, pos = _decode(data, pos, 1)
        if key == b"info":
            return top, data[start:pos]
    raise AssertionError("unreachable: info key vanished between two parses")


def _read_files(info: dict[bytes, object]) -> tuple[TorrentFile, ...]:
    entries = info[b"files"]
    if not isinstance(entries, list) or not entries:
        raise ValueError("torrent: info.files must be a non-empty list")
    files: list[TorrentFile] = []
    seen: set[tuple[str, ...]] = set()
    folders: set[tuple[str, ...]] = set()
    for index, entry in enumerate(entries):
        where = f"info.files[{index}]"
        if not isinstance(entry, dict):
            raise ValueError(f"torrent: {where} is not a dict")
        length = _require(entry, b"length", int, where)
        if length < 0:
            raise ValueError(f"torrent: {where}.length is negative ({length})")
        raw_path = _require(entry, b"path", list, where)
        if not raw_path:
            raise ValueError(f"torrent: {where}.path is empty")
        parts: list[str] = []
        for part_index, raw in enumerate(raw_path):
            label = f"{where}.path[{part_index}]"
            if not isinstance(raw, bytes):
                raise ValueError(f"torrent: {label} is not a string")
            part = _text(raw, label)
            # A component like ".." or "a/b" would let a torrent write outside its folder.
            _check_component(part, label)
            parts.append(part)
        path = tuple(parts)
        if path in seen or path in folders:
            raise ValueError(f"torrent: {where}.path {'/'.join(path)} is listed twice")
        prefixes = {path[:i] for i in range(1, len(path))}
        if prefixes & seen:
            raise ValueError(f"torrent: {where}.path {'/'.join(path)} is inside a file")
        seen.add(path)
        folders |= prefixes
        files.append(TorrentFile(path, length))
    return tuple(files)


def _read_single(info: dict[bytes, object]) -> tuple[TorrentFile, ...]:
    length = _require(info, b"length", int, "info")
    if length < 0:
        raise ValueError(f"torrent: info.length is negative ({length})")
    return (TorrentFile((), length),)


def _require(mapping: dict[bytes, object], key: bytes, kind: type, where: str) -> Any:
    if key not in mapping:
        raise ValueError(f"torrent: {where} has no '{key.decode()}'")
    value = mapping[key]
    # bdecode never yields bool, but a caller-built dict might; keep ints honest.
    if not isinstance(value, kind) or isinstance(value, bool):
        names = {int: "an integer", bytes: "a string", list: "a list", dict: "a dict"}
        raise ValueError(f"torrent: {where}.{key.decode()} is not {names.get(kind, kind)}")
    return value


def _text(raw: bytes, label: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"torrent: {label} is not valid UTF-8") from None


def _check_component(part: str, label: str) -> None:
    if part in ("", ".", "..") or "/" in part or "\0" in part:
        raise ValueError(f"{label} {part!r} is not a plain file or folder name")


# --------------------------------------------------------------------------- trackers


def with_announce(torrent: bytes, announce: Sequence[str]) -> bytes:
    """Return `torrent` announcing to `announce` (one tier per URL), info untouched.

    Trackers live outside the info dict so a server can point the same torrent at its
    own tracker without changing the infohash. An empty `announce` removes trackers.
    """
    if isinstance(announce, str):
        # A bare string is a sequence of one-letter "URLs"; almost surely a mistake.
        raise TypeError("with_announce: pass a sequence of URLs, not a single string")
    urls = list(announce)
    for url in urls:
        if not isinstance(url, str) or not url:
            raise ValueError(f"with_announce: {url!r} is not a tracker URL")
    read_torrent(torrent)  # refuse to pass on metainfo that is malformed
    top, raw_info = _parse_metainfo(torrent)
    top = {key: value for key, value in top.items() if key not in (b"announce", b"announce-list")}
    if urls:
        top[b"announce"] = urls[0]
        top[b"announce-list"] = [[url] for url in urls]
    return _splice_info(top, raw_info)
