"""What a phase-1 build leaves behind: the folder's files and the manifest that describes them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

PHASE1_DIR = "phase1"
FILES = ("vmlinuz", "initrd.img", "manifest.json")
# What a machine loads of them.
BOOT_FILES = ("vmlinuz", "initrd.img")


@dataclass(frozen=True)
class Manifest:
    """What a build made and from what.

    `created_from` maps the Debian packages whose files went in to their versions;
    `files` lists the initrd's regular files (path, size, sha256); `modules` the kernel
    modules in the order the agent loads them; `notes` what a lab might miss (modules or
    firmware this host does not have).
    """

    kernel_version: str
    created_from: dict
    files: list[dict]
    vmlinuz: dict
    initrd: dict
    modules: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def read_manifest(state_dir: Path) -> Manifest | None:
    """The manifest of the image in `state_dir`, or None when none is built."""
    try:
        return Manifest.from_json((Path(state_dir) / PHASE1_DIR / "manifest.json").read_text())
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None
