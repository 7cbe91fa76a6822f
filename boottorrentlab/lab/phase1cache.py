"""The lab's phase-1 image, kept between runs and built again only when an input changed."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import TextIO

from .config import LabError

# Built phase-1 images are kept here between runs, one folder per set of inputs
# (phase1.build(<that folder>) writes phase1/ in it): trees with another agent or builder
# (a branch, main's CI) running beside each other each keep theirs, instead of rebuilding
# the image that another run's machines are booting.
PHASE1_CACHE = Path("/var/cache/boottorrent/lab")
PHASE1_DIR = "phase1"
PHASE1_FILES = ("vmlinuz", "initrd.img")
PHASE1_STAMP = "lab-inputs.json"
# A folder whose image no run has used for this long is removed when the cache is used:
# its inputs (an old kernel, an old agent) are gone, and each image is 20 MB.
UNUSED_DAYS = 14


def _phase1_inputs() -> dict[str, str]:
    """What the cached phase-1 image depends on, besides Debian packages."""
    from boottorrentd.phase1 import build as phase1

    version, kernel = phase1.find_kernel()
    st = kernel.stat()
    digest = hashlib.sha256()
    builder = sorted(Path(phase1.__file__).parent.glob("*.py"))
    for path in [*builder, *sorted(phase1.agent_dir().iterdir())]:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {"kernel": version, "kernel_file": f"{st.st_size}:{st.st_mtime_ns}",
            "sources": digest.hexdigest()}


def _package_change(created_from: dict[str, str]) -> str | None:
    """Which Debian package the image was built from has another version now, if any."""
    packages = sorted(created_from)
    listed = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}\n", *packages],
                            capture_output=True, text=True).stdout
    installed = dict(line.split(" ", 1) for line in listed.splitlines() if " " in line)
    for name in packages:
        if installed.get(name) != created_from[name]:
            return (f"package {name} is now {installed.get(name, 'not installed')} "
                    f"(built with {created_from[name]})")
    return None


def _cache_for(inputs: dict[str, str]) -> Path:
    """The folder of PHASE1_CACHE that holds the image built from `inputs`."""
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    return PHASE1_CACHE / digest[:16]


def _phase1_stale(cache: Path) -> str | None:
    """Why the phase-1 image cached in `cache` (the folder of this tree's inputs) is out of
    date, or None when it is current."""
    from boottorrentd.phase1 import build as phase1

    if not all((cache / PHASE1_DIR / n).is_file() for n in PHASE1_FILES):
        return "none is built yet from this kernel, builder and agent"
    # Written once the build is done.
    if not (cache / PHASE1_STAMP).is_file():
        return "its last build did not finish"
    manifest = phase1.read_manifest(cache)
    if manifest is None:
        return "it has no manifest"
    return _package_change(manifest.created_from)


def prune_unused(root: Path, keep: Path, now: float) -> list[Path]:
    """Remove the folders of `root` but `keep` that no run has used for UNUSED_DAYS (their
    stamp, touched at each use, or the folder itself when a build never finished)."""
    removed = []
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        if folder == keep or not folder.is_dir():
            continue
        stamp = folder / PHASE1_STAMP
        used = (stamp if stamp.is_file() else folder).stat().st_mtime
        if now - used > UNUSED_DAYS * 86400:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def ensure_phase1(rebuild: bool, out: TextIO) -> Path:
    """A current phase-1 folder: the one cached in PHASE1_CACHE, else built now there."""
    try:
        from boottorrentd.phase1 import build as phase1
    except ImportError as e:
        raise LabError(f"the phase-1 builder is not available ({e}); pass a built image "
                       "with --phase1 DIR") from e
    inputs = _phase1_inputs()
    cache = _cache_for(inputs)
    cached = cache / PHASE1_DIR
    why = "--rebuild-phase1" if rebuild else _phase1_stale(cache)
    removed = prune_unused(PHASE1_CACHE, cache, time.time())
    if removed:
        print(f"Removed {len(removed)} phase-1 image(s) from {PHASE1_CACHE} that no run "
              f"used for {UNUSED_DAYS} days", file=out, flush=True)
    if why is None:
        (cache / PHASE1_STAMP).touch()
        print(f"Phase-1 image: {cached} (cached; its kernel, agent and packages are "
              "unchanged)", file=out, flush=True)
        return cached
    print(f"Building the phase-1 image (kernel + initrd) into {cached} ({why}); this takes "
          "about a minute ...", file=out, flush=True)
    started = time.monotonic()
    last = [""]

    def progress(step: str, fraction: float) -> None:
        if step != last[0]:
            last[0] = step
            print(f"  {fraction:4.0%} {step}", file=out, flush=True)

    cache.mkdir(parents=True, exist_ok=True)
    manifest = phase1.build(cache, progress=progress)
    (cache / PHASE1_STAMP).write_text(json.dumps(inputs, indent=2) + "\n")
    sizes = manifest.vmlinuz["size"] + manifest.initrd["size"]
    print(f"  built in {time.monotonic() - started:.0f} s: kernel {manifest.kernel_version}, "
          f"vmlinuz + initrd = {sizes / 1e6:.1f} MB", file=out, flush=True)
    return cached
