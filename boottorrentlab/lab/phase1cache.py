"""The lab's phase-1 image, kept between runs and built again only when an input changed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path
from typing import TextIO

from .config import LabError

# Built phase-1 images are kept here between runs (phase1.build(<this>) writes phase1/).
PHASE1_CACHE = Path("/var/cache/boottorrent/lab")
PHASE1_DIR = "phase1"
PHASE1_FILES = ("vmlinuz", "initrd.img")
PHASE1_STAMP = "lab-inputs.json"


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


def _phase1_stale(cache: Path) -> str | None:
    """Why the phase-1 image cached in `cache` is out of date, or None when it is current."""
    from boottorrentd.phase1 import build as phase1

    if not all((cache / PHASE1_DIR / n).is_file() for n in PHASE1_FILES):
        return "none is built yet"
    try:
        recorded = json.loads((cache / PHASE1_STAMP).read_text())
    except (OSError, ValueError):
        return "its inputs were not recorded"
    current = _phase1_inputs()
    if recorded.get("kernel") != current["kernel"]:
        return f"the newest kernel is now {current['kernel']}"
    if recorded != current:
        return "the kernel file, the builder or the phase-1 agent changed since"
    manifest = phase1.read_manifest(cache)
    if manifest is None:
        return "it has no manifest"
    return _package_change(manifest.created_from)


def ensure_phase1(rebuild: bool, out: TextIO) -> Path:
    """A current phase-1 folder: the one cached in PHASE1_CACHE, else built now there."""
    try:
        from boottorrentd.phase1 import build as phase1
    except ImportError as e:
        raise LabError(f"the phase-1 builder is not available ({e}); pass a built image "
                       "with --phase1 DIR") from e
    cached = PHASE1_CACHE / PHASE1_DIR
    why = "--rebuild-phase1" if rebuild else _phase1_stale(PHASE1_CACHE)
    if why is None:
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

    inputs = _phase1_inputs()
    manifest = phase1.build(PHASE1_CACHE, progress=progress)
    (PHASE1_CACHE / PHASE1_STAMP).write_text(json.dumps(inputs, indent=2) + "\n")
    sizes = manifest.vmlinuz["size"] + manifest.initrd["size"]
    print(f"  built in {time.monotonic() - started:.0f} s: kernel {manifest.kernel_version}, "
          f"vmlinuz + initrd = {sizes / 1e6:.1f} MB", file=out, flush=True)
    return cached
