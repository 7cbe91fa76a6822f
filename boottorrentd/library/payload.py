"""A torrent's payload: the files of an OS folder, listed and hashed in pieces.

Deterministic, so that every server holding the same files makes the same infohash: the
file order and the piece length depend on the names and the total size alone, never on
the filesystem.

Pure stdlib on purpose: hashing a multi-GiB OS image is the hot path, and hashlib
already runs it at disk speed while releasing the GIL.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

from boottorrentd.errors import InvalidArgument

__all__ = ["TorrentFile", "hash_pieces", "piece_count", "piece_length_for", "scan_payload"]

_KIB = 1024
_MIB = 1024 * _KIB
# More pieces spread faster: clients then rarely ask the seed for a piece another client
# is already fetching (bench, N=16, 64 MiB: 256 KiB pieces 26.1 s and the seed sending
# 1.63 F, 128 KiB 24.5 s and 1.45 F, 64 KiB no better). Above 16 MiB a single bad piece
# costs too much to re-fetch over a busy lab network.
_MIN_PIECE_LENGTH = 128 * _KIB
_MAX_PIECE_LENGTH = 16 * _MIB
# Keeps the .torrent (20 bytes a piece) around 40 KB, small enough for phase 1 to
# fetch instantly, while pieces stay small enough to spread quickly between peers.
_MAX_PIECES = 2000
# Large reads keep syscall overhead negligible whatever the piece length is.
_READ_SIZE = 1 * _MIB


@dataclass(frozen=True)
class TorrentFile:
    """One payload file.

    `path` is relative to the torrent's top folder `name`. A single-file torrent
    (only ever read, never made here) has one file with the empty path (), so that
    `<download dir>/<name>/<*path>` names the file in both modes.
    """

    path: tuple[str, ...]
    length: int



def piece_length_for(total_size: int) -> int:
    """The smallest power of two >= 128 KiB giving at most 2000 pieces, capped at 16 MiB."""
    if total_size < 0:
        raise ValueError(f"total size must not be negative, got {total_size}")
    length = _MIN_PIECE_LENGTH
    while length < _MAX_PIECE_LENGTH and piece_count(total_size, length) > _MAX_PIECES:
        length *= 2
    return length



def piece_count(total_size: int, piece_length: int) -> int:
    """How many pieces of `piece_length` bytes `total_size` bytes take."""
    # Integer arithmetic: float division loses exactness past 2**53 bytes.
    return -(-total_size // piece_length)


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


def hash_pieces(
    root: Path,
    files: Sequence[TorrentFile],
    piece_length: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> bytes:
    """The SHA-1 of every `piece_length` bytes of `files` under `root` laid end to end
    (the "pieces" of v1 metainfo); `total` is their size, for `progress`.

    Raises InvalidArgument when a file changed since it was scanned.
    """
    pieces = _Pieces(piece_length, total, progress)
    view = memoryview(bytearray(_READ_SIZE))
    for entry in files:
        _hash_file(root.joinpath(*entry.path), entry.length, view, pieces)
    return pieces.finish()


class _Pieces:
    """The digests of the pieces hashed so far, and the piece being hashed.

    A piece may start in one file and end in the next: the digest carries over between
    files, as BitTorrent v1 hashes the concatenated payload.
    """

    def __init__(
        self, piece_length: int, total: int, progress: Callable[[int, int], None] | None
    ) -> None:
        self.piece_length = piece_length
        self.total = total
        self.progress = progress
        self.digests = bytearray()
        self.digest = hashlib.sha1()
        self.in_piece = 0
        self.hashed = 0

    def update(self, data: memoryview) -> None:
        offset = 0
        while offset < len(data):
            take = min(len(data) - offset, self.piece_length - self.in_piece)
            self.digest.update(data[offset : offset + take])
            offset += take
            self.in_piece += take
            self.hashed += take
            if self.in_piece == self.piece_length:
                self._end_piece()

    def finish(self) -> bytes:
        if self.in_piece:
            self._end_piece()
        return bytes(self.digests)

    def _end_piece(self) -> None:
        self.digests += self.digest.digest()
        self.digest = hashlib.sha1()
        self.in_piece = 0
        if self.progress is not None:
            self.progress(self.hashed, self.total)


def _hash_file(path: Path, length: int, view: memoryview, pieces: _Pieces) -> None:
    """Feed the `length` bytes of `path` to `pieces`, reading through `view`."""
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
        if not stat.S_ISREG(info.st_mode) or info.st_size != length:
            raise changed
        seen = 0
        while n := stream.readinto(view):
            seen += n
            if seen > length:
                raise changed
            pieces.update(view[:n])
        if seen != length:
            raise changed
