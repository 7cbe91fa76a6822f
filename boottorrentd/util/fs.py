"""Files the daemon writes: one durability rule for all of them."""

import os
from collections.abc import Callable
from pathlib import Path

# Half-written files start with this; folders that hold them sweep it away at load.
TMP_PREFIX = ".tmp-"


def write_atomic(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` at once and durably.

    A reader (a child rereading its config on SIGHUP, the daemon starting after a crash or
    a power cut) sees the old content or the new, never half of it: the data is synced
    before the rename and the rename is synced before this returns.
    """
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    raw = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)  # the umask must not narrow what children may read
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make the entries of `path` (renames, new files) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_file(source: Path, target: Path, progress: Callable[[int], object]) -> int:
    """Copy `source` to `target` and fsync it, calling progress(bytes so far) as it goes;
    returns the size copied. The caller sets the target's mode."""
    done = 0
    chunk = 4 << 20
    with open(source, "rb") as fin, open(target, "wb") as fout:
        while block := fin.read(chunk):
            fout.write(block)
            done += len(block)
            progress(done)
        fout.flush()
        os.fsync(fout.fileno())
    return done
