"""Files the daemon writes: one durability rule for all of them."""

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# Half-written files start with this; folders that hold them sweep it away at load.
TMP_PREFIX = ".tmp-"
# A state file that could not be read is renamed to <name><CORRUPT_SUFFIX><UTC time>.
CORRUPT_SUFFIX = ".corrupt-"


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


def read_state(path: Path, parse: Callable[[bytes], T]) -> T | None:
    """The parsed content of state file `path`, or None when there is none to use.

    A file that is empty, torn or corrupt (`parse` raises ValueError, TypeError or KeyError;
    a bad encoding is a ValueError) is set aside and reported, so that the daemon starts
    afresh instead of failing on it at every start, and the admin still has it.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        if not raw.strip():
            raise ValueError("the file is empty")
        return parse(raw)
    except (ValueError, TypeError, KeyError) as exc:
        set_aside(path, str(exc) or type(exc).__name__)
        return None


def set_aside(path: Path, problem: str) -> Path:
    """Rename a state file that cannot be used to `<name>.corrupt-<UTC time>` and say so."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}{CORRUPT_SUFFIX}{stamp}")
    os.replace(path, aside)
    fsync_dir(path.parent)
    log.warning("%s is corrupt (%s); set it aside as %s and went on without it; look at it "
                "and delete it when done", path, problem, aside,
                extra={"BOOTTORRENT_STATE_FILE": str(path)})
    return aside


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
