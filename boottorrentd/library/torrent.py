"""BitTorrent v1 metainfo for the OS library, made deterministically.

Every server that holds the same files must produce the same infohash, so that
clients booted from different servers (or from the same server after a reinstall)
form one swarm and a torrent can be checked by rebuilding it. Hence nothing that
depends on the filesystem or the clock goes into the metainfo: no mtimes, no creation
date, no directory order (see payload.py), and only the keys that describe the content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boottorrentd.errors import InvalidArgument
from boottorrentd.library.bencode import Raw, bdecode, bencode, raw_values
from boottorrentd.library.payload import (
    TorrentFile,
    hash_pieces,
    piece_count,
    piece_length_for,
    scan_payload,
)

# bencode and TorrentFile are exported too: the session's children encode metainfo with
# the tracker helpers, and a TorrentInfo is made of TorrentFiles.
__all__ = [
    "TorrentFile",
    "TorrentInfo",
    "make_torrent",
    "read_torrent",
    "with_announce",
]

_SHA1_LENGTH = 20
_CREATED_BY = "boottorrent"


@dataclass(frozen=True)
class TorrentInfo:
    name: str
    infohash: str
    piece_length: int
    files: tuple[TorrentFile, ...]

    @property
    def total_size(self) -> int:
        return sum(f.length for f in self.files)


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
    pieces = hash_pieces(root, files, piece_length, total, progress)

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
    metainfo = bencode({"created by": _CREATED_BY, "info": Raw(raw_info)})
    infohash = hashlib.sha1(raw_info).hexdigest()
    return metainfo, TorrentInfo(name, infohash, piece_length, tuple(files))


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
    expected = piece_count(total, piece_length)
    if len(pieces) // _SHA1_LENGTH != expected:
        raise ValueError(
            f"torrent: info.pieces holds {len(pieces) // _SHA1_LENGTH} hashes but "
            f"{total} bytes in pieces of {piece_length} need {expected}"
        )
    return TorrentInfo(name, hashlib.sha1(raw_info).hexdigest(), piece_length, files)


def _parse_metainfo(data: bytes) -> tuple[dict[bytes, object], bytes]:
    """Return the decoded top-level dict and the raw bytes of its info dict."""
    top = bdecode(data)  # validates the whole input, trailing data included
    if not isinstance(top, dict):
        raise ValueError("torrent: metainfo is not a bencoded dict")
    if not isinstance(top.get(b"info"), dict):
        raise ValueError("torrent: metainfo has no 'info' dict")
    return top, raw_values(data)[b"info"]


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
    # The info dict goes back as the bytes it came as: re-encoding it could change them
    # (unsorted keys in a torrent made elsewhere), and with them the infohash.
    return bencode({**top, b"info": Raw(raw_info)})
