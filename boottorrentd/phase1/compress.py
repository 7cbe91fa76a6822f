"""Compressing the initrd: the best method the kernel unpacks, with deterministic output."""

from __future__ import annotations

import gzip
import lzma
import shutil
import subprocess
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from boottorrentd.errors import BootTorrentError, InvalidArgument
from boottorrentd.util.programs import find_program

ZSTD_LEVEL = 19
_CHUNK = 1 << 20


def compression(config: Mapping[str, str]) -> str:
    """The best compressor this kernel (its CONFIG_ options) unpacks and this host has.

    xz first: every machine fetches the initrd over HTTP before BitTorrent starts, and xz
    packs it 14% smaller than zstd -19 (11.5 against 13.3 MB), which keeps phase-1 under
    20 MB; the kernel takes longer to unpack it (3-5 s more under QEMU TCG: README, Scale)."""
    if not config or config.get("CONFIG_RD_XZ") == "y":
        # Without the kernel's config, take what every Debian kernel since 2012 unpacks.
        return "xz"
    if config.get("CONFIG_RD_ZSTD") == "y" and shutil.which("zstd"):
        return "zstd"
    if config.get("CONFIG_RD_GZIP") == "y":
        return "gzip"
    raise InvalidArgument("the kernel unpacks no initrd compression this builder can write "
                          "(zstd, xz or gzip); pick another kernel with --kernel")


def compress(chunks: Iterable[bytes], total: int, out: Path, method: str,
             progress: Callable[[float], None]) -> None:
    """Write `chunks` (`total` bytes) to `out` compressed with `method`, telling `progress`
    the share done (0..1)."""
    written = _reported(chunks, total, progress)
    if method == "zstd":
        _zstd(written, out)
    elif method == "xz":
        _xz(written, out)
    else:
        _gzip(written, out)


def _reported(chunks: Iterable[bytes], total: int,
              progress: Callable[[float], None]) -> Iterator[bytes | memoryview]:
    """`chunks` rechunked; `progress` hears the share of `total` taken once each is written."""
    fed = 0
    for chunk in _rechunk(chunks):
        yield chunk
        fed += len(chunk)
        progress(fed / total)


def _zstd(chunks: Iterable[bytes | memoryview], out: Path) -> None:
    # zstd's multi-threaded mode gives the same bytes whatever the number of threads.
    with open(out, "wb") as sink:
        proc = subprocess.Popen([find_program("zstd", "zstd"), f"-{ZSTD_LEVEL}", "-T0", "-q", "-c"],
                                stdin=subprocess.PIPE, stdout=sink, stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stderr is not None
        try:
            for chunk in chunks:
                proc.stdin.write(chunk)
            proc.stdin.close()
            err = proc.stderr.read()
            code = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    if code != 0:
        raise BootTorrentError(f"zstd failed ({code}): {err.decode(errors='replace')}")


def _xz(chunks: Iterable[bytes | memoryview], out: Path) -> None:
    # The kernel's xz decoder knows CRC32 checks only; the x86 filter shrinks code.
    compressor = lzma.LZMACompressor(
        format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
        filters=[{"id": lzma.FILTER_X86},
                 {"id": lzma.FILTER_LZMA2, "preset": 9}])
    with open(out, "wb") as sink:
        for chunk in chunks:
            sink.write(compressor.compress(chunk))
        sink.write(compressor.flush())


def _gzip(chunks: Iterable[bytes | memoryview], out: Path) -> None:
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0,
                                               filename="") as sink:
        for chunk in chunks:
            sink.write(chunk)


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
