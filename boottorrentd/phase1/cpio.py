"""The initrd's archive: a tree built in memory and written in the kernel's "newc" format.

The same tree gives the same bytes: members are sorted, with numbered inodes and zero
times and owners, and modes depend on what a member is, not on how the host set it.
"""

from __future__ import annotations

import hashlib
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath


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
